"""Keras activations in ONNX, checked against real Keras 3 (``keras``) and Keras 2
(``tf_keras``) at opset 23 and 17 (Gelu and Mish are ONNX ops from 20 and 18, formulas
below):

- every built-in activation by name, as ``Dense(activation=...)`` and ``Activation(...)``
  in saved models (one model per dialect holds all of them, one output per activation);
- the activation layers (``ReLU``, ``LeakyReLU``, ``ELU``, ``PReLU``, ``Softmax`` with
  masks, ``ThresholdedReLU``) across their options, and layer objects used as a Dense
  activation;
- ``apply_activation`` with the options Keras' functions take (``gelu(approximate=True)``,
  ``relu(max_value=..., threshold=...)``, ...) against the Keras function itself, on a
  grid through every breakpoint. There float32 values reach a few hundred (exp, softplus),
  where float32 spacing exceeds 1e-5: the bound is 1e-5 absolute below 1, relative above.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_keras
from kerasonnx.emit.activations import ACTIVATIONS, apply_activation
from kerasonnx.emit.builder import Builder
from kerasonnx.ir import Graph, Tensor
from keras_check import (check_conversion, keras_module, keras_outputs, make_inputs,
                         randomize, run_onnx, save)
from kerasonnx.convert import convert

pytestmark = requires_keras

OPSETS = (23, 17)
KERAS2_NAMES = ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish",
                "sigmoid", "hard_sigmoid", "tanh", "softplus", "softsign", "exponential",
                "mish", "linear", "softmax", "log_softmax")
# Keras 3 adds these (``threshold`` needs arguments, so it is no activation by name)
KERAS3_ONLY_NAMES = ("hard_silu", "hard_swish", "celu", "glu", "tanh_shrink", "hard_tanh",
                     "hard_shrink", "soft_shrink", "sparse_plus", "sparse_sigmoid",
                     "squareplus", "log_sigmoid", "sparsemax")
NAMES = {"keras2": KERAS2_NAMES, "keras3": KERAS2_NAMES + KERAS3_ONLY_NAMES}


def test_every_keras3_activation_is_converted():
    from keras.src.activations import ALL_OBJECTS_DICT
    assert set(ALL_OBJECTS_DICT) - {"threshold"} == set(NAMES["keras3"])
    assert {"threshold"} | set(NAMES["keras3"]) - {"linear", "swish", "hard_swish"} == set(
        ACTIVATIONS)


# ---------------------------------------------------------------------- functions


def _grid() -> np.ndarray:
    """(4, 6, 10) float32 through -6.5..6.5 with every breakpoint of the functions here."""
    values = np.linspace(-6.5, 6.5, 240, dtype=np.float32)
    values[:18] = [0, 1, -1, 3, -3, 6, -6, 0.5, -0.5, 2.5, -2.5, 0.3, 1.5, -1.5, 4, 2, -2, 0.2]
    return np.random.default_rng(0).permutation(values).reshape(4, 6, 10)


def _onnx_activation(name: str, options: dict, dialect: str, opset: int, x: np.ndarray):
    b = Builder(opset)
    source = Tensor("x", (None, None, x.shape[-1]), "float32")
    result = Tensor("y", source.shape, "float32")
    b.bind(source, "x")
    b.bind(result, apply_activation(b, "x", name, "act", dialect, **options))
    graph = Graph("activation", dialect, None, inputs=[source], outputs=[result],
                  output_names=["y"])
    return run_onnx(b.finish(graph, "activation"), [x])[0]


FUNCTION_CASES = [
    ("keras3", "relu", {"negative_slope": 0.1}), ("keras3", "relu", {"max_value": 2.5}),
    ("keras3", "relu", {"max_value": 6.0}), ("keras3", "relu", {"threshold": 1.5}),
    ("keras3", "relu", {"negative_slope": 0.2, "max_value": 4.0, "threshold": 0.5}),
    ("keras3", "relu", {"negative_slope": 0.3, "threshold": 1.0}),
    ("keras3", "relu", {"threshold": -1.5, "max_value": 3.0}),
    ("keras2", "relu", {"alpha": 0.1}), ("keras2", "relu", {"max_value": 2.5}),
    ("keras2", "relu", {"alpha": 0.2, "max_value": 4.0, "threshold": 0.5}),
    ("keras2", "relu", {"threshold": 1.5}),
    ("keras3", "leaky_relu", {"negative_slope": 0.05}), ("keras2", "leaky_relu", {"alpha": 0.3}),
    ("keras3", "elu", {"alpha": 0.5}), ("keras2", "elu", {"alpha": 2.0}),
    ("keras3", "celu", {"alpha": 0.7}),
    ("keras3", "gelu", {"approximate": True}), ("keras3", "gelu", {"approximate": False}),
    ("keras2", "gelu", {"approximate": True}), ("keras2", "gelu", {"approximate": False}),
    ("keras3", "softmax", {"axis": 1}), ("keras2", "softmax", {"axis": 1}),
    ("keras3", "log_softmax", {"axis": 1}), ("keras3", "glu", {"axis": 1}),
    ("keras3", "hard_shrink", {"threshold": 1.5}), ("keras3", "soft_shrink", {"threshold": 1.0}),
    ("keras3", "threshold", {"threshold": 0.5, "default_value": -2.0}),
    ("keras3", "squareplus", {"b": 1.0}),
] + [(dialect, name, {}) for dialect in NAMES for name in NAMES[dialect]]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dialect, name, options", FUNCTION_CASES,
                         ids=[f"{d}-{n}-{o}" for d, n, o in FUNCTION_CASES])
def test_activation_function_matches_keras(dialect, name, options, opset):
    x = _grid()
    activations = keras_module(dialect).activations
    tensor = keras_module("keras3").ops.convert_to_tensor(x)  # a tf.Tensor: both take it
    expected = np.asarray(activations.get(name)(tensor, **options))
    actual = _onnx_activation(name, options, dialect, opset, x)
    assert actual.shape == expected.shape
    error = np.abs(actual.astype(np.float64) - expected) / np.maximum(1, np.abs(expected))
    assert error.max() <= 1e-5, f"max error {error.max():.3g} at {x[error == error.max()]}"


def test_unknown_activation_names_the_layer():
    with pytest.raises(Exception, match="layer 'dense_3': activation 'my_swish' cannot be "
                                        "converted yet"):
        apply_activation(Builder(23), "x", {"class_name": "function", "config": "my_swish"},
                         "dense_3", "keras3")


# ---------------------------------------------------------------------- saved models


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Build each (case, dialect) model once: (Keras model, saved file)."""
    folder = tmp_path_factory.mktemp("activation_models")
    cache = {}

    def get(name: str, dialect: str, build, scale: float = 0.5):
        if (name, dialect) not in cache:
            k = keras_module(dialect)
            k.utils.set_random_seed(7)
            model = build(k, dialect)
            randomize(model, scale=scale)
            cache[(name, dialect)] = (model, save(model, dialect, folder, name))
        return cache[(name, dialect)]

    return get


