"""LayerNormalization, BatchNormalization, UnitNormalization, RMSNormalization and
GroupNormalization built with real Keras 3 and
tf_keras across their options, weights randomized (variances kept positive), saved,
converted at opset 23 and 17, run in onnxruntime at two batch sizes and two lengths, every
output compared with Keras; plus the inputs where the dialects part ways (UnitNormalization
of a near-zero vector)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from keras_check import (Cases, assert_same, check_conversion, keras_module, keras_outputs,
                         run_onnx, save)

pytestmark = requires_keras

OPSETS = (23, 17)
CASES = Cases()
case = CASES.register


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Build each (case, dialect) model once: (Keras model, saved file)."""
    return CASES.cache(tmp_path_factory.mktemp("normalization_models"))


def _apply(k, shape, *layers):
    """One input, one output per layer."""
    x = k.Input(shape, name="x")
    return k.Model(x, [layer(x) for layer in layers])


# ---------------------------------------------------------------------- LayerNormalization


@case()
def layer_norm_last_axis(k):
    LN = k.layers.LayerNormalization
    return _apply(k, (None, 8), LN(), LN(epsilon=1e-6), LN(center=False),
                  LN(scale=False), LN(center=False, scale=False))


@case()
def layer_norm_2d(k):
    return _apply(k, (8,), k.layers.LayerNormalization(epsilon=0.01))


@case()
def layer_norm_trailing_axes(k):
    LN = k.layers.LayerNormalization
    return _apply(k, (3, 4, 5), LN(axis=[2, 3]), LN(axis=[1, 2, 3], center=False),
                  LN(axis=[-2, -1], epsilon=1e-6))


@case()
def layer_norm_inner_axes(k):
    """Axes that do not run to the last one: the formula instead of the ONNX op."""
    LN = k.layers.LayerNormalization
    return _apply(k, (5, 4, 3), LN(axis=1), LN(axis=[1, 2], scale=False), LN(axis=[1, 3]))


@case("keras3")
def layer_norm_rms_scaling(k):
    LN = k.layers.LayerNormalization
    return _apply(k, (5, 8), LN(rms_scaling=True), LN(rms_scaling=True, scale=False),
                  LN(rms_scaling=True, axis=[1, 2], epsilon=1e-5), LN(rms_scaling=True, axis=1))


# ---------------------------------------------------------------------- BatchNormalization


@case()
def batch_norm_last_axis(k):
    BN = k.layers.BatchNormalization
    return _apply(k, (None, 8), BN(), BN(epsilon=1e-5), BN(center=False), BN(scale=False),
                  BN(center=False, scale=False))


@case()
def batch_norm_2d(k):
    return _apply(k, (8,), k.layers.BatchNormalization())


@case()
def batch_norm_other_axes(k):
    BN = k.layers.BatchNormalization
    return _apply(k, (5, 4, 3), BN(axis=1), BN(axis=2), BN(axis=-1))


@case()
def batch_norm_image(k):
    """4-D channels-last: tf_keras' fused kernel at inference."""
    return _apply(k, (3, 4, 6), k.layers.BatchNormalization())


@case("keras2")
def batch_norm_several_axes(k):
    return _apply(k, (5, 4, 3), k.layers.BatchNormalization(axis=[1, 3]))


@case("keras2")
def batch_norm_virtual_batch(k):
    """Ghost batches only change training; their weights keep an extra leading 1."""
    return _apply(k, (None, 8), k.layers.BatchNormalization(virtual_batch_size=1))


# ---------------------------------------------------------------------- UnitNormalization


@case()
def unit_norm(k):
    UN = k.layers.UnitNormalization
    return _apply(k, (None, 6), UN(), UN(axis=1), UN(axis=[1, 2]))


@case()
def unit_norm_2d(k):
    return _apply(k, (6,), k.layers.UnitNormalization())


# ---------------------------------------------------------------------- RMSNormalization


@case("keras3")
def rms_norm(k):
    RMS = k.layers.RMSNormalization
    return _apply(k, (None, 8), RMS(), RMS(epsilon=1e-3))


@case("keras3")
def rms_norm_axes(k):
    """Trailing axes: the ONNX operator at opset 23; inner axes: the formula, with the scale
    broadcast against the trailing axes as Keras multiplies it."""
    RMS = k.layers.RMSNormalization
    return _apply(k, (5, 5, 5), RMS(axis=[2, 3]), RMS(axis=[1, 2, 3], epsilon=1e-5),
                  RMS(axis=1), RMS(axis=[1, 2]))


