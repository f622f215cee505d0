"""Core layers (Dense, EinsumDense, Embedding, Masking, the layers that are the identity at
inference) built with real Keras 3 and tf_keras, weights randomized, saved, converted at
opset 23 and 17, run in onnxruntime at two batch sizes and two lengths, every output
compared with Keras; and the layers we refuse (Lambda, quantized or legacy-LoRA weights)
refused with a message that names them."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from keras_check import (Cases, assert_same, check_conversion, is_keras2, keras_module,
                         keras_outputs, randomize, run_onnx, save)

pytestmark = requires_keras

OPSETS = (23, 17)
CASES = Cases()
case = CASES.register


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Build each (case, dialect) model once: (Keras model, saved file)."""
    return CASES.cache(tmp_path_factory.mktemp("core_models"))


# ---------------------------------------------------------------------- Dense


@case()
def dense_2d(k):
    x = k.Input((8,), name="x")
    return k.Model(x, k.layers.Dense(5, activation="relu")(x))


@case()
def dense_3d_no_bias(k):
    x = k.Input((None, 8), name="x")
    return k.Model(x, k.layers.Dense(6, use_bias=False)(x))


@case()
def dense_4d_chain(k):
    x = k.Input((3, None, 8), name="x")
    hidden = k.layers.Dense(16, activation="gelu")(x)
    return k.Model(x, k.layers.Dense(4, activation="tanh")(hidden))


@case("keras3")
def dense_lora_merged(k):
    """A .keras file stores LoRA merged into the kernel."""
    x = k.Input((None, 8), name="x")
    return k.Model(x, k.layers.Dense(6, lora_rank=2)(x))


# ---------------------------------------------------------------------- EinsumDense


def _einsum(k, shape, equation, output_shape, bias_axes=None, activation=None):
    x = k.Input(shape, name="x")
    layer = k.layers.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes,
                                 activation=activation)
    return k.Model(x, layer(x))


@case()
def einsum_abc_cd_abd(k):
    return _einsum(k, (None, 8), "abc,cd->abd", (None, 5), "d")


@case()
def einsum_abc_cde_abde(k):
    return _einsum(k, (None, 8), "abc,cde->abde", (None, 3, 4), "de", "relu")


@case()
def einsum_ab_bc_ac(k):
    return _einsum(k, (8,), "ab,bc->ac", 5, "c", "sigmoid")


@case()
def einsum_ellipsis(k):
    return _einsum(k, (3, None, 8), "...b,bc->...c", 5, "c")


@case()
def einsum_trailing_ellipsis(k):
    return _einsum(k, (8, None), "ab...,bc->ac...", (5,), "c")


@case()
def einsum_transposed_output(k):
    return _einsum(k, (None, 8), "abc,cd->adb", (5, None), "d")


@case()
def einsum_two_contracted(k):
    return _einsum(k, (None, 3, 4), "abcd,cde->abe", (None, 6), "e", "elu")


@case()
def einsum_shared_letter(k):
    """b is in the input, the kernel and the output: a batched matmul."""
    return _einsum(k, (5, 8), "abc,bcd->abd", (5, 4), "bd")


@case()
def einsum_summed_input_letter(k):
    return _einsum(k, (None, 8), "abc,cd->ad", 4, "d")


@case()
def einsum_bias_on_middle_axis(k):
    return _einsum(k, (None, 8), "abc,cde->abde", (None, 3, 4), "d")


# ---------------------------------------------------------------------- Embedding, Masking


@case(tokens={"tokens": 20})
def embedding_int32(k):
    tokens = k.Input((None,), name="tokens", dtype="int32")
    return k.Model(tokens, k.layers.Embedding(20, 6)(tokens))


@case(tokens={"tokens": 20})
def embedding_int64_2d_ids(k):
    tokens = k.Input((None, 3), name="tokens", dtype="int64")
    return k.Model(tokens, k.layers.Embedding(20, 4, mask_zero=True)(tokens))


@case(tokens={"tokens": 20})
def embedding_float_ids(k):
    tokens = k.Input((None,), name="tokens", dtype="float32")
    return k.Model(tokens, k.layers.Embedding(20, 6)(tokens))


@case(tokens={"tokens": 20})
def embedding_training_options(k):
    """Constraints and regularizers only act in training; Keras 2's input_length only
    declares the length."""
    tokens = k.Input((5,), name="tokens", dtype="int32")
    options = dict(embeddings_constraint="non_neg", embeddings_regularizer="l2",
                   activity_regularizer="l1")
    if is_keras2(k):
        options["input_length"] = 5
    return k.Model(tokens, k.layers.Embedding(20, 6, **options)(tokens))


@case("keras3", tokens={"tokens": 20})
def embedding_lora_merged(k):
    """A .keras file stores LoRA merged into the embeddings."""
    tokens = k.Input((None,), name="tokens", dtype="int32")
    return k.Model(tokens, k.layers.Embedding(20, 6, lora_rank=2, lora_alpha=4)(tokens))


@case(padded=("x",))
def masking_then_dense(k):
    x = k.Input((None, 6), name="x")
    masked = k.layers.Masking()(x)
    return k.Model(x, [masked, k.layers.Dense(3)(masked)])


# ---------------------------------------------------------------------- identities


