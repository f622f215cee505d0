"""KerasHub's Gemma 3 (text only; Keras 3 only): Gemma3Backbone, Gemma3CausalLM and
Gemma3TextEmbedder rebuilt from their constructor config, and keras_hub's classes named
RMSNormalization told apart.
Tiny configs built with real keras_hub 0.32, weights randomized, saved as ``.keras``,
converted at opset 23 and 17, run in onnxruntime at batch 1 and 3 and two sequence lengths
on padded token ids (one row padded at its head: a query that attends no key), every output
compared with keras_hub's by name within 1e-5."""
from __future__ import annotations

import re

import numpy as np
import pytest

from keras_check import assert_same, randomize, run_onnx
from keras_hub_model_check import (OPSETS, VOCABULARY, assert_config_error, check_by_name,
                                   head_padded_inputs, output_names_fresh_and_converted,
                                   requires_keras_hub, saved_models_fixture)

from kerasonnx.convert import convert
from kerasonnx.errors import UnsupportedLayerError
from kerasonnx.keras_hub_models.builder import COMMON_KEYS
from kerasonnx.keras_hub_models.gemma3 import GEMMA3_KEYS
from kerasonnx.model import load

# a single-input Keras model called on a dict of its one input, as check_by_name calls it
pytestmark = [*requires_keras_hub, pytest.mark.filterwarnings(
    "ignore:The structure of `inputs` doesn't match the expected structure")]

LAYERS = 6  # keras_hub makes blocks i % 6 < 5 local: blocks 0-4 local, 5 global


def gemma3_causal_lm(keras_hub):
    """Local and global decoder blocks: a sliding window (3) shorter than both test
    lengths (5, 9) on the local ones, whose rotary wavelength (10^4) and scaling factor (2)
    differ from the global block's (10^6, 4); query / key norms, post-attention and
    post-feed-forward norms, attention and final logit soft caps, a final-norm epsilon of
    its own; the logits from the tied embedding."""
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCABULARY, image_size=None, num_layers=LAYERS, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=8, intermediate_dim=8, head_dim=4,
        use_post_ffw_norm=True, use_post_attention_norm=True, attention_logit_soft_cap=2.0,
        final_logit_soft_cap=3.0, use_sliding_window_attention=True, sliding_window_size=3,
        local_rope_scaling_factor=2.0, global_rope_scaling_factor=4.0,
        layer_norm_epsilon=1e-5)
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)


def gemma3_backbone(keras_hub):
    """Every block global (no sliding window): wavelength 10^6 with the global scaling
    factor; 4 query heads over 2 key/value heads, a head_dim (4) other than hidden_dim /
    num_query_heads (2), no query / key norms, query_head_dim_normalize false (which
    keras_hub's blocks ignore)."""
    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCABULARY, image_size=16, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=8, intermediate_dim=12, head_dim=4,
        use_query_key_norm=False, query_head_dim_normalize=False,
        global_rope_scaling_factor=2.0)


# Weights normal * 0.3, not 0.5: at 0.5 the six blocks grow the hidden states to ~10 and
# keras_hub's own float32 rounding moves the logits by up to 2e-5 from a float64 run of the
# same model (the ONNX graph stays within 4e-6 of it).
WEIGHT_SCALE = 0.3
def gemma3_last_text_embedder(keras_hub):
    """The hidden state of each row's last kept position, L2-normalized."""
    return keras_hub.models.Gemma3TextEmbedder(backbone=gemma3_backbone(keras_hub),
                                               pooling_mode="last")


def gemma3_mean_text_embedder(keras_hub):
    """The mean over the kept positions, not normalized."""
    return keras_hub.models.Gemma3TextEmbedder(backbone=gemma3_backbone(keras_hub),
                                               pooling_mode="mean", normalize=False)


MODELS = {"gemma3_causal_lm": gemma3_causal_lm, "gemma3_backbone": gemma3_backbone,
          "gemma3_last_text_embedder": gemma3_last_text_embedder,
          "gemma3_mean_text_embedder": gemma3_mean_text_embedder}


saved_models = saved_models_fixture("keras_hub_gemma3", MODELS, WEIGHT_SCALE)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset, inputs=head_padded_inputs)


def test_blocks_are_keras_hub_blocks(saved_models):
    """Each rebuilt Gemma3DecoderBlock has the config keras_hub's own block has (local or
    global, its window, rotary wavelength and scaling factor, ...), reads its weights from
    its saving path, and the model keeps keras_hub's names."""
    model, path = saved_models("gemma3_causal_lm")
    backbone = model.backbone
    local = [backbone.get_layer(f"decoder_block_{i}").use_sliding_window_attention
             for i in range(LAYERS)]
    assert local == [True] * 5 + [False]
    with load(path) as graph:
        assert [t.name for t in graph.inputs] == ["token_ids", "padding_mask"]
        assert graph.output_names == ["logits"]
        for i in range(LAYERS):
            expected = backbone.get_layer(f"decoder_block_{i}").get_config()
            rebuilt = graph.layers[f"{backbone.name}/decoder_block_{i}"].config
            assert {k: v for k, v in rebuilt.items() if k != "dtype"} == {
                k: v for k, v in expected.items() if k != "dtype"}
        norm = graph.node(f"{backbone.name}/decoder_block_5/query_norm")
        np.testing.assert_array_equal(
            norm.layer.weights.get("vars/0"),
            backbone.get_layer("decoder_block_5").attention.query_norm.scale.numpy())


def test_every_config_key_is_read():
    """The keys kerasonnx reads are exactly those keras_hub 0.32's get_config writes."""
    import keras_hub

    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCABULARY, image_size=16, num_layers=1, num_query_heads=1,
        num_key_value_heads=1, hidden_dim=4, intermediate_dim=4, head_dim=4)
    assert set(backbone.get_config()) == GEMMA3_KEYS | COMMON_KEYS


