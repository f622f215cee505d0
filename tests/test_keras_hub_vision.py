"""KerasHub's DeiT and DINOV2 backbones and DeiT's image classifier (Keras 3 only),
rebuilt from their constructor config: tiny configs built with real keras_hub 0.32, weights
randomized, saved as ``.keras``, converted at opset 23 and 17, run in onnxruntime at batch
1 and 3 on random images of the size the config fixes, every output compared by name
within 1e-5 with the model Keras loads from the file (DINOV2 recomputes its position table
from the saved pretraining one at load, so the model in memory is not the reference)."""
from __future__ import annotations

import pytest

from keras_hub_model_check import (OPSETS, assert_config_error, check_by_name,
                                   requires_keras_hub, saved_model_cache)

from kerasonnx.convert import convert

# a single-input Keras model called on a dict of its one input, as check_by_name calls it
pytestmark = [*requires_keras_hub, pytest.mark.filterwarnings(
    "ignore:The structure of `inputs` doesn't match the expected structure"),
    pytest.mark.filterwarnings("ignore:`compile\\(\\)` was not called")]

DEIT_IMAGE = (8, 12, 3)
DINOV2_IMAGE = (12, 12, 3)


def deit_backbone(keras_hub, **options):
    """Non-square patches (4 x 3) over an 8 x 12 image: 8 patches after the class and
    distillation tokens."""
    return keras_hub.models.DeiTBackbone(image_shape=DEIT_IMAGE, patch_size=(4, 3),
                                         num_layers=2, num_heads=2, hidden_dim=8,
                                         intermediate_dim=16, **options)


def deit_backbone_without_attention_bias(keras_hub):
    return deit_backbone(keras_hub, use_mha_bias=False, layer_norm_epsilon=1e-5)


def deit_image_classifier(keras_hub):
    """The class token's row to softmax predictions, with a real preprocessor (an image
    converter), which is left out."""
    preprocessor = keras_hub.models.DeiTImageClassifierPreprocessor(
        keras_hub.layers.DeiTImageConverter(image_size=DEIT_IMAGE[:2]))
    return keras_hub.models.DeiTImageClassifier(deit_backbone(keras_hub), num_classes=3,
                                                preprocessor=preprocessor,
                                                activation="softmax", dropout=0.1)


def deit_gap_classifier(keras_hub):
    """The mean over the whole sequence, the two tokens included."""
    return keras_hub.models.DeiTImageClassifier(
        deit_backbone_without_attention_bias(keras_hub), num_classes=4, pooling="gap")


def dinov2_backbone(keras_hub, **options):
    """3 x 3 patches of 4 over a 12 x 12 image, by default at the pretraining size (the
    position table is used as saved); the MLP feed-forward, no register tokens."""
    options = {"use_mask_token": False, "position_embedding_shape": DINOV2_IMAGE, **options}
    return keras_hub.models.DINOV2Backbone(patch_size=4, num_layers=2, hidden_dim=8,
                                           num_heads=2, intermediate_dim=16,
                                           image_shape=DINOV2_IMAGE, **options)


def dinov2_swiglu_registers(keras_hub):
    """The SwiGLU feed-forward (its inner width (int(16 * 2 / 3) + 7) // 8 * 8 = 16), two
    register tokens after the class token, the mask token's weight, pyramid outputs
    normalised (not a model output), a name of its own (keras_hub prefixes its layers')."""
    return dinov2_backbone(keras_hub, use_swiglu_ffn=True, num_register_tokens=2,
                           use_mask_token=True, layer_scale_init_value=0.5,
                           apply_layernorm=True, name="dino")


def dinov2_resized_table(keras_hub):
    """Pretrained at 20 x 20 (a 5 x 5 patch grid), run at 12 x 12 (3 x 3): keras_hub
    resizes the position table bicubically at load."""
    return dinov2_backbone(keras_hub, position_embedding_shape=(20, 20, 3))


def dinov2_enlarged_table(keras_hub):
    """Pretrained at 8 x 8 (2 x 2 patches), run at 12 x 12: the table enlarged, the
    edge taps renormalised, with register tokens."""
    return dinov2_backbone(keras_hub, position_embedding_shape=(8, 8, 3),
                           num_register_tokens=1)


MODELS = {"deit_backbone_without_attention_bias": deit_backbone_without_attention_bias,
          "deit_image_classifier": deit_image_classifier,
          "deit_gap_classifier": deit_gap_classifier, "dinov2_backbone": dinov2_backbone,
          "dinov2_swiglu_registers": dinov2_swiglu_registers,
          "dinov2_resized_table": dinov2_resized_table,
          "dinov2_enlarged_table": dinov2_enlarged_table}


def image_inputs(model, batch: int, size, rng) -> dict:
    """Random pixels, channels_last, of the ``size`` (height, width, channels) the config
    fixes."""
    return {"images": rng.normal(0, 1, (batch, *size)).astype("float32")}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """``get(name)``: (the model Keras loads from the saved file, its path). DeiT's input
    is named per process (keras_hub leaves it unnamed): the tests call the models on the
    images alone."""
    import keras

    built = saved_model_cache(tmp_path_factory.mktemp("keras_hub_vision"), MODELS)
    loaded = {}

    def get(name: str):
        if name not in loaded:
            path = built(name)[1]
            loaded[name] = (keras.saving.load_model(path), path)
        return loaded[name]

    return get


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    size = DEIT_IMAGE if name.startswith("deit") else DINOV2_IMAGE
    check_by_name(lambda arrays, training: model(arrays["images"], training=training), path,
                  opset, inputs=image_inputs, lengths=(size,))