def _all_by_name(k, dialect):
    """One output per activation name: Dense(4, activation=name), then Activation(name) on
    a 3-D input."""
    x = k.Input((None, 8), name="x")
    outputs = [k.layers.Dense(4, activation=name, name=f"dense_{name}")(x)
               for name in NAMES[dialect]]
    outputs += [k.layers.Activation(name, name=f"activation_{name}")(x)
                for name in NAMES[dialect]]
    return k.Model(x, outputs)


@pytest.fixture(scope="module")
def all_by_name(saved):
    """(dialect, opset) -> {output name: (Keras array, ONNX array)} on two input sizes."""
    results = {}

    def get(dialect: str, opset: int):
        if (dialect, opset) not in results:
            model, path = saved("all_by_name", dialect, _all_by_name, scale=0.3)
            converted = convert(path, opset=opset).model
            names = [o.name for o in converted.graph.output]
            pairs = {}
            rng = np.random.default_rng(3)
            for batch, length in ((1, 4), (3, 7)):
                arrays = make_inputs(model, batch, length, rng)
                for name, e, a in zip(names, keras_outputs(model, arrays),
                                      run_onnx(converted, arrays)):
                    pairs.setdefault(name, []).append((e, a))
            results[(dialect, opset)] = pairs
        return results[(dialect, opset)]

    return get


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dialect, name", [(d, n) for d in NAMES for n in NAMES[d]])
@pytest.mark.parametrize("layer", ("dense", "activation"))
def test_activation_by_name_matches_keras(all_by_name, layer, dialect, name, opset):
    for expected, actual in all_by_name(dialect, opset)[f"{layer}_{name}"]:
        assert expected.shape == actual.shape and expected.dtype == actual.dtype
        assert np.abs(expected - actual).max() <= 1e-5


LAYER_CASES = {}


def layer_case(*dialects, inputs=None):
    def register(build):
        LAYER_CASES[build.__name__] = (build, dialects or ("keras3", "keras2"), inputs or {})
        return build
    return register


@layer_case()
def relu_layers(k, dialect):
    x = k.Input((None, 8), name="x")
    options = [{}, {"max_value": 6.0}, {"negative_slope": 0.2}, {"threshold": 0.5},
               {"max_value": 2.5, "negative_slope": 0.1, "threshold": 0.3},
               {"max_value": 1.0, "negative_slope": 0.3}]
    return k.Model(x, [k.layers.ReLU(**o)(x) for o in options])


