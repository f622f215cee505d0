"""KerasHub's Llama 3 (with Llama 3.1's rotary frequency adjustment) and Phi-3 backbones and
causal LMs (Keras 3 only), rebuilt from their constructor config: tiny configs built with
real keras_hub 0.32, weights randomized, saved as ``.keras``, converted at opset 23 and 17,
run in onnxruntime at batch 1 and 3 and two sequence lengths on padded token ids, every
output compared with keras_hub's by name."""
from __future__ import annotations

import math

import numpy as np
import pytest

from keras_hub_model_check import (OPSETS, VOCABULARY, assert_config_error, check_by_name,
                                   requires_keras_hub, saved_models_fixture)

from kerasonnx.emit.keras_hub import llama_inverse_frequencies

pytestmark = requires_keras_hub

DECODER = {"vocabulary_size": VOCABULARY, "num_layers": 2, "num_query_heads": 4,
           "num_key_value_heads": 2, "hidden_dim": 32, "intermediate_dim": 16}
HEAD_DIM = 8
# Llama 3.1's factors (8, 1, 4) over a pretraining length of 100: with max_wavelength 10000
# and head_dim 8 the wavelengths 2π / θ are 6.3 (below 100 / 4: kept), 63 (between: the
# smoothed blend) and 628, 6283 (above 100: divided by 8).
LLAMA31_ROPE = {"rope_frequency_adjustment_factor": 8.0, "rope_low_freq_factor": 1.0,
                "rope_high_freq_factor": 4.0, "rope_pretraining_sequence_length": 100}


def llama3_backbone(keras_hub):
    """Llama 3.1 rotary scaling, its frequencies in all three bands."""
    return keras_hub.models.Llama3Backbone(**DECODER, rope_max_wavelength=10000,
                                           layer_norm_epsilon=1e-5, **LLAMA31_ROPE)


def llama3_causal_lm(keras_hub):
    """Llama 3 (no rotary adjustment), a rope_position_scaling_factor (unused by
    keras_hub's LlamaRotaryEmbedding), the logits from the untied reverse embedding."""
    backbone = keras_hub.models.Llama3Backbone(**DECODER, rope_max_wavelength=500,
                                               rope_position_scaling_factor=2.0)
    return keras_hub.models.Llama3CausalLM(backbone, preprocessor=None)


def llama_backbone_with_llama31_rope(keras_hub):
    """The same adjustment on the LlamaBackbone class, a stronger factor."""
    return keras_hub.models.LlamaBackbone(**dict(DECODER, num_layers=1),
                                          **dict(LLAMA31_ROPE,
                                                 rope_frequency_adjustment_factor=32.0))


# Phi-3 "su" (longrope) scaling: the short factors for length 5, the long ones for
# length 9 (longer than the pretraining length 7), cos and sin times
# sqrt(1 + ln(28 / 7) / ln 7).
PHI3_SU = {"pretraining_sequence_length": 7, "max_sequence_length": 28,
           "rope_scaling_type": "su", "rope_scaling_short_factor": [1.0, 1.5, 2.0, 4.0],
           "rope_scaling_long_factor": [1.0, 3.0, 8.0, 16.0]}


def phi3_backbone(keras_hub):
    return keras_hub.models.Phi3Backbone(**DECODER, rope_max_wavelength=500,
                                         layer_norm_epsilon=1e-5, **PHI3_SU)


def phi3_causal_lm(keras_hub):
    """No rotary scaling (a plain RotaryEmbedding)."""
    backbone = keras_hub.models.Phi3Backbone(**DECODER)
    return keras_hub.models.Phi3CausalLM(backbone, preprocessor=None)


MODELS = {"llama3_backbone": llama3_backbone, "llama3_causal_lm": llama3_causal_lm,
          "llama_backbone_with_llama31_rope": llama_backbone_with_llama31_rope,
          "phi3_backbone": phi3_backbone, "phi3_causal_lm": phi3_causal_lm}


saved_models = saved_models_fixture("keras_hub_llama3_phi3", MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_llama3_phi3_match_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset)


