"""KerasHub's Gemma and ViT backbones and task models (Keras 3 only), rebuilt from their
constructor config: tiny configs built with real keras_hub 0.32, weights randomized, saved
as ``.keras``, converted at opset 23 and 17, run in onnxruntime at batch 1 and 3 (Gemma: two
sequence lengths on padded token ids, one row padded at its head so that a query attends no
key; ViT: random images of the size the config fixes), every output compared with
keras_hub's by name within 1e-5."""
from __future__ import annotations

import pytest

from keras_hub_model_check import (OPSETS, VOCABULARY, assert_config_error, check_by_name,
                                   head_padded_inputs, requires_keras_hub,
                                   saved_models_fixture)

from kerasonnx.convert import convert
from kerasonnx.model import load

# a single-input Keras model called on a dict of its one input, as check_by_name calls it
pytestmark = [*requires_keras_hub, pytest.mark.filterwarnings(
    "ignore:The structure of `inputs` doesn't match the expected structure")]

IMAGE_SHAPE = (8, 12, 3)


def gemma_backbone(keras_hub):
    """Gemma 1: grouped-query attention (4 query heads over 2 key/value heads), a head_dim
    (4) other than hidden_dim / num_query_heads (2)."""
    return keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=8, intermediate_dim=16, head_dim=4)


def gemma2_causal_lm(keras_hub):
    """Gemma 2's options: post-attention and post-feed-forward norms, attention and final
    logit soft caps, a sliding window (3) shorter than the longer test sequence on the even
    decoder blocks; the logits from the tied embedding."""
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=8, intermediate_dim=12, head_dim=4, layer_norm_epsilon=1e-5,
        query_head_dim_normalize=False, use_post_ffw_norm=True,
        use_post_attention_norm=True, attention_logit_soft_cap=2.0,
        final_logit_soft_cap=3.0, use_sliding_window_attention=True, sliding_window_size=3)
    return keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)


def vit_backbone(keras_hub, **options):
    """Non-square patches (4 x 3) over an 8 x 12 image: 8 patches."""
    return keras_hub.models.ViTBackbone(image_shape=IMAGE_SHAPE, patch_size=(4, 3),
                                        num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                                        **options)


def vit_backbone_without_biases(keras_hub):
    """No class token, no patch / attention / MLP biases."""
    return vit_backbone(keras_hub, use_class_token=False, use_patch_bias=False,
                        use_mha_bias=False, use_mlp_bias=False, layer_norm_epsilon=1e-5)


def vit_image_classifier(keras_hub):
    """The class token's row through pre_logits (tanh) to softmax predictions, with a real
    preprocessor (an image converter), which is left out."""
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(
        keras_hub.layers.ViTImageConverter(image_size=IMAGE_SHAPE[:2]))
    return keras_hub.models.ViTImageClassifier(vit_backbone(keras_hub), num_classes=3,
                                               preprocessor=preprocessor, intermediate_dim=6,
                                               activation="softmax", dropout=0.1)


def vit_gap_classifier(keras_hub):
    """Global average pooling over the sequence, no pre_logits."""
    return keras_hub.models.ViTImageClassifier(vit_backbone_without_biases(keras_hub),
                                               num_classes=4, pooling="gap")


MODELS = {"gemma_backbone": gemma_backbone, "gemma2_causal_lm": gemma2_causal_lm,
          "vit_backbone_without_biases": vit_backbone_without_biases,
          "vit_image_classifier": vit_image_classifier,
          "vit_gap_classifier": vit_gap_classifier}


def image_inputs(model, batch: int, size, rng) -> dict:
    """Random pixels, channels_last, of the ``size`` (height, width) the config fixes."""
    return {"images": rng.normal(0, 1, (batch, *size, IMAGE_SHAPE[2])).astype("float32")}


