"""keras_hub's sparse mixture-of-experts backbones: Mixtral and Qwen 3 MoE. Their decoder
blocks' feed-forward routes each token to its top_k experts (see
``layers/keras_hub.py``, ``_sparse_moe``). The router's training-only keys,
``router_jitter_noise`` (noise applied only when training), ``router_aux_loss_coef`` /
``router_aux_loss_coefficient`` (the weight of a load-balancing loss only added in
training), are accepted: they do not change inference."""
from __future__ import annotations

from ..errors import ModelConfigError
from .builder import (Functional, is_flag, is_positive_int, is_positive_int_or_null,
                      is_positive_number, keras_hub_model)
from .decoders import _gqa_backbone
from .qwen import _qwen_options


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _experts(config: dict, f: Functional, top_k_default: int) -> dict:
    """num_experts and top_k (at most num_experts), checked; the training-only router keys
    checked to be numbers."""
    experts = f.require(config, "num_experts", is_positive_int, "a positive int")
    top_k = f.option(config, "top_k", top_k_default, is_positive_int, "a positive int")
    if top_k > experts:
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'top_k' ({top_k}) is "
                               f"above num_experts ({experts})")
    for key in ("router_jitter_noise", "router_aux_loss_coef", "router_aux_loss_coefficient"):
        f.option(config, key, 0.0, _is_number, "a number (training only)")
    return {"num_experts": experts, "top_k": top_k}


MIXTRAL_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
                "intermediate_dim", "num_experts", "top_k", "router_jitter_noise",
                "rope_max_wavelength", "rope_scaling_factor", "num_key_value_heads",
                "router_aux_loss_coef", "sliding_window", "layer_norm_epsilon", "dropout"}


@keras_hub_model("MixtralBackbone", MIXTRAL_KEYS)
def mixtral_backbone(config: dict, f: Functional) -> None:
    """keras_hub's MixtralBackbone (see ``_gqa_backbone``): MixtralTransformerDecoders
    (Mistral's attention with ``rope_scaling_factor`` and ``sliding_window``, a sparse
    mixture of ``num_experts`` SwiGLU experts, ``top_k`` per token, renormalised), an
    untied embedding, MixtralLayerNormalization at the end."""
    experts = _experts(config, f, 2)
    for key, default in (("rope_max_wavelength", 10000), ("rope_scaling_factor", 1.0),
                         ("layer_norm_epsilon", 1e-6)):
        f.option(config, key, default, is_positive_number, "a positive number")
    window = f.option(config, "sliding_window", 512, is_positive_int_or_null,
                      "a positive int or null")
    _gqa_backbone(dict(config, dropout=config.get("dropout", 0)), f,
                  "MixtralTransformerDecoder", "keras_hub.src.models.mixtral.mixtral_decoder",
                  "layers/mixtral_layer_normalization", False,
                  dict(experts, rope_scaling_factor=config.get("rope_scaling_factor", 1.0),
                       sliding_window=window))


QWEN3_MOE_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
                  "head_dim", "hidden_dim", "intermediate_dim", "moe_intermediate_dim",
                  "rope_max_wavelength", "rope_scaling_factor", "layer_norm_epsilon",
                  "dropout", "tie_word_embeddings", "sliding_window_size", "num_experts",
                  "top_k", "norm_top_k_prob", "decoder_sparse_step", "mlp_only_layers",
                  "router_aux_loss_coefficient"}


def _is_int_list(value) -> bool:
    return value is None or (isinstance(value, list) and all(
        isinstance(n, int) and not isinstance(n, bool) for n in value))


@keras_hub_model("Qwen3MoeBackbone", QWEN3_MOE_KEYS)
def qwen3_moe_backbone(config: dict, f: Functional) -> None:
    """keras_hub's Qwen3MoeBackbone (see ``_gqa_backbone``): Qwen3MoeTransformerDecoders
    (Qwen 3's attention: ``head_dim``, query and key RMS norms per head,
    ``rope_scaling_factor``, ``sliding_window_size``); block i's feed-forward a sparse
    mixture of ``num_experts`` SwiGLU experts of ``moe_intermediate_dim`` (``top_k`` per
    token, renormalised with ``norm_top_k_prob``) when i is not in ``mlp_only_layers`` and
    i + 1 is a multiple of ``decoder_sparse_step``, else a dense SwiGLU of
    ``intermediate_dim``; the embedding untied unless ``tie_word_embeddings``,
    Qwen3MoeLayerNorm at the end."""
    experts = _experts(config, f, 4)
    head_dim = f.option(config, "head_dim", None, is_positive_int_or_null,
                        "a positive int or null")
    moe_size = f.require(config, "moe_intermediate_dim", is_positive_int, "a positive int")
    renormalize = f.option(config, "norm_top_k_prob", False, is_flag, "a bool")
    step = f.option(config, "decoder_sparse_step", 1, is_positive_int, "a positive int")
    dense_layers = f.option(config, "mlp_only_layers", None, _is_int_list,
                            "null or a list of ints") or []
    layers = f.require(config, "num_layers", is_positive_int, "a positive int")
    tied, block = _qwen_options(config, f, tied_by_default=False)
    _gqa_backbone(dict(config, dropout=config.get("dropout", 0)), f,
                  "Qwen3MoeTransformerDecoder",
                  "keras_hub.src.models.qwen3_moe.qwen3_moe_decoder",
                  "layers/qwen3_moe_layer_norm", tied,
                  dict(block, **experts, head_dim=head_dim, moe_intermediate_dim=moe_size,
                       norm_top_k_prob=renormalize),
                  layer_options=[{"is_sparse_mlp": i not in dense_layers and (i + 1) % step == 0}
                                 for i in range(layers)])
