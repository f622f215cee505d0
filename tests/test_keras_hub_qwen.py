"""KerasHub's newest Qwen backbones and their causal LMs (Keras 3 only), rebuilt from their
constructor config: tiny configs built with real keras_hub 0.32, weights randomized, saved
as ``.keras``, converted at opset 23 and 17, run in onnxruntime at batch 1 and 3 and two
sequence lengths on padded token ids, every output compared with keras_hub's by name."""
from __future__ import annotations

import pytest

from keras_check import ATOL
from keras_hub_model_check import LENGTHS as DEFAULT_LENGTHS
from keras_hub_model_check import (OPSETS, VOCABULARY, assert_config_error, check_by_name,
                                   requires_keras_hub, saved_models_fixture)

from kerasonnx.convert import convert
from kerasonnx.model import load

pytestmark = requires_keras_hub

QWEN3 = {"vocabulary_size": VOCABULARY, "num_layers": 2, "num_query_heads": 4,
         "num_key_value_heads": 2, "hidden_dim": 8, "intermediate_dim": 16,
         "rope_max_wavelength": 500, "layer_norm_epsilon": 1e-5}


def qwen3_backbone(keras_hub):
    """A head_dim of its own (6, not hidden_dim / heads), rotary scaling, a sliding
    window (3) shorter than both test lengths, and a layer_norm_epsilon other than the
    per-head norms' own (1e-5, which the decoder does not pass on)."""
    return keras_hub.models.Qwen3Backbone(**dict(QWEN3, layer_norm_epsilon=1e-2),
                                          head_dim=6, rope_scaling_factor=2.0,
                                          sliding_window_size=3)


def qwen3_causal_lm(keras_hub):
    """An untied embedding (the logits from its reverse_embeddings), head_dim null
    (hidden_dim / heads), the window between the two test lengths."""
    backbone = keras_hub.models.Qwen3Backbone(**QWEN3, head_dim=None,
                                              tie_word_embeddings=False,
                                              sliding_window_size=7)
    return keras_hub.models.Qwen3CausalLM(backbone, preprocessor=None)


QWEN3_5 = {"vocabulary_size": VOCABULARY, "hidden_dim": 8, "intermediate_dim": 16,
           "linear_key_head_dim": 4}


def qwen3_5_backbone(keras_hub):
    """A gated delta net then full attention; 4 value heads over 2 key heads (k and q
    repeated), value heads of 3, 4 query heads over 2 key/value heads, rotary on half of
    head_dim, a sliding window of 3, and an mrope_section (no effect without vision)."""
    return keras_hub.models.Qwen3_5Backbone(
        **QWEN3_5, num_layers=2, layer_types=["linear_attention", "full_attention"],
        num_query_heads=4, num_key_value_heads=2, head_dim=8, partial_rotary_factor=0.5,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_value_head_dim=3,
        linear_conv_kernel_dim=3, sliding_window_size=3, mrope_section=[1, 1, 0])


def qwen3_5_causal_lm(keras_hub):
    """The default layer_types (three delta nets, then full attention), rotary on all of
    head_dim, as many value heads as key heads, a tied embedding."""
    backbone = keras_hub.models.Qwen3_5Backbone(
        **QWEN3_5, num_layers=4, num_query_heads=2, num_key_value_heads=2, head_dim=4,
        partial_rotary_factor=1.0, linear_num_key_heads=2, linear_num_value_heads=2,
        linear_value_head_dim=4, tie_word_embeddings=True, layer_norm_epsilon=1e-5)
    return keras_hub.models.Qwen3_5CausalLM(backbone, preprocessor=None)


MODELS = {"qwen3_backbone": qwen3_backbone, "qwen3_causal_lm": qwen3_causal_lm,
          "qwen3_5_backbone": qwen3_5_backbone, "qwen3_5_causal_lm": qwen3_5_causal_lm}

# Qwen 3.5 within 1e-4, not 1e-5: these tiny random models are ill-conditioned in float32
# through the delta net's gated RMS norm of small, cancelling read-outs; keras_hub itself
# moves its outputs by 1.5e-5 to 3.7e-5 when its embedding table moves by one ulp
# (measured on qwen3_5_backbone), and the ONNX lowering differs from keras_hub by 2e-6 to
# 3.6e-5. On one delta net alone both are within 2.4e-7 of a float64 recurrence. Length
# 70 crosses keras_hub's chunk of 64 (its state passed from chunk to chunk).
TOLERANCES = {"qwen3_5_backbone": 1e-4, "qwen3_5_causal_lm": 1e-4}
LENGTHS = {"qwen3_5_backbone": (5, 9, 70)}


saved_models = saved_models_fixture("keras_hub_qwen", MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_qwen_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset, lengths=LENGTHS.get(name, DEFAULT_LENGTHS),
                  atol=TOLERANCES.get(name, ATOL))


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
    assert_config_error(path, tmp_path, lambda config: change(config["config"]), message)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(vision_encoder={"class_name": "Qwen3_5VisionEncoder", "config": {}}),
     "'vision_encoder' is a 'Qwen3_5VisionEncoder'; kerasonnx rebuilds the text backbone "
     "only (vision_encoder null)"),
    (lambda c: c.update(layer_types=["full_attention"]),
     "config key 'layer_types' is ['full_attention']; kerasonnx rebuilds it for null or a "
     "list of num_layers (2)"),
    (lambda c: c.update(layer_types=["linear_attention", "sliding_attention"]),
     "config key 'layer_types' is ['linear_attention', 'sliding_attention']"),
    (lambda c: c.update(partial_rotary_factor=0.375),
     "'partial_rotary_factor' (0.375) gives 3 rotary features of head_dim (8)"),
    (lambda c: c.update(linear_num_value_heads=3),
     "'linear_num_value_heads' (3) is not a multiple of linear_num_key_heads (2)"),
    (lambda c: c.update(linear_conv_kernel_dim=0), "config key 'linear_conv_kernel_dim' is 0"),
    (lambda c: c.update(mrope_section="t"), "config key 'mrope_section' is 't'"),
    (lambda c: c.update(head_dim=None), "Qwen3_5Backbone config key 'head_dim' is None"),
    (lambda c: c.update(num_experts=8), "Qwen3_5Backbone config key 'num_experts' is not one"),
])
def test_qwen3_5_config_outside_the_contract_is_one_line_error(saved_models, tmp_path,
                                                                change, message):
    _, path = saved_models("qwen3_5_backbone")
    assert_config_error(path, tmp_path, lambda config: change(config["config"]), message)


def test_qwen3_5_delta_net_is_one_scan(saved_models):
    """Each gated delta net's recurrence is one ONNX Scan over the sequence (no unrolled
    copy per position: the graph does not grow with the length)."""
    _, path = saved_models("qwen3_5_causal_lm")
    ops = [node.op_type for node in convert(path).model.graph.node]
    assert ops.count("Scan") == 3


def test_qwen3_5_half_precision_keeps_the_delta_rule_in_float32(saved_models):
    """--precision float16: the Scan's body is float32 (keras_hub computes the recurrence
    in float32 too): its inputs are cast to float32, the graph stays valid."""
    _, path = saved_models("qwen3_5_backbone")
    graph = convert(path, precision="float16").model.graph
    producers = {o: node for node in graph.node for o in node.output}
    scan = next(node for node in graph.node if node.op_type == "Scan")
    assert {producers[name].op_type for name in scan.input[1:]} == {"Cast"}