def test_dinov2_output_keeps_the_prefixed_layer_name(saved_models):
    """keras_hub names DINOV2's layers after the model (``dino_layernorm``): the output
    keeps Keras' name."""
    model, path = saved_models("dinov2_swiglu_registers")
    outputs = [o.name for o in convert(path).model.graph.output]
    assert outputs == model.output_names == ["dino_layernorm"]


@pytest.mark.parametrize("name, count", [("deit_gap_classifier", 2), ("dinov2_backbone", 2),
                                         ("dinov2_swiglu_registers", 0)])
@pytest.mark.parametrize("opset, op_type", [(23, "Gelu"), (17, "Erf")])
def test_mlp_gelu_is_exact(saved_models, name, count, opset, op_type):
    """DeiT's and DINOV2's MLPs use Keras' "gelu", the erf one: opset 20+ writes
    Gelu(approximate="none"), older opsets 0.5 x (1 + erf(x / sqrt 2)); the SwiGLU
    feed-forward has none."""
    _, path = saved_models(name)
    nodes = [n for n in convert(path, opset=opset).model.graph.node if n.op_type == op_type]
    assert len(nodes) == count
    assert all(a.s == b"none" for n in nodes for a in n.attribute if a.name == "approximate")


@pytest.mark.parametrize("grid, size", [((37, 37), (16, 16)), ((5, 5), (3, 3)),
                                        ((2, 2), (7, 7)), ((16, 16), (37, 37)),
                                        ((1, 1), (3, 3)), ((6, 4), (4, 9))])
def test_bicubic_resize_is_tensorflows(grid, size):
    """The position table's resize folded in NumPy equals TensorFlow's ResizeBicubic (the
    Keras TensorFlow backend's ``ops.image.resize``) bit for bit on these grids, shrunk
    (DINOV2's 518 / 14 = 37 to 224 / 14 = 16) and enlarged."""
    import numpy as np
    tf = pytest.importorskip("tensorflow")

    from kerasonnx.emit.keras_hub import tf_bicubic_resize

    table = np.random.default_rng(3).normal(0, 1, (*grid, 24)).astype("float32")
    expected = tf.image.resize(table[None], size, method="bicubic").numpy()[0]
    assert np.array_equal(tf_bicubic_resize(table, size), expected)


def test_preprocessor_note_names_the_image_converter(saved_models):
    from kerasonnx.report import inspect

    _, path = saved_models("deit_image_classifier")
    assert inspect(path)["notes"] == [
        "DeiTImageClassifier's preprocessor DeiTImageClassifierPreprocessor (image "
        "converter: resizing, rescaling) is not a layer and was left out: the model takes "
        "images"]


@pytest.mark.parametrize("name, change, message", [
    ("deit_gap_classifier", lambda c: c["backbone"]["config"].update(data_format="x"),
     "DeiTBackbone config key 'data_format' is not one kerasonnx knows"),
    ("deit_gap_classifier", lambda c: c["backbone"]["config"].update(patch_size=[3, 3]),
     "DeiTBackbone config key 'patch_size' ([3, 3]) does not tile the 8x12 image"),
    ("deit_gap_classifier", lambda c: c["backbone"]["config"].update(use_mha_bias=None),
     "DeiTBackbone config key 'use_mha_bias' is None; kerasonnx rebuilds it for true or "
     "false"),
    ("deit_gap_classifier", lambda c: c.update(pooling="max"),
     "DeiTImageClassifier config key 'pooling' is 'max'; kerasonnx rebuilds it for 'token' "
     "or 'gap'"),
    ("deit_gap_classifier", lambda c: c.update(head_dtype="float32"),
     "DeiTImageClassifier config key 'head_dtype' is not one kerasonnx knows"),
    ("dinov2_resized_table", lambda c: c.update(antialias_in_interpolation=True),
     "DINOV2Backbone config key 'antialias_in_interpolation' is true with an image_shape "
     "([12, 12, 3]) other than position_embedding_shape ([20, 20, 3])"),
    ("dinov2_backbone", lambda c: c.update(position_embedding_shape=[12, 16, 3]),
     "DINOV2Backbone config key 'position_embedding_shape' is [12, 16, 3]; keras_hub "
     "resizes a square position table only"),
    ("dinov2_backbone", lambda c: c.update(image_shape=[12, 8, 3]),
     "DINOV2Backbone config key 'image_shape' is [12, 8, 3]; keras_hub builds it square"),
    ("dinov2_backbone", lambda c: c.update(num_register_tokens=-1),
     "DINOV2Backbone config key 'num_register_tokens' is -1; kerasonnx rebuilds it for an "
     "int >= 0"),
    ("dinov2_backbone", lambda c: c.update(patch_size=5),
     "DINOV2Backbone config key 'patch_size' (5) does not tile the 12x12 image"),
    ("dinov2_backbone", lambda c: c.update(data_format="channels_first"),
     "DINOV2Backbone config key 'data_format' is not one kerasonnx knows"),
    ("dinov2_backbone", lambda c: c.update(use_swiglu_ffn="yes"),
     "DINOV2Backbone config key 'use_swiglu_ffn' is 'yes'"),
])
def test_unknown_config_is_one_line_error(saved_models, tmp_path, name, change, message):
    _, path = saved_models(name)
    assert_config_error(path, tmp_path, lambda config: change(config["config"]), message)
