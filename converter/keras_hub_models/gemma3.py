"""keras_hub's Gemma 3, text only (``models/gemma3``): Gemma3Backbone."""
from __future__ import annotations

import math

from ..errors import ModelConfigError
from .builder import (Functional, is_flag, is_positive_int, is_positive_number, is_rate,
                      keras_hub_model, token_embedding_layer)
from .decoders import _is_cap, _option

GEMMA3 = "keras_hub.src.models.gemma3."
GEMMA3_KEYS = {"vocabulary_size", "image_size", "num_layers", "num_query_heads",
               "num_key_value_heads", "hidden_dim", "intermediate_dim", "head_dim",
               "query_head_dim_normalize", "use_query_key_norm", "use_post_ffw_norm",
               "use_post_attention_norm", "attention_logit_soft_cap", "final_logit_soft_cap",
               "use_sliding_window_attention", "sliding_window_size",
               "local_rope_scaling_factor", "global_rope_scaling_factor", "vision_encoder",
               "use_bidirectional_attention", "layer_norm_epsilon", "dropout",
               "is_embedding_model", "pooling_intermediate_dim", "embedding_dim"}
# keras_hub 0.32's Gemma3Backbone: of every 6 decoder blocks the first 5 are local (they
# attend a sliding window) when use_sliding_window_attention, the 6th global; the rotary
# wavelength of each kind
LOCAL_PATTERN = 6
LOCAL_WAVELENGTH, GLOBAL_WAVELENGTH = 10_000.0, 1_000_000.0


def _positive_int_or_null(value) -> bool:
    return value is None or is_positive_int(value)


def _refuse_options(config: dict, f: Functional) -> None:
    """A ``vision_encoder`` (the multimodal model takes images, vision_indices and
    vision_mask), ``use_bidirectional_attention`` and ``is_embedding_model``
    (EmbeddingGemma) are refused."""
    encoder = config.get("vision_encoder")
    if encoder is not None:
        found = encoder.get("class_name") if isinstance(encoder, dict) else encoder
        raise ModelConfigError(f"{f.source}: Gemma3Backbone config key 'vision_encoder' is a "
                               f"{found!r}; kerasonnx rebuilds the text backbone only "
                               f"(vision_encoder null)")
    for key in ("use_bidirectional_attention", "is_embedding_model"):
        if _option(f, config, key, False, is_flag, "true or false"):
            raise ModelConfigError(f"{f.source}: Gemma3Backbone config key {key!r} is true "
                                   f"(EmbeddingGemma); not supported yet")


@keras_hub_model("Gemma3Backbone", GEMMA3_KEYS)
def gemma3_backbone(config: dict, f: Functional) -> None:
    """keras_hub's Gemma3Backbone, text only: ReversibleEmbedding ``token_embedding``
    (tied; its reverse call soft-capped by ``final_logit_soft_cap``) of ``token_ids``,
    times sqrt(hidden_dim) in float32, Gemma3DecoderBlocks ``decoder_block_<i>`` on
    ``padding_mask`` (see ``layers/keras_hub.py``): with ``use_sliding_window_attention``
    blocks i % 6 < 5 are local (a sliding window, rotary wavelength 10^4 and
    ``local_rope_scaling_factor``), the others (all of them without it) global
    (wavelength 10^6, ``global_rope_scaling_factor``); Gemma 3's RMSNormalization
    ``final_normalization``: ``sequence_output``. Keys read that do not change the graph
    as keras_hub 0.32 builds it: ``query_head_dim_normalize`` (its blocks scale queries by
    1 / sqrt(head_dim) whatever it says), ``layer_norm_epsilon`` but for the final norm
    (its blocks use 1e-6), ``image_size`` (no vision encoder), ``pooling_intermediate_dim``
    and ``embedding_dim`` (no embedding model)."""
    _refuse_options(config, f)
    vocabulary, layers, heads, groups, hidden, intermediate, head_dim = (
        f.require(config, key, is_positive_int, "a positive int")
        for key in ("vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
                    "hidden_dim", "intermediate_dim", "head_dim"))
    if heads % groups:
        raise ModelConfigError(f"{f.source}: Gemma3Backbone config key 'num_query_heads' "
                               f"({heads}) is not a multiple of num_key_value_heads "
                               f"({groups})")
    flags = {key: _option(f, config, key, default, is_flag, "true or false")
             for key, default in (("query_head_dim_normalize", True),
                                  ("use_query_key_norm", True),
                                  ("use_post_ffw_norm", False),
                                  ("use_post_attention_norm", False),
                                  ("use_sliding_window_attention", False))}
    attention_cap, final_cap = (
        _option(f, config, key, None, _is_cap, "a positive number or null")
        for key in ("attention_logit_soft_cap", "final_logit_soft_cap"))
    window = _option(f, config, "sliding_window_size", 1024, is_positive_int, "a positive int")
    local_scaling, global_scaling = (
        _option(f, config, key, 1.0, is_positive_number, "a positive number")
        for key in ("local_rope_scaling_factor", "global_rope_scaling_factor"))
    epsilon = _option(f, config, "layer_norm_epsilon", 1e-6, is_positive_number,
                      "a positive number")
    dropout = _option(f, config, "dropout", 0, is_rate, "a rate in [0, 1)")
    for key in ("image_size", "pooling_intermediate_dim", "embedding_dim"):
        _option(f, config, key, None, _positive_int_or_null, "a positive int or null")
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = token_embedding_layer(f, vocabulary, hidden, token_ids, logit_soft_cap=final_cap)
    x = f.op("Multiply", "multiply", x, math.sqrt(hidden))
    block = {"hidden_dim": hidden, "intermediate_dim": intermediate, "head_dim": head_dim,
             "num_query_heads": heads, "num_key_value_heads": groups,
             "query_head_dim_normalize": flags["query_head_dim_normalize"],
             "use_query_key_norm": flags["use_query_key_norm"],
             "use_post_ffw_norm": flags["use_post_ffw_norm"],
             "use_post_attention_norm": flags["use_post_attention_norm"],
             "gate_dim_reduction": 1, "logit_soft_cap": attention_cap,
             "sliding_window_size": window, "layer_norm_epsilon": 1e-6,
             "use_bidirectional_attention": False, "dropout": dropout}
    for i in range(layers):
        local = flags["use_sliding_window_attention"] and i % LOCAL_PATTERN < LOCAL_PATTERN - 1
        x = f.layer("Gemma3DecoderBlock", f"decoder_block_{i}",
                    dict(block, use_sliding_window_attention=local,
                         rope_wavelength=LOCAL_WAVELENGTH if local else GLOBAL_WAVELENGTH,
                         rope_scaling_factor=local_scaling if local else global_scaling),
                    x, module=GEMMA3 + "gemma3_decoder_block", padding_mask=padding_mask)
    x = f.layer("RMSNormalization", "final_normalization", {"epsilon": epsilon}, x,
                module=GEMMA3 + "gemma3_layers")
    f.outputs.update(sequence_output=x)