@layer_case()
def leaky_relu_and_elu_layers(k, dialect):
    x = k.Input((None, 8), name="x")
    slope = "negative_slope" if dialect == "keras3" else "alpha"
    return k.Model(x, [k.layers.LeakyReLU()(x), k.layers.LeakyReLU(**{slope: 0.05})(x),
                       k.layers.ELU()(x), k.layers.ELU(alpha=0.4)(x)])


@layer_case("keras2")
def thresholded_relu_layers(k, dialect):
    x = k.Input((None, 8), name="x")
    return k.Model(x, [k.layers.ThresholdedReLU()(x), k.layers.ThresholdedReLU(theta=0.3)(x)])


@layer_case()
def prelu_layers(k, dialect):
    x = k.Input((5, 8), name="x")
    sequence = k.Input((None, 8), name="sequence")
    image = k.Input((3, 4, 6), name="image")
    return k.Model([x, sequence, image], [
        k.layers.PReLU()(x), k.layers.PReLU(shared_axes=[1])(sequence),
        k.layers.PReLU(shared_axes=[1, 2])(image), k.layers.PReLU(shared_axes=2)(x)])


@layer_case()
def softmax_axes(k, dialect):
    x = k.Input((None, 6), name="x")
    fixed = k.Input((2, 3, 4), name="fixed")
    return k.Model([x, fixed], [k.layers.Softmax()(x), k.layers.Softmax(axis=1)(x),
                                k.layers.Softmax(axis=[1, 2])(x), k.layers.Softmax(axis=[-1])(x),
                                k.layers.Softmax(axis=[1, 3])(fixed)])


def _softmax_with_mask(k, dtype):
    x = k.Input((None, None), name="x")
    mask = k.Input((None, None), name="attention_mask", dtype=dtype)
    return k.Model([x, mask], k.layers.Softmax()(x, mask=mask))


@layer_case()
def softmax_bool_mask(k, dialect):
    """Row 1 of the inputs is fully masked: Keras 3 gives zeros, Keras 2 averages."""
    return _softmax_with_mask(k, "bool")


@layer_case()
def softmax_float_mask(k, dialect):
    return _softmax_with_mask(k, "float32")


@layer_case()
def softmax_int_mask(k, dialect):
    return _softmax_with_mask(k, "int32")


@layer_case("keras2")
def softmax_robust_mask(k, dialect):
    x = k.Input((None, None), name="x")
    mask = k.Input((None, None), name="attention_mask", dtype="float32")
    return k.Model([x, mask], k.layers.Softmax(robust_masking=True)(x, mask=mask))


# Keras 3 hands implicit masks over through ``keras.src.ops`` nodes (NotEqual, Any): those
# are the operations family's; Keras 2 hands the Embedding's and Masking's masks directly.
# A (B, T) mask broadcasts against (B, T, T) logits only with batch 1 (Keras fails else).
@layer_case("keras2", inputs={"tokens": {"tokens": 20}, "padded": ("x",), "batches": (1,)})
def softmax_implicit_masks(k, dialect):
    tokens = k.Input((6,), name="tokens", dtype="int32")
    x = k.Input((None, None), name="x")
    embedded = k.layers.Embedding(20, 6, mask_zero=True)(tokens)
    return k.Model([tokens, x], [k.layers.Softmax()(embedded),
                                 k.layers.Softmax()(k.layers.Masking()(x))])


@layer_case()
def layers_as_dense_activation(k, dialect):
    x = k.Input((None, 8), name="x")
    activations = [k.layers.LeakyReLU(0.1), k.layers.ReLU(max_value=1.5, threshold=0.2),
                   k.layers.ELU(alpha=0.5), k.layers.Softmax(axis=1)]
    return k.Model(x, [k.layers.Dense(4, activation=a)(x) for a in activations])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name, dialect", [(n, d) for n, (_, dialects, _) in
                                           sorted(LAYER_CASES.items()) for d in dialects])
def test_activation_layer_matches_keras(saved, name, dialect, opset):
    build, _, inputs = LAYER_CASES[name]
    model, path = saved(name, dialect, build)
    check_conversion(model, path, opsets=(opset,), **inputs)


def test_fully_masked_softmax_rows_follow_the_dialect(saved):
    """Keras 3 zeroes a fully masked row, Keras 2 spreads it evenly: both reproduced."""
    for dialect, row in (("keras3", 0.0), ("keras2", 1 / 7)):
        model, path = saved("softmax_bool_mask", dialect, LAYER_CASES["softmax_bool_mask"][0])
        arrays = make_inputs(model, 3, 7, np.random.default_rng(1))
        assert not arrays[1][1, 0].any()
        (actual,) = run_onnx(convert(path).model, arrays)
        np.testing.assert_allclose(actual[1, 0], row, atol=1e-6)
