"""Conv1D/2D, Conv1DTranspose/2DTranspose, DepthwiseConv1D/2D and SeparableConv1D/2D,
channels_last and channels_first: each case built with real Keras 3
and tf_keras (Keras 2), weights randomized, saved, converted at opset 23 and 17 and
compared with Keras over None axes at two lengths (dynamic "same" pads) and fixed ones
(pads written out)."""
from __future__ import annotations

import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from keras_check import Cases, check_conversion, float_inputs

pytestmark = requires_keras

CASES = Cases()
case = CASES.register


def conv1d_variants(k, x, size: str) -> list:
    conv = k.layers.Conv1D
    return [conv(3, 3)(x), conv(3, 3, padding="same")(x), conv(3, 3, strides=2)(x),
            conv(4, 3, strides=2, padding="same", name=f"same_s2_{size}")(x),
            conv(2, 4, strides=3, padding="same", name=f"same_s3_{size}")(x),
            conv(2, 3, padding="causal", dilation_rate=2, name=f"causal_{size}")(x),
            conv(2, 2, padding="same", dilation_rate=3)(x),
            conv(2, 3, padding="causal", strides=2)(x),
            conv(6, 2, groups=2, activation="relu")(x),
            conv(3, 1, use_bias=False, activation="tanh")(x)]


@case()
def conv1d(k):
    dynamic, fixed = float_inputs(k, (None, 4), (9, 4))
    return k.Model([dynamic, fixed],
                   conv1d_variants(k, dynamic, "dynamic") + conv1d_variants(k, fixed, "fixed"))


@case()
def conv2d(k):
    dynamic, fixed = float_inputs(k, (None, None, 3), (7, 6, 3))
    conv = k.layers.Conv2D
    outputs = []
    for x in (dynamic, fixed):
        outputs += [conv(4, 3)(x), conv(4, (3, 2), strides=(2, 1), padding="same")(x),
                    conv(2, 3, dilation_rate=2, padding="same")(x),
                    conv(2, (2, 2), dilation_rate=(1, 2))(x),
                    conv(3, 2, strides=2, padding="same", activation="sigmoid")(x),
                    conv(6, (1, 2), groups=3, use_bias=False)(x)]
    return k.Model([dynamic, fixed], outputs)


@case()
def channels_first(k):
    """(batch, channels, steps...): no transposes around the ONNX Conv. No filter count
    equals an output length: Keras 3's TF add then adds the bias over the wrong axis."""
    sequence, image = float_inputs(k, (4, None), (3, 7, 6))
    conv1d, conv2d = k.layers.Conv1D, k.layers.Conv2D
    return k.Model([sequence, image], [
        conv1d(3, 3, data_format="channels_first")(sequence),
        conv1d(2, 3, padding="causal", dilation_rate=2, data_format="channels_first")(sequence),
        conv1d(3, 3, strides=2, padding="same", activation="relu",
               data_format="channels_first")(sequence),
        conv2d(2, (3, 2), strides=(2, 1), padding="same", data_format="channels_first")(image)])


@case()
def transposed(k):
    """Valid and same, strides above and below the kernel, output_padding, dilation."""
    sequence, image = float_inputs(k, (None, 3), (5, None, 2))
    t1, t2 = k.layers.Conv1DTranspose, k.layers.Conv2DTranspose
    return k.Model([sequence, image], [
        t1(4, 3)(sequence), t1(2, 3, strides=2)(sequence), t1(2, 2, strides=3)(sequence),
        t1(3, 3, strides=2, padding="same")(sequence),
        t1(2, 4, strides=2, padding="same")(sequence),
        t1(2, 3, strides=2, output_padding=1)(sequence),
        t1(2, 4, strides=3, padding="same", output_padding=2, activation="relu")(sequence),
        t1(2, 3, dilation_rate=2)(sequence), t1(2, 3, dilation_rate=2, padding="same")(sequence),
        t1(2, 1, use_bias=False)(sequence),
        t2(3, 3)(image), t2(2, (3, 2), strides=(2, 1), padding="same")(image),
        t2(2, 3, strides=2, output_padding=(1, 0))(image),
        t2(2, 3, strides=(1, 2), padding="same", output_padding=(0, 1))(image),
        t2(2, 2, dilation_rate=2, activation="tanh")(image)])


