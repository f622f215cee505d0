"""Global and windowed average / max pooling, 1D and 2D: each case built with real Keras 3
and tf_keras (Keras 2), saved, converted at opset 23 and 17 and compared with Keras over
None axes at two lengths (dynamic "same" pads) and fixed ones (pads written out).

Masked GlobalAveragePooling1D gets its mask from an explicit bool or int mask input (Keras
2 weights steps by the int values, Keras 3 keeps the non-zero ones) and from
Embedding(mask_zero); rows with every step masked give NaN
(0 / 0) in Keras, which the conversion must reproduce exactly.
"""
from __future__ import annotations

import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from keras_check import DIALECTS, MASKED, VOCAB, Cases, check_conversion, float_inputs

pytestmark = requires_keras

CASES = Cases()
case = CASES.register


@case()
def global_pooling(k):
    sequence, image, channels_first = float_inputs(k, (None, 3), (5, 4, 3), (3, None))
    layers = k.layers
    outputs = []
    for keepdims in (False, True):
        outputs += [layers.GlobalAveragePooling1D(keepdims=keepdims)(sequence),
                    layers.GlobalMaxPooling1D(keepdims=keepdims)(sequence),
                    layers.GlobalAveragePooling2D(keepdims=keepdims)(image),
                    layers.GlobalMaxPooling2D(keepdims=keepdims)(image),
                    layers.GlobalAveragePooling1D(data_format="channels_first",
                                                  keepdims=keepdims)(channels_first),
                    layers.GlobalMaxPooling1D(data_format="channels_first",
                                              keepdims=keepdims)(channels_first)]
    return k.Model([sequence, image, channels_first], outputs)


@case()
def window_pooling_1d(k):
    """Over a None axis "same" with stride 2 pads at run time (auto_pad); over 9 steps
    the pads are written out, asymmetric where Keras pads more at the end."""
    dynamic, fixed = float_inputs(k, (None, 3), (9, 3))
    layers = k.layers
    outputs = []
    for x, size in ((dynamic, "dynamic"), (fixed, "fixed")):
        outputs += [layers.MaxPooling1D(2)(x), layers.AveragePooling1D(2)(x),
                    layers.MaxPooling1D(3, strides=2, padding="same", name=f"max3s2_{size}")(x),
                    layers.AveragePooling1D(3, strides=2, padding="same")(x),
                    layers.AveragePooling1D(2, padding="same", name=f"average2_{size}")(x),
                    layers.MaxPooling1D(4, strides=1, padding="same", name=f"max4s1_{size}")(x),
                    layers.AveragePooling1D(4, strides=1, padding="same")(x),
                    layers.MaxPooling1D(2, strides=3)(x), layers.AveragePooling1D(3, 1)(x)]
    return k.Model([dynamic, fixed], outputs)


@case()
def window_pooling_2d(k):
    dynamic, fixed = float_inputs(k, (None, None, 3), (7, 6, 3))
    layers = k.layers
    outputs = []
    for x in (dynamic, fixed):
        outputs += [layers.MaxPooling2D()(x), layers.AveragePooling2D((2, 2))(x),
                    layers.MaxPooling2D((3, 3), strides=(2, 1), padding="same")(x),
                    layers.AveragePooling2D((3, 2), strides=2, padding="same")(x),
                    layers.AveragePooling2D((2, 3), strides=(1, 2), padding="valid")(x),
                    layers.AveragePooling2D((2, 2), padding="same")(x),
                    layers.MaxPooling2D((2, 3), padding="same")(x)]
    return k.Model([dynamic, fixed], outputs)


@case()
def window_pooling_channels_first(k):
    sequence, image = float_inputs(k, (3, None), (3, 7, 6))
    layers = k.layers
    return k.Model([sequence, image], [
        layers.MaxPooling1D(2, data_format="channels_first")(sequence),
        layers.AveragePooling1D(3, strides=2, padding="same",
                                data_format="channels_first")(sequence),
        layers.MaxPooling2D((3, 2), padding="same", data_format="channels_first")(image),
        layers.AveragePooling2D((2, 2), strides=1, data_format="channels_first")(image)])


@case(**MASKED)
def masked_average_explicit_mask(k):
    (x, channels_first) = float_inputs(k, (None, 3), (3, None))
    bool_mask = k.Input((None,), dtype="bool", name="bool_mask")
    int_mask = k.Input((None,), dtype="int32", name="int_mask")
    pool = k.layers.GlobalAveragePooling1D
    return k.Model([x, channels_first, bool_mask, int_mask], [
        pool()(x, mask=bool_mask), pool(keepdims=True)(x, mask=bool_mask),
        pool()(x, mask=int_mask),
        pool(data_format="channels_first")(channels_first, mask=bool_mask),
        pool(data_format="channels_first", keepdims=True)(channels_first, mask=int_mask)])


@case(**MASKED)
def masked_average_from_embedding(k):
    """The mask of Embedding(mask_zero): Keras 2 hands it to pooling, Keras 3 recomputes
    it with ops nodes (converted by the operations emitters). Max pooling ignores it."""
    tokens = k.Input((None,), dtype="int32", name="tokens")
    embedded = k.layers.Embedding(VOCAB, 3, mask_zero=True)(tokens)
    return k.Model([tokens], [k.layers.GlobalMaxPooling1D()(embedded),
                              k.layers.GlobalAveragePooling1D()(embedded),
                              k.layers.GlobalAveragePooling1D(keepdims=True)(embedded)])


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    return CASES.cache(tmp_path_factory.mktemp("pooling_models"))


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_pooling_matches_keras(saved_models, name, dialect):
    model, path = saved_models(name, dialect)
    check_conversion(model, path, **CASES[name].check)


def test_fixed_same_pads_written_out(saved_models):
    """Over known sizes "same" pooling gets explicit pads (more at the end), over None
    sizes with stride > 1 ONNX's SAME_UPPER."""
    _, path = saved_models("window_pooling_1d", "keras3")
    pools = {n.name.split("/")[0]: n for n in convert(path).model.graph.node
             if n.op_type in ("MaxPool", "AveragePool")}
    attributes = {name: {a.name: (a.s.decode() if a.s else list(a.ints))
                         for a in node.attribute if a.name in ("pads", "auto_pad")}
                  for name, node in pools.items()}
    assert attributes["max3s2_dynamic"] == {"auto_pad": "SAME_UPPER"}
    assert attributes["max4s1_dynamic"] == {"pads": [1, 2]}  # stride 1: known anyway
    assert attributes["max3s2_fixed"] == {"pads": [1, 1]}  # 9 steps -> 5 windows
    assert attributes["average2_fixed"] == {"pads": [0, 1]}
