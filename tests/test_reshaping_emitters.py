"""Reshape, Flatten, Permute, RepeatVector, Cropping1D/2D, ZeroPadding1D/2D and
UpSampling1D/2D (nearest, bilinear):
each case built with real Keras 3 and tf_keras (Keras 2), saved, converted at opset 23 and
17 and compared with Keras at two batch sizes and, over None axes, two lengths."""
from __future__ import annotations

import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from keras_check import (DIALECTS, Cases, check_conversion, float_inputs, is_keras2,
                         keras_module, save)

pytestmark = requires_keras

CASES = Cases()
case = CASES.register


@case()
def reshape_flatten_permute(k):
    matrix, cube, sequence = float_inputs(k, (3, 4), (2, 3, 5), (None, 6))
    layers = k.layers
    return k.Model([matrix, cube, sequence], [
        layers.Reshape((2, 6))(matrix), layers.Reshape((-1, 3))(matrix),
        layers.Reshape((4, -1, 1))(matrix), layers.Reshape((-1,))(cube),
        layers.Reshape((-1, 2))(sequence), layers.Reshape((-1, 3, 2))(sequence),
        layers.Flatten()(matrix), layers.Flatten()(cube), layers.Flatten()(sequence),
        layers.Flatten(data_format="channels_first")(cube),
        layers.Permute((2, 1))(matrix), layers.Permute((3, 1, 2))(cube),
        layers.Permute((2, 1))(sequence)])


@case()
def repeat_vector(k):
    (vector,) = float_inputs(k, (5,))
    return k.Model([vector], [k.layers.RepeatVector(3)(vector), k.layers.RepeatVector(1)(vector)])


@case()
def time_axis(k):
    sequence, unsized = float_inputs(k, (None, 3), (None, None))
    layers = k.layers
    outputs = [layers.Cropping1D(1)(sequence), layers.Cropping1D((0, 2))(sequence),
               layers.Cropping1D((2, 0))(sequence), layers.ZeroPadding1D(2)(sequence),
               layers.ZeroPadding1D((1, 3))(sequence), layers.UpSampling1D(2)(sequence),
               layers.UpSampling1D(3)(sequence), layers.UpSampling1D(2)(unsized)]
    if not is_keras2(k):  # Keras 2's ZeroPadding1D has no data_format
        outputs.append(layers.ZeroPadding1D((2, 1), data_format="channels_first")(sequence))
    return k.Model([sequence, unsized], outputs)


@case()
def image_axes(k):
    """Cropping2D and ZeroPadding2D in every spelling, both data formats, over fixed and
    None rows and columns."""
    image, unsized = float_inputs(k, (6, 7, 3), (None, None, 2))
    layers = k.layers
    outputs = []
    for x in (image, unsized):
        outputs += [layers.Cropping2D(1)(x), layers.Cropping2D((1, 0))(x),
                    layers.Cropping2D(((0, 2), (3, 0)))(x), layers.ZeroPadding2D()(x),
                    layers.ZeroPadding2D((2, 0))(x), layers.ZeroPadding2D(((1, 2), (0, 3)))(x),
                    layers.Cropping2D(((1, 0), (0, 1)), data_format="channels_first")(x),
                    layers.ZeroPadding2D(((1, 0), (2, 1)), data_format="channels_first")(x)]
    return k.Model([image, unsized], outputs)


@case()
def up_sampling_2d(k):
    image, unsized = float_inputs(k, (4, 5, 3), (None, None, 2))
    up = k.layers.UpSampling2D
    outputs = []
    for x in (image, unsized):
        outputs += [up()(x), up((3, 2))(x), up(2, interpolation="bilinear")(x),
                    up((3, 4), interpolation="bilinear")(x),
                    up((1, 2), data_format="channels_first")(x),
                    up(2, interpolation="bilinear", data_format="channels_first")(x)]
    return k.Model([image, unsized], outputs)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    return CASES.cache(tmp_path_factory.mktemp("reshaping_models"))


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_reshaping_matches_keras(saved_models, name, dialect):
    model, path = saved_models(name, dialect)
    check_conversion(model, path)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"up_sampling_2d"}))
def test_batch_stays_dynamic(saved_models, name):
    """Reshapes copy the batch (0) and infer one axis (-1), so the symbolic batch survives
    shape inference; only UpSampling1D over unsized features reads a shape at run time.
    (UpSampling2D is a Resize, whose shape inference forgets symbolic dims.)"""
    _, path = saved_models(name, "keras2")
    graph = convert(path).model.graph
    run_time_shaped = "up_sampling1d_2"
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "batch"
               for o in graph.output if o.name != run_time_shaped)
    assert [n.name for n in graph.node if n.op_type == "Shape"] == (
        [f"{run_time_shaped}/features/Shape"] if name == "time_axis" else [])


def test_bicubic_up_sampling_is_refused(tmp_path):
    """TensorFlow's bicubic kernel comes from a lookup table no ONNX Resize reproduces."""
    k = keras_module("keras3")
    x = k.Input((4, 4, 2), name="x")
    model = k.Model(x, k.layers.UpSampling2D(interpolation="bicubic", name="up")(x))
    with pytest.raises(ConversionError, match="'up' \\(UpSampling2D\\): interpolation 'bicubic'"):
        convert(save(model, "keras3", tmp_path, "bicubic"))