@case()
def transposed_channels_first(k):
    sequence, image = float_inputs(k, (3, None), (2, 5, 4))
    return k.Model([sequence, image], [
        k.layers.Conv1DTranspose(5, 3, strides=2, padding="same",
                                 data_format="channels_first")(sequence),
        k.layers.Conv2DTranspose(3, 3, strides=2, output_padding=1,
                                 data_format="channels_first")(image)])


@case()
def depthwise(k):
    sequence, image = float_inputs(k, (None, 3), (6, None, 2))
    d1, d2 = k.layers.DepthwiseConv1D, k.layers.DepthwiseConv2D
    return k.Model([sequence, image], [
        d1(3)(sequence), d1(3, depth_multiplier=2, padding="same")(sequence),
        d1(2, strides=2, depth_multiplier=3, use_bias=False)(sequence),
        d1(3, dilation_rate=2, padding="same", activation="relu")(sequence),
        d2(3)(image), d2((3, 2), strides=(2, 1), padding="same", depth_multiplier=2)(image),
        d2(2, dilation_rate=2, depth_multiplier=3, activation="sigmoid")(image),
        d2((3, 1), data_format="channels_first", depth_multiplier=2)(image)])


@case()
def separable(k):
    sequence, image = float_inputs(k, (None, 3), (6, None, 2))
    s1, s2 = k.layers.SeparableConv1D, k.layers.SeparableConv2D
    return k.Model([sequence, image], [
        s1(4, 3)(sequence), s1(2, 3, depth_multiplier=2, padding="same")(sequence),
        s1(3, 2, strides=2, use_bias=False)(sequence),
        s1(2, 3, dilation_rate=2, padding="same", activation="relu",
           depth_multiplier=3)(sequence),
        s2(4, 3)(image), s2(3, (3, 2), strides=(2, 1), padding="same", depth_multiplier=2)(image),
        s2(2, 2, dilation_rate=2, activation="tanh")(image),
        s2(3, (3, 1), data_format="channels_first", depth_multiplier=2)(image)])


@case("keras2")
def separable_causal(k):
    (sequence,) = float_inputs(k, (None, 3))
    return k.Model(sequence, k.layers.SeparableConv1D(2, 3, padding="causal", dilation_rate=2,
                                                      depth_multiplier=2)(sequence))


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    return CASES.cache(tmp_path_factory.mktemp("convolution_models"))


@pytest.mark.parametrize("name, dialect", CASES.params())
def test_convolution_matches_keras(saved_models, name, dialect):
    model, path = saved_models(name, dialect)
    check_conversion(model, path)


def test_pads(saved_models):
    """Causal: (k - 1) * d steps before; "same" with stride 2 over None steps: SAME_UPPER;
    over 9 steps: written out, the extra one at the end."""
    _, path = saved_models("conv1d", "keras2")
    convs = {n.name.split("/")[0]: {a.name: (a.s.decode() if a.s else list(a.ints))
                                    for a in n.attribute if a.name in ("pads", "auto_pad")}
             for n in convert(path).model.graph.node if n.op_type == "Conv"}
    assert convs["causal_dynamic"] == convs["causal_fixed"] == {"pads": [4, 0]}
    assert convs["same_s2_dynamic"] == {"auto_pad": "SAME_UPPER"}
    assert convs["same_s2_fixed"] == {"pads": [1, 1]}  # 9 steps, window 3 -> 5 outputs
    assert convs["same_s3_fixed"] == {"pads": [0, 1]}  # 9 steps, window 4 -> 3 outputs