def _rope_config(config: dict) -> dict:
    return {"max_wavelength": 10000,
            **{key: config[f"rope_{key}"] for key in (
                "frequency_adjustment_factor", "low_freq_factor", "high_freq_factor",
                "pretraining_sequence_length")}}


def test_llama31_frequencies_span_the_three_bands_as_keras_hub_adjusts_them():
    """The fixture's frequencies fall in every band (so the model test sees each rule),
    each band changes them differently, and the folded ones are keras_hub's."""
    from keras_hub.src.models.llama.llama_rotary_embedding import LlamaRotaryEmbedding

    config = _rope_config(LLAMA31_ROPE)
    plain = llama_inverse_frequencies({"max_wavelength": 10000}, HEAD_DIM)
    adjusted = llama_inverse_frequencies(config, HEAD_DIM)
    ratio = adjusted / plain
    wavelength = 2 * math.pi / plain
    length = config["pretraining_sequence_length"]
    kept = wavelength < length / config["high_freq_factor"]
    divided = wavelength > length / config["low_freq_factor"]
    smoothed = ~kept & ~divided
    assert kept.any() and divided.any() and smoothed.any()
    assert np.allclose(ratio[kept], 1) and np.allclose(ratio[divided], 1 / 8)
    assert np.all((ratio[smoothed] > 1 / 8 + 0.05) & (ratio[smoothed] < 0.95))
    layer = LlamaRotaryEmbedding(
        max_wavelength=10000, **{key: value for key, value in config.items()
                                 if key != "max_wavelength"})
    expected = np.asarray(layer._get_inverse_freq(HEAD_DIM))
    np.testing.assert_allclose(adjusted, expected, rtol=2e-7, atol=0)


@pytest.mark.parametrize("name, change, message", [
    ("llama3_backbone", lambda c: c.update(rope_low_freq_factor=None),
     "Llama3Backbone config key 'rope_low_freq_factor' is null while other Llama 3.1 rotary "
     "keys are set"),
    ("llama3_backbone", lambda c: c.update(rope_high_freq_factor=1.0),
     "'rope_high_freq_factor' (1.0) is not above rope_low_freq_factor (1.0)"),
    ("llama3_backbone", lambda c: c.update(rope_frequency_adjustment_factor=0),
     "config key 'rope_frequency_adjustment_factor' is 0"),
    ("llama3_backbone", lambda c: c.update(rope_pretraining_sequence_length=8192.5),
     "config key 'rope_pretraining_sequence_length' is 8192.5"),
    ("llama3_backbone", lambda c: c.update(rope_scaling_type="yarn"),
     "Llama3Backbone config key 'rope_scaling_type' is not one"),
    ("llama3_backbone", lambda c: c.update(rope_max_wavelength="10000"),
     "config key 'rope_max_wavelength' is '10000'"),
    ("phi3_backbone", lambda c: c.update(rope_scaling_type="longrope"),
     "Phi3Backbone config key 'rope_scaling_type' is 'longrope'; kerasonnx rebuilds it for "
     "null or 'su'"),
    ("phi3_backbone", lambda c: c.update(rope_scaling_long_factor=[1.0, 2.0]),
     "config key 'rope_scaling_long_factor' has 2 factors; rope_scaling_type 'su' needs "
     "hidden_dim // num_query_heads // 2 = 4"),
    ("phi3_backbone", lambda c: c.update(rope_scaling_short_factor=None),
     "config key 'rope_scaling_short_factor' is None"),
    ("phi3_backbone", lambda c: c.update(pretraining_sequence_length=0),
     "config key 'pretraining_sequence_length' is 0"),
    ("phi3_backbone", lambda c: c.update(partial_rotary_factor=0.5),
     "Phi3Backbone config key 'partial_rotary_factor' is not one"),
])
def test_config_outside_the_contract_is_one_line_error(saved_models, tmp_path, name, change,
                                                       message):
    assert_config_error(saved_models(name)[1], tmp_path,
                        lambda config: change(config["config"]), message)