@case()
def inference_identities(k):
    x = k.Input((None, 6), name="x")
    image = k.Input((3, 4, 6), name="image")
    volume = k.Input((2, 3, 4, 6), name="volume")
    L = k.layers
    sequence_layers = [L.Dropout(0.5), L.SpatialDropout1D(0.5), L.GaussianNoise(1.0),
                       L.GaussianDropout(0.5), L.AlphaDropout(0.5),
                       L.ActivityRegularization(l1=0.1, l2=0.1), L.Identity()]
    outputs = [layer(x) for layer in sequence_layers]
    outputs += [L.SpatialDropout2D(0.5)(image), L.SpatialDropout3D(0.5)(volume)]
    chained = x
    for layer in (L.Dropout(0.3), L.GaussianNoise(0.2), L.Dense(3)):
        chained = layer(chained)
    return k.Model([x, image, volume], outputs + [chained])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name, dialect", CASES.params())
def test_core_matches_keras(saved, name, dialect, opset):
    model, path = saved(name, dialect)
    check_conversion(model, path, opsets=(opset,), **CASES[name].check)


def test_embedding_float_ids_truncate_and_mask_on_the_given_value(saved, tmp_path):
    """Keras casts float ids to int32 (truncation) but masks ``ids != 0`` on the floats:
    0.5 reads row 0 yet is not padding. A Keras 2 Softmax shows the mask."""
    k = keras_module("keras2")
    tokens = k.Input((4,), name="tokens", dtype="float32")
    embedded = k.layers.Embedding(20, 4, mask_zero=True)(tokens)
    model = k.Model(tokens, [embedded, k.layers.Softmax()(embedded)])
    randomize(model)
    path = save(model, "keras2", tmp_path, "float_ids")
    ids = np.array([[0.5, 3.9, 0.0, 7.0]], dtype=np.float32)
    for opset in OPSETS:
        assert_same(keras_outputs(model, [ids]), run_onnx(convert(path, opset=opset).model,
                                                          [ids]), f"opset {opset}")


@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
def test_masking_with_a_mask_value(dialect, tmp_path):
    """Steps whose every feature equals mask_value (0.5 here) come out as zeros."""
    k = keras_module(dialect)
    x = k.Input((None, 4), name="x")
    model = k.Model(x, k.layers.Masking(mask_value=0.5)(x))
    path = save(model, dialect, tmp_path, "mask_value")
    values = np.random.default_rng(2).normal(size=(3, 5, 4)).astype(np.float32)
    values[1, -2:] = 0.5
    values[2, 0, :2] = 0.5  # only some features: not masked
    for opset in OPSETS:
        actual = run_onnx(convert(path, opset=opset).model, [values])
        assert not actual[0][1, -2:].any()
        assert_same(keras_outputs(model, [values]), actual, f"opset {opset}")


@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
def test_lambda_is_refused_by_name(dialect, tmp_path):
    k = keras_module(dialect)
    x = k.Input((4,), name="x")
    model = k.Model(x, k.layers.Lambda(lambda t: t * 2, name="double")(x))
    path = save(model, dialect, tmp_path, "lambda")
    with pytest.raises(ConversionError, match=r"double \(Lambda\)"):
        convert(path)


def test_lambda_message_says_code_is_never_run(tmp_path):
    k = keras_module("keras3")
    x = k.Input((4,), name="x")
    path = save(k.Model(x, k.layers.Lambda(lambda t: t * 2, name="double")(x)), "keras3",
                tmp_path, "lambda")
    with pytest.raises(ConversionError, match="never run"):
        convert(path)


def test_quantized_dense_is_refused(tmp_path):
    k = keras_module("keras3")
    x = k.Input((8,), name="x")
    model = k.Model(x, k.layers.Dense(4, name="dense_q")(x))
    model.quantize("int8")
    path = save(model, "keras3", tmp_path, "quantized")
    with pytest.raises(ConversionError, match="'dense_q': quantized Dense"):
        convert(path)


def test_legacy_lora_factors_are_merged(tmp_path):
    """A Keras 3 legacy .h5 keeps lora_<weight>_a / _b apart from the weight; Keras uses
    weight + lora_alpha / lora_rank * a @ b (random factors here, b non-zero)."""
    k = keras_module("keras3")
    tokens = k.Input((None,), name="tokens", dtype="int32")
    embedded = k.layers.Embedding(20, 6, lora_rank=2, lora_alpha=4)(tokens)
    model = k.Model(tokens, [embedded, k.layers.Dense(4, lora_rank=3)(embedded)])
    randomize(model)
    path = tmp_path / "lora.h5"
    model.save(path)
    check_conversion(model, path, tokens={"tokens": 20})


def test_legacy_lora_einsum_dense_is_refused(tmp_path):
    k = keras_module("keras3")
    x = k.Input((None, 8), name="x")
    layer = k.layers.EinsumDense("abc,cd->abd", (None, 4), lora_rank=2, name="einsum_lora")
    path = tmp_path / "lora.h5"
    k.Model(x, layer(x)).save(path)
    with pytest.raises(ConversionError, match="'einsum_lora': a LoRA-enabled EinsumDense"):
        convert(path)


def test_quantized_embedding_is_refused(tmp_path):
    k = keras_module("keras3")
    tokens = k.Input((4,), name="tokens", dtype="int32")
    model = k.Model(tokens, k.layers.Embedding(20, 8, name="embedding_q")(tokens))
    model.quantize("int8")
    path = save(model, "keras3", tmp_path, "quantized_embedding")
    with pytest.raises(ConversionError, match="'embedding_q': quantized Embedding"):
        convert(path)
