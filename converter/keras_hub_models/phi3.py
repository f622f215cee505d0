"""keras_hub's Phi-3 backbone (``models/phi3``)."""
from __future__ import annotations

from ..errors import ModelConfigError
from .builder import (Functional, is_positive_int, is_positive_number, keras_hub_model,
                      TEXT_KEYS)
from .decoders import _gqa_backbone

PHI3_KEYS = (TEXT_KEYS - {"num_heads"}) | {
    "num_query_heads", "num_key_value_heads", "layer_norm_epsilon",
    "pretraining_sequence_length", "rope_max_wavelength", "rope_scaling_type",
    "rope_scaling_short_factor", "rope_scaling_long_factor"}
SCALING_FACTORS = ("rope_scaling_short_factor", "rope_scaling_long_factor")


def _is_factors(value) -> bool:
    return isinstance(value, list) and all(is_positive_number(v) for v in value)


@keras_hub_model("Phi3Backbone", PHI3_KEYS)
def phi3_backbone(config: dict, f: Functional) -> None:
    """keras_hub's Phi3Backbone (see ``_gqa_backbone``): an untied ReversibleEmbedding,
    Phi3Decoders (separate query / key / value projections, a rotary embedding plain or,
    with ``rope_scaling_type`` "su", Phi3SuScaledRotaryEmbedding: the short or long
    factors by the sequence's length against ``pretraining_sequence_length``, cos and
    sin scaled when ``max_sequence_length`` exceeds it), Phi3LayerNorm at the end.
    ``max_sequence_length`` and the factors change nothing without "su"."""
    heads = f.require(config, "num_query_heads", is_positive_int, "a positive int")
    hidden = f.require(config, "hidden_dim", is_positive_int, "a positive int")
    lengths = {key: f.option(config, key, 4096, is_positive_int, "a positive int")
               for key in ("max_sequence_length", "pretraining_sequence_length")}
    f.option(config, "rope_max_wavelength", 10000, is_positive_number, "a positive number")
    f.option(config, "layer_norm_epsilon", 1e-6, is_positive_number, "a positive number")
    scaling = config.get("rope_scaling_type")
    if scaling not in (None, "su"):
        raise ModelConfigError(f"{f.source}: Phi3Backbone config key 'rope_scaling_type' is "
                               f"{scaling!r}; kerasonnx rebuilds it for null or 'su' (as "
                               f"keras_hub 0.32 does)")
    if scaling == "su":
        half = hidden // heads // 2
        for key in SCALING_FACTORS:
            factors = f.require(config, key, _is_factors, "a list of positive numbers")
            if len(factors) != half:
                raise ModelConfigError(f"{f.source}: Phi3Backbone config key {key!r} has "
                                       f"{len(factors)} factors; rope_scaling_type 'su' "
                                       f"needs hidden_dim // num_query_heads // 2 = {half}")
    _gqa_backbone(config, f, "Phi3Decoder", "keras_hub.src.models.phi3.phi3_decoder",
                  "layers/phi3_layer_norm", False,
                  {"hidden_dim": hidden, "activation": "silu", **lengths,
                   "rope_scaling_type": scaling,
                   **{key: config.get(key) for key in SCALING_FACTORS}})
