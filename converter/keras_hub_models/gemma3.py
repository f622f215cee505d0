"""keras_hub's Gemma 3, text only (``models/gemma3``): Gemma3Backbone, Gemma3TextEmbedder
(Gemma3CausalLM is in ``tasks.CAUSAL_LMS``)."""
from __future__ import annotations

from ..errors import ModelConfigError
from .builder import (Functional, is_flag, is_positive_int_or_null, is_positive_number,
                      keras_hub_model, refuse_vision_encoder)
from .decoders import _gemma_backbone
from .tasks import _text_embedder, TASK_KEYS

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


@keras_hub_model("Gemma3Backbone", GEMMA3_KEYS)
def gemma3_backbone(config: dict, f: Functional) -> None:
    """keras_hub's Gemma3Backbone, text only (see ``decoders._gemma_backbone``): the tied,
    scaled embedding, Gemma3DecoderBlocks (see ``layers/keras_hub.py``: query / key norms
    with ``use_query_key_norm``, gates intermediate_dim wide), Gemma 3's RMSNormalization
    ``final_normalization``. With ``use_sliding_window_attention`` blocks i % 6 < 5 are
    local (a sliding window, rotary wavelength 10^4 and ``local_rope_scaling_factor``), the
    others (all of them without it) global (wavelength 10^6,
    ``global_rope_scaling_factor``). A ``vision_encoder`` (the multimodal model takes
    images, vision_indices and vision_mask), ``use_bidirectional_attention`` and
    ``is_embedding_model`` (EmbeddingGemma) are refused. Keys read that do not change the
    graph as keras_hub 0.32 builds it: ``query_head_dim_normalize`` (its blocks scale
    queries by 1 / sqrt(head_dim) whatever it says), ``layer_norm_epsilon`` but for the
    final norm, ``image_size`` (no vision encoder), ``pooling_intermediate_dim`` and
    ``embedding_dim`` (no embedding model)."""
    refuse_vision_encoder(config, f)
    for key in ("use_bidirectional_attention", "is_embedding_model"):
        if f.option(config, key, False, is_flag, "true or false"):
            raise ModelConfigError(f"{f.source}: Gemma3Backbone config key {key!r} is true "
                                   f"(EmbeddingGemma); not supported yet")
    for key in ("image_size", "pooling_intermediate_dim", "embedding_dim"):
        f.option(config, key, None, is_positive_int_or_null, "a positive int or null")
    local_scaling, global_scaling = (
        f.option(config, key, 1.0, is_positive_number, "a positive number")
        for key in ("local_rope_scaling_factor", "global_rope_scaling_factor"))

    def block_options(i: int, sliding: bool) -> dict:
        local = sliding and i % LOCAL_PATTERN < LOCAL_PATTERN - 1
        return {"use_sliding_window_attention": local, "gate_dim_reduction": 1,
                "rope_wavelength": LOCAL_WAVELENGTH if local else GLOBAL_WAVELENGTH,
                "rope_scaling_factor": local_scaling if local else global_scaling,
                "use_bidirectional_attention": False}

    _gemma_backbone(config, f, {"query_head_dim_normalize": True, "use_query_key_norm": True},
                    1024, ("Gemma3DecoderBlock", GEMMA3 + "gemma3_decoder_block"),
                    GEMMA3 + "gemma3_layers", block_options)


# ---------------------------------------------------------------------- Gemma3TextEmbedder


@keras_hub_model("Gemma3TextEmbedder", TASK_KEYS | {"pooling_mode", "normalize"})
def gemma3_text_embedder(config: dict, f: Functional) -> None:
    """keras_hub's Gemma3TextEmbedder over a text-only Gemma3Backbone: its
    ``sequence_output`` pooled by ``pooling_mode`` ("mean": see ``tasks._text_embedder``,
    the count floored at 1e-5; "last": the hidden state of the last position the padding
    mask m keeps, sum over t of x_t * m_t * (1 - m_(t+1)), m padded with a 0 at the end),
    then L2-normalized with ``normalize``. Operations named as a fresh process loading the
    model names them (the backbone has taken ``multiply``)."""
    mode = f.require(config, "pooling_mode", lambda v: v in ("last", "mean"),
                     "'last' or 'mean'")
    if mode == "mean":
        return _text_embedder(config, f, "Gemma3Backbone", "Gemma3TextEmbedder", 1e-5)
    normalize = f.require(config, "normalize", is_flag, "a bool")
    _, outputs = f.backbone(config.get("backbone"), "Gemma3Backbone", "Gemma3TextEmbedder")
    padding_mask = next(t for t in f.inputs if t.layer == "padding_mask")
    mask = f.op("Cast", "cast", padding_mask, module="keras.src.ops.core", dtype="float32")
    shifted = f.op("GetItem", "get_item",
                   f.op("Pad", "pad", mask, pad_width=[[0, 0], [0, 1]], mode="constant"),
                   [slice(None), slice(1, None)])
    last = f.op("Multiply", "multiply_1", mask, f.op("Subtract", "subtract", 1.0, shifted))
    x = f.op("Sum", "sum", f.op("Multiply", "multiply_2", outputs["sequence_output"],
                                f.op("ExpandDims", "expand_dims", last, axis=-1)),
             axis=1, keepdims=False)
    if normalize:
        x = f.op("Normalize", "normalize", x, module="keras.src.ops.nn", axis=-1, order=2,
                 epsilon=None)
    f.outputs[x.layer] = x
    f.preprocessor(config.get("preprocessor"), "Gemma3TextEmbedder")