# ---------------------------------------------------------------------- GroupNormalization


@case()
def group_norm_channels_last(k):
    GN = k.layers.GroupNormalization
    return _apply(k, (None, 8), GN(groups=2), GN(groups=4, epsilon=1e-5), GN(groups=1),
                  GN(groups=-1, center=False), GN(groups=2, scale=False),
                  GN(groups=4, center=False, scale=False))


@case()
def group_norm_image(k):
    GN = k.layers.GroupNormalization
    return _apply(k, (None, None, 6), GN(groups=3), GN(groups=2, epsilon=1e-2))


@case()
def group_norm_channels_first(k):
    """axis 1 with unknown sizes after it; axis 2 in the middle of a 4-D input."""
    x = k.Input((6, None), name="x")
    image = k.Input((3, 6, 4), name="image")
    GN = k.layers.GroupNormalization
    return k.Model([x, image], [GN(groups=3, axis=1)(x), GN(groups=2, axis=2)(image),
                                GN(groups=3, axis=1)(image)])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name, dialect", CASES.params())
def test_normalization_matches_keras(saved, name, dialect, opset):
    model, path = saved(name, dialect)
    check_conversion(model, path, opsets=(opset,))


@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
def test_unit_norm_of_tiny_and_zero_vectors(saved, dialect):
    """Keras 3 caps 1/||x|| at 1e12, Keras 2 floors ||x||² at 1e-12: a vector of norm 1e-8
    comes out as a unit vector in Keras 3, at norm 1e-2 in Keras 2."""
    model, path = saved("unit_norm", dialect)
    values = np.random.default_rng(4).normal(size=(3, 5, 6)).astype(np.float32)
    values[1, 2] *= 1e-8
    values[2, 3] = 0
    expected = keras_outputs(model, [values])
    tiny_norm = np.linalg.norm(values[1, 2])
    np.testing.assert_allclose(np.linalg.norm(expected[0][1, 2]),
                               1.0 if dialect == "keras3" else tiny_norm * 1e6, rtol=1e-3)
    assert not expected[0][2, 3].any()
    for opset in OPSETS:
        assert_same(expected, run_onnx(convert(path, opset=opset).model, [values]),
                    f"opset {opset}")


def test_layer_norm_uses_the_onnx_operator_where_exact(saved):
    ops = {n.op_type for n in convert(saved("layer_norm_trailing_axes", "keras2")[1],
                                      opset=17).model.graph.node}
    assert "LayerNormalization" in ops and "ReduceMean" not in ops
    ops = {n.op_type for n in convert(saved("layer_norm_inner_axes", "keras3")[1],
                                      opset=17).model.graph.node}
    assert "LayerNormalization" not in ops



def test_rms_norm_uses_the_onnx_operator_from_opset_23(saved):
    path = saved("rms_norm_axes", "keras3")[1]
    ops = [n.op_type for n in convert(path, opset=23).model.graph.node]
    assert ops.count("RMSNormalization") == 2  # the trailing axes; not axis 1 nor [1, 2]
    assert "RMSNormalization" not in {n.op_type for n in convert(path, opset=17).model.graph.node}


def test_group_norm_refusals(tmp_path):
    """Unknown sizes on both sides of the channel axis (the group view needs one side);
    a Keras 2 GroupNormalization given a mask (Keras weights its moments)."""
    k = keras_module("keras3")
    x = k.Input((None, 4, None), name="x")
    path = save(k.Model(x, k.layers.GroupNormalization(2, axis=2, name="gn")(x)), "keras3",
                tmp_path, "unknown_sides")
    with pytest.raises(ConversionError, match="'gn': GroupNormalization over an input"):
        convert(path)
    k = keras_module("keras2")
    tokens = k.Input((4,), name="tokens", dtype="int32")
    embedded = k.layers.Embedding(10, 4, mask_zero=True)(tokens)
    path = save(k.Model(tokens, k.layers.GroupNormalization(2, name="gn")(embedded)), "keras2",
                tmp_path, "masked")
    with pytest.raises(ConversionError, match="'gn': a Keras 2 GroupNormalization given a mask"):
        convert(path)
