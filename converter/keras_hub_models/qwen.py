"""keras_hub's newest Qwen backbones: Qwen 3 (``models/qwen3``)."""
from __future__ import annotations

from typing import Callable

from ..errors import ModelConfigError
from .builder import Functional, is_positive_int, keras_hub_model
from .decoders import _gqa_backbone


def is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def positive_int_or_null(value) -> bool:
    return value is None or is_positive_int(value)


def checked(config: dict, f: Functional, key: str, allowed: Callable, what: str, default):
    """``config[key]`` (``default``, the constructor's, when absent), which must satisfy
    ``allowed``; else a one-line error."""
    value = config.get(key, default)
    if not allowed(value):
        raise ModelConfigError(f"{f.source}: {f.class_name} config key {key!r} is {value!r}; "
                               f"kerasonnx rebuilds it for {what}")
    return value


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
    for key, default in (("rope_max_wavelength", 10000), ("rope_scaling_factor", 1.0),
                         ("layer_norm_epsilon", 1e-6)):
        checked(config, f, key, is_positive_number, "a positive number", default)
    head_dim = f.require(config, "head_dim", positive_int_or_null, "a positive int or null")
    tied = checked(config, f, "tie_word_embeddings", lambda v: isinstance(v, bool), "a bool",
                   True)
    window = checked(config, f, "sliding_window_size", positive_int_or_null,
                     "a positive int or null", 32768)
    _gqa_backbone(config, f, "Qwen3TransformerDecoder",
                  "keras_hub.src.models.qwen3.qwen3_decoder", "layers/qwen3_layer_norm", tied,
                  {"head_dim": head_dim, "sliding_window_size": window,
                   "rope_scaling_factor": config.get("rope_scaling_factor", 1.0)})
