"""keras_hub's newest Qwen backbones: Qwen 3 (``models/qwen3``) and the text backbone of
Qwen 3.5 (``models/qwen3_5``)."""
from __future__ import annotations

from ..errors import ModelConfigError
from .builder import (Functional, is_flag, is_positive_int, is_positive_int_or_null,
                      is_positive_number, keras_hub_model, refuse_vision_encoder)
from .decoders import _gqa_backbone


QWEN3_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
              "head_dim", "hidden_dim", "intermediate_dim", "rope_max_wavelength",
              "rope_scaling_factor", "layer_norm_epsilon", "dropout", "tie_word_embeddings",
              "sliding_window_size"}


@keras_hub_model("Qwen3Backbone", QWEN3_KEYS)
def qwen3_backbone(config: dict, f: Functional) -> None:
    """keras_hub's Qwen3Backbone (see ``_gqa_backbone``): Qwen3TransformerDecoders
    (``head_dim``, query and key RMS norms per head, ``rope_scaling_factor``,
    ``sliding_window_size``), the embedding tied with ``tie_word_embeddings``,
    Qwen3LayerNorm at the end."""
    head_dim = f.require(config, "head_dim", is_positive_int_or_null, "a positive int or null")
    tied, block = _qwen_options(config, f, tied_by_default=True)
    _gqa_backbone(config, f, "Qwen3TransformerDecoder",
                  "keras_hub.src.models.qwen3.qwen3_decoder", "layers/qwen3_layer_norm", tied,
                  dict(block, head_dim=head_dim))


def _qwen_options(config: dict, f: Functional, tied_by_default: bool) -> tuple:
    """(tie_word_embeddings, the decoder options rope_scaling_factor and
    sliding_window_size) of a Qwen 3 / 3.5 config, its rotary and norm numbers checked."""
    for key, default in (("rope_max_wavelength", 10000), ("rope_scaling_factor", 1.0),
                         ("layer_norm_epsilon", 1e-6)):
        f.option(config, key, default, is_positive_number, "a positive number")
    tied = f.option(config, "tie_word_embeddings", tied_by_default, is_flag, "a bool")
    window = f.option(config, "sliding_window_size", 32768, is_positive_int_or_null,
                      "a positive int or null")
    return tied, {"sliding_window_size": window,
                  "rope_scaling_factor": config.get("rope_scaling_factor", 1.0)}


LINEAR_ATTENTION_KEYS = {"linear_num_key_heads": 16, "linear_num_value_heads": 32,
                         "linear_key_head_dim": 128, "linear_value_head_dim": 128,
                         "linear_conv_kernel_dim": 4}  # and the constructor's defaults
QWEN3_5_KEYS = (QWEN3_KEYS | set(LINEAR_ATTENTION_KEYS)
                | {"layer_types", "partial_rotary_factor", "vision_encoder", "mrope_section"})
LAYER_TYPES = ("linear_attention", "full_attention")


def _is_rotary_fraction(value) -> bool:
    return is_positive_number(value) and value <= 1


@keras_hub_model("Qwen3_5Backbone", QWEN3_5_KEYS)
def qwen3_5_backbone(config: dict, f: Functional) -> None:
    """keras_hub's Qwen3_5Backbone, text only (see ``_gqa_backbone``):
    Qwen3_5TransformerDecoders of ``layer_types`` (by default every fourth
    full_attention, the others linear_attention: a gated delta net), the embedding
    untied unless ``tie_word_embeddings``, Qwen3_5LayerNorm at the end. A
    ``vision_encoder`` is refused; ``mrope_section`` changes nothing without one (the
    backbone's graph passes no position ids)."""
    refuse_vision_encoder(config, f)
    f.option(config, "mrope_section", None, lambda v: v is None or (
        isinstance(v, list) and len(v) == 3 and all(isinstance(n, int) for n in v)),
        "null or a list of 3 ints")
    head_dim = f.require(config, "head_dim", is_positive_int, "a positive int")
    layers = f.require(config, "num_layers", is_positive_int, "a positive int")
    types = f.option(config, "layer_types", None, lambda v: v is None or (
        isinstance(v, list) and len(v) == layers and all(t in LAYER_TYPES for t in v)),
        f"null or a list of num_layers ({layers}) of {' / '.join(LAYER_TYPES)}")
    types = types or [LAYER_TYPES[(i + 1) % 4 == 0] for i in range(layers)]
    factor = f.option(config, "partial_rotary_factor", 0.25, _is_rotary_fraction,
                      "a number in (0, 1]")
    rotary = int(head_dim * factor)
    if rotary == 0 or rotary % 2:
        raise ModelConfigError(f"{f.source}: Qwen3_5Backbone config key 'partial_rotary_factor'"
                               f" ({factor}) gives {rotary} rotary features of head_dim "
                               f"({head_dim}); kerasonnx rebuilds it for an even, positive "
                               f"number")
    linear = {key: f.option(config, key, default, is_positive_int, "a positive int")
              for key, default in LINEAR_ATTENTION_KEYS.items()}
    if linear["linear_num_value_heads"] % linear["linear_num_key_heads"]:
        raise ModelConfigError(f"{f.source}: Qwen3_5Backbone config key "
                               f"'linear_num_value_heads' ({linear['linear_num_value_heads']}) "
                               f"is not a multiple of linear_num_key_heads "
                               f"({linear['linear_num_key_heads']})")
    tied, block = _qwen_options(config, f, tied_by_default=False)
    _gqa_backbone(config, f, "Qwen3_5TransformerDecoder",
                  "keras_hub.src.models.qwen3_5.qwen3_5_decoder", "layers/qwen3_5_layer_norm",
                  tied, dict(block, **linear, head_dim=head_dim, partial_rotary_factor=factor,
                             mrope_section=config.get("mrope_section")),
                  layer_options=[{"layer_type": t} for t in types],
                  norm=("Qwen3_5LayerNorm", "keras_hub.src.models.qwen3_5.qwen3_5_layers"))