def test_text_embedder_outputs_are_named_as_a_fresh_load_names_them(saved_models):
    """Keras numbers operation names per process (the backbone takes ``multiply``): the
    converted output has the name a fresh process loading the file gives."""
    names = ["gemma3_last_text_embedder", "gemma3_mean_text_embedder"]
    fresh, converted = output_names_fresh_and_converted([saved_models(n)[1] for n in names])
    assert converted == fresh == ["normalize", "true_divide"]


def _backbone(change):
    return lambda c: change(c["config"]["backbone"]["config"])


@pytest.mark.parametrize("change, message", [
    (_backbone(lambda c: c.update(vision_encoder={"class_name": "Gemma3VisionEncoder"})),
     "Gemma3Backbone config key 'vision_encoder' is a 'Gemma3VisionEncoder'; kerasonnx "
     "rebuilds the text backbone only"),
    (_backbone(lambda c: c.update(is_embedding_model=True)),
     "config key 'is_embedding_model' is true (EmbeddingGemma); not supported yet"),
    (_backbone(lambda c: c.update(use_bidirectional_attention=True)),
     "config key 'use_bidirectional_attention' is true (EmbeddingGemma)"),
    (_backbone(lambda c: c.update(sliding_window_pattern=6)),
     "Gemma3Backbone config key 'sliding_window_pattern' is not one kerasonnx knows"),
    (_backbone(lambda c: c.update(local_rope_scaling_factor=0)),
     "config key 'local_rope_scaling_factor' is 0; kerasonnx rebuilds it for a positive "
     "number"),
    (_backbone(lambda c: c.update(num_key_value_heads=3)),
     "'num_query_heads' (2) is not a multiple of num_key_value_heads (3)"),
    (_backbone(lambda c: c.update(sliding_window_size=None)),
     "config key 'sliding_window_size' is None"),
    (_backbone(lambda c: c.update(use_query_key_norm="yes")),
     "config key 'use_query_key_norm' is 'yes'"),
    (_backbone(lambda c: c.update(image_size=-1)), "config key 'image_size' is -1"),
    (lambda c: c["config"].update(sampler="greedy"),
     "Gemma3CausalLM config key 'sampler' is not one kerasonnx knows"),
])
def test_unknown_config_is_one_line_error(saved_models, tmp_path, change, message):
    assert_config_error(saved_models("gemma3_causal_lm")[1], tmp_path, change, message)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["config"].update(pooling_mode="cls"),
     "Gemma3TextEmbedder config key 'pooling_mode' is 'cls'; kerasonnx rebuilds it for "
     "'last' or 'mean'"),
    (lambda c: c["config"].update(normalize=1),
     "Gemma3TextEmbedder config key 'normalize' is 1; kerasonnx rebuilds it for a bool"),
])
def test_text_embedder_config_contract(saved_models, tmp_path, change, message):
    assert_config_error(saved_models("gemma3_last_text_embedder")[1], tmp_path, change, message)


# ---------------------------------------------------------------------- RMSNormalization


def _norm_model(norm_class, tmp_path, name: str):
    """Keras' RMSNormalization after keras_hub's ``norm_class`` on (batch, length, 8),
    weights randomized, saved; (model, path)."""
    import keras

    inputs = keras.Input((None, 8))
    x = norm_class(epsilon=1e-5, name="hub_norm")(inputs)
    model = keras.Model(inputs, keras.layers.RMSNormalization(name="keras_norm")(x))
    randomize(model)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return model, path


@pytest.mark.parametrize("opset", OPSETS)
def test_gemma3_norm_next_to_keras_norm(tmp_path, opset):
    """Gemma 3's RMSNormalization (1 + scale) and Keras' (scale), side by side."""
    from keras_hub.src.models.gemma3.gemma3_layers import RMSNormalization

    model, path = _norm_model(RMSNormalization, tmp_path, "gemma3_norm")
    x = np.random.default_rng(3).normal(0, 2, (3, 5, 8)).astype("float32")
    assert_same([np.asarray(model(x))], run_onnx(convert(path, opset=opset).model, [x]),
                f"gemma3 norm opset {opset}")


def test_unmodelled_keras_hub_norm_is_unsupported(tmp_path):
    """Gemma 4's RMSNormalization (x * scale, no 1 +) is a class kerasonnx has not
    modelled: an unsupported layer, not Gemma's nor Keras' graph."""
    from keras_hub.src.models.gemma4.gemma4_layers import RMSNormalization

    _, path = _norm_model(RMSNormalization, tmp_path, "gemma4_norm")
    with pytest.raises(UnsupportedLayerError, match=re.escape(
            "1 layer(s) cannot be converted yet: hub_norm (RMSNormalization from "
            "keras_hub.src.models.gemma4.gemma4_layers)")) as raised:
        convert(path)
    assert "\n" not in str(raised.value)


def test_module_less_gemma3_norm_is_not_taken_for_keras_norm(tmp_path):
    """Keras 3's legacy .h5 records no module: Gemma 3's norm (no ``axis`` in its config)
    is then an unsupported layer, not Keras' RMSNormalization (scale, not 1 + scale)."""
    import keras
    from keras_hub.src.models.gemma3.gemma3_layers import RMSNormalization

    inputs = keras.Input((None, 8))
    path = tmp_path / "gemma3_norm.h5"
    keras.Model(inputs, RMSNormalization(name="hub_norm")(inputs)).save(path)
    with pytest.raises(UnsupportedLayerError, match=re.escape(
            "1 layer(s) cannot be converted yet: hub_norm (RMSNormalization)")):
        convert(path)
