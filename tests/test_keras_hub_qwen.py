"""KerasHub's newest Qwen backbones and their causal LMs (Keras 3 only), rebuilt from their
constructor config: tiny configs built with real keras_hub 0.32, weights randomized, saved
as ``.keras``, converted at opset 23 and 17, run in onnxruntime at batch 1 and 3 and two
sequence lengths on padded token ids, every output compared with keras_hub's by name."""
from __future__ import annotations

import re

import pytest

from keras_hub_model_check import (OPSETS, VOCABULARY, check_by_name, requires_keras_hub,
                                   resaved, saved_model_cache)

from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from kerasonnx.model import load

pytestmark = requires_keras_hub

QWEN3 = {"vocabulary_size": VOCABULARY, "num_layers": 2, "num_query_heads": 4,
         "num_key_value_heads": 2, "hidden_dim": 8, "intermediate_dim": 16,
         "rope_max_wavelength": 500, "layer_norm_epsilon": 1e-5}


def qwen3_backbone(keras_hub):
    """A head_dim of its own (6, not hidden_dim / heads), rotary scaling, and a sliding
    window (3) shorter than both test lengths."""
    return keras_hub.models.Qwen3Backbone(**QWEN3, head_dim=6, rope_scaling_factor=2.0,
                                          sliding_window_size=3)


def qwen3_causal_lm(keras_hub):
    """An untied embedding (the logits from its reverse_embeddings), head_dim null
    (hidden_dim / heads), the window between the two test lengths."""
    backbone = keras_hub.models.Qwen3Backbone(**QWEN3, head_dim=None,
                                              tie_word_embeddings=False,
                                              sliding_window_size=7)
    return keras_hub.models.Qwen3CausalLM(backbone, preprocessor=None)


MODELS = {"qwen3_backbone": qwen3_backbone, "qwen3_causal_lm": qwen3_causal_lm}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    return saved_model_cache(tmp_path_factory.mktemp("keras_hub_qwen"), MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_qwen_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset)


def test_qwen3_reads_its_head_norms(saved_models):
    """The per-head query and key norms are read from their own saving paths."""
    _, path = saved_models("qwen3_backbone")
    with load(path) as graph:
        norm = graph.node("transformer_layer_1/_key_dense_layer_norm")
        assert norm.layer.weights.shape("vars/0") == (6,)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(use_qk_norm=True), "Qwen3Backbone config key 'use_qk_norm' is not one"),
    (lambda c: c.update(sliding_window_size=0), "config key 'sliding_window_size' is 0"),
    (lambda c: c.update(head_dim=2.5), "config key 'head_dim' is 2.5"),
    (lambda c: c.pop("head_dim"), "Qwen3Backbone config has no 'head_dim'"),
    (lambda c: c.update(tie_word_embeddings="yes"),
     "config key 'tie_word_embeddings' is 'yes'"),
    (lambda c: c.update(rope_scaling_factor=0), "config key 'rope_scaling_factor' is 0"),
    (lambda c: c.update(layer_norm_epsilon=None), "config key 'layer_norm_epsilon' is None"),
    (lambda c: c.update(num_key_value_heads=3),
     "'num_query_heads' (4) must divide hidden_dim (8) and be a multiple of "
     "num_key_value_heads (3)"),
])
def test_qwen3_config_outside_the_contract_is_one_line_error(saved_models, tmp_path, change,
                                                              message):
    _, path = saved_models("qwen3_backbone")
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert(resaved(path, tmp_path, lambda config: change(config["config"])))