saved_models = saved_models_fixture("keras_hub_gemma_vit", MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    if name.startswith("gemma"):
        check_by_name(model, path, opset, inputs=head_padded_inputs)
    else:
        check_by_name(model, path, opset, inputs=image_inputs, lengths=(IMAGE_SHAPE[:2],))


def test_keeps_keras_hub_names_and_weight_paths(saved_models):
    """Gemma's and ViT's layers keep keras_hub's names and read their weights from the
    saving paths (``gemma_decoder_block_1/attention/query_dense``,
    ``vi_t_encoder/encoder_layers/vi_t_encoder_block_1/mlp/dense_1``)."""
    _, path = saved_models("gemma_backbone")
    with load(path) as graph:
        assert [t.name for t in graph.inputs] == ["token_ids", "padding_mask"]
        assert graph.output_names == ["sequence_output"]
        query = graph.node("decoder_block_1/query_dense")
        assert query.layer.weights.shape("vars/0") == (4, 8, 4)
        assert graph.node("final_normalization").layer.weights.shape("vars/0") == (8,)
    _, path = saved_models("vit_image_classifier")
    with load(path) as graph:
        assert [t.name for t in graph.inputs] == ["images"]
        assert graph.output_names == ["predictions"]
        backbone = graph.nodes[0].name.split("/")[0]
        block = graph.node(f"{backbone}/vit_encoder/transformer_block_2/dense_1")
        assert block.layer.weights.shape("vars/0") == (8, 16)
        assert block.layer.config["activation"] == "gelu"


@pytest.mark.parametrize("opset, op_type", [(23, "Gelu"), (17, "Erf")])
def test_vit_mlp_gelu_is_exact(saved_models, opset, op_type):
    """Keras' "gelu" is the erf one: opset 20+ writes Gelu(approximate="none"), older opsets
    0.5 x (1 + erf(x / sqrt 2))."""
    _, path = saved_models("vit_backbone_without_biases")
    nodes = [n for n in convert(path, opset=opset).model.graph.node if n.op_type == op_type]
    assert len(nodes) == 2
    assert all(a.s == b"none" for n in nodes for a in n.attribute if a.name == "approximate")


def test_preprocessor_note_names_the_image_converter(saved_models):
    from kerasonnx.report import inspect

    _, path = saved_models("vit_image_classifier")
    assert inspect(path)["notes"] == [
        "ViTImageClassifier's preprocessor ViTImageClassifierPreprocessor (image converter: "
        "resizing, rescaling) is not a layer and was left out: the model takes images"]


@pytest.mark.parametrize("name, change, message", [
    ("gemma_backbone", lambda c: c["config"].update(rope_max_wavelength=500),
     "GemmaBackbone config key 'rope_max_wavelength' is not one kerasonnx knows"),
    ("gemma_backbone", lambda c: c["config"].update(num_key_value_heads=3),
     "'num_query_heads' (4) is not a multiple of num_key_value_heads (3)"),
    ("gemma_backbone", lambda c: c["config"].update(final_logit_soft_cap=0),
     "config key 'final_logit_soft_cap' is 0; kerasonnx rebuilds it for a positive number "
     "or null"),
    ("gemma_backbone", lambda c: c["config"].update(use_sliding_window_attention="yes"),
     "config key 'use_sliding_window_attention' is 'yes'"),
    ("gemma2_causal_lm", lambda c: c["config"]["backbone"]["config"].update(head_dim=None),
     "GemmaBackbone config key 'head_dim' is None"),
    ("vit_gap_classifier", lambda c: c["config"]["backbone"]["config"].update(
        data_format="channels_first"),
     "ViTBackbone config key 'data_format' is not one kerasonnx knows"),
    ("vit_gap_classifier", lambda c: c["config"]["backbone"]["config"].update(
        patch_size=[3, 3]), "config key 'patch_size' ([3, 3]) does not tile the 8x12 image"),
    ("vit_gap_classifier", lambda c: c["config"]["backbone"]["config"].update(
        image_shape=[None, None, 3]), "config key 'image_shape' is [None, None, 3]"),
    ("vit_gap_classifier", lambda c: c["config"].update(pooling="max"),
     "ViTImageClassifier config key 'pooling' is 'max'; kerasonnx rebuilds it for 'token' "
     "or 'gap'"),
])
def test_unknown_config_is_one_line_error(saved_models, tmp_path, name, change, message):
    _, path = saved_models(name)
    assert_config_error(path, tmp_path, change, message)
