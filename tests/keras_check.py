"""Numeric checks against real Keras, shared by the emitter tests: build a model with
Keras 3 (``keras``) or Keras 2 (``tf_keras``), randomize its weights, save it, convert it,
run onnxruntime and compare every output element with what Keras computes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnxruntime as ort

from kerasonnx.convert import convert

ATOL = 1e-5
BATCHES = (1, 3)
LENGTHS = (4, 7)
OPSETS = (23, 17)
DIALECTS = ("keras3", "keras2")
VOCAB = 20


def keras_module(dialect: str):
    """``keras`` (Keras 3) or ``tf_keras`` (Keras 2); both live in one process."""
    if dialect == "keras3":
        import keras
        return keras
    import tf_keras
    return tf_keras


def is_keras2(k) -> bool:
    return k.__name__ == "tf_keras"


def float_inputs(k, *shapes):
    return [k.Input(shape, name=f"in_{i}") for i, shape in enumerate(shapes)]


def model_cache(folder, cases: dict):
    """``get(name, dialect) -> (Keras model, saved path)``; ``cases[name](k)`` builds a
    model with the Keras module ``k``, once per dialect, weights randomized."""
    cache = {}

    def get(name: str, dialect: str):
        if (name, dialect) not in cache:
            k = keras_module(dialect)
            k.utils.set_random_seed(7)
            model = cases[name](k)
            randomize(model)
            cache[(name, dialect)] = (model, save(model, dialect, folder, name))
        return cache[(name, dialect)]

    return get


def randomize(model, seed: int = 11, scale: float = 0.5) -> None:
    """Every weight seeded normal * scale; variances (BatchNorm) kept positive."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        value = rng.normal(0, scale, weight.shape)
        if "variance" in weight.name:
            value = np.abs(value) + 0.5
        values.append(value.astype(weight.dtype if isinstance(weight.dtype, str)
                                   else weight.dtype.name))
    model.set_weights(values)


def save(model, dialect: str, folder, name: str):
    """Keras 3 as ``.keras``, Keras 2 as legacy ``.h5``; returns the path."""
    path = folder / f"{name}_{dialect}.{'keras' if dialect == 'keras3' else 'h5'}"
    model.save(path)
    return path


def make_inputs(model, batch: int, length: int, rng, tokens: dict = None,
                padded: tuple = ()) -> list:
    """Inputs for every model input: None dims set to ``length``. ``tokens`` maps integer
    inputs to their vocabulary size (ids get padding zeros: row 1 at its tail, row 2
    entirely); ``padded`` float inputs are zeroed the same way (for Masking). Other int or
    bool inputs are attention masks, with a query that attends nothing in row 1."""
    tokens = tokens or {}
    arrays = []
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        shape = [batch] + [length if d is None else d for d in tensor.shape[1:]]
        dtype = tensor.dtype if isinstance(tensor.dtype, str) else tensor.dtype.name
        if name in tokens:
            array = rng.integers(1, tokens[name], size=shape).astype(dtype)
            pad_rows(array)
        elif dtype in ("bool", "int32", "int64") or name == "attention_mask":
            attend = rng.random(shape) < 0.7
            if batch > 1:
                attend[1, 0, :] = False
            array = attend.astype(dtype)
        else:
            array = rng.normal(size=shape).astype(dtype)
            if name in padded:
                pad_rows(array)
        arrays.append(array)
    return arrays


def pad_rows(array) -> None:
    if len(array) > 1:
        array[1, -2:] = 0
    if len(array) > 2:
        array[2] = 0


def keras_outputs(model, arrays) -> list:
    outputs = model(arrays if len(arrays) > 1 else arrays[0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(o) for o in outputs]


def run_onnx(onnx_model, arrays) -> list:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays)})


def assert_same(expected: list, actual: list, where: str, atol: float = ATOL,
                rtol: float = 0.0) -> None:
    """Same shapes, dtypes, NaN positions (a fully masked average is 0 / 0 in Keras too),
    and every other element within ``atol + rtol * |keras|``."""
    assert len(expected) == len(actual), where
    for i, (e, a) in enumerate(zip(expected, actual)):
        assert e.shape == a.shape, f"{where} output {i}: {e.shape} vs {a.shape}"
        assert e.dtype == a.dtype, f"{where} output {i}: {e.dtype} vs {a.dtype}"
        nan = np.isnan(e) if e.dtype.kind == "f" else np.zeros(e.shape, bool)
        assert np.array_equal(nan, np.isnan(a) if a.dtype.kind == "f" else nan), (
            f"{where} output {i}: NaN where Keras has none, or the reverse")
        reference = e.astype(np.float64)
        difference = (np.abs(reference - a) - rtol * np.abs(reference))[~nan]
        error = float(difference.max()) if difference.size else 0.0
        assert error <= atol, (f"{where} output {i}: max abs error beyond rtol * |keras| "
                               f"{error:.3g}")


def masked_inputs(model, batch: int, length: int, rng) -> list:
    """int inputs: token ids < VOCAB, about a third of them padding zeros; bool inputs:
    masks keeping about two thirds; floats: normal. Row 2 is padded / masked entirely."""
    arrays = []
    for tensor in model.inputs:
        shape = [batch] + [length if d is None else d for d in tensor.shape[1:]]
        dtype = tensor.dtype if isinstance(tensor.dtype, str) else tensor.dtype.name
        if dtype == "float32":
            arrays.append(rng.normal(size=shape).astype(dtype))
            continue
        keep = rng.random(shape) < 0.65
        keep[2:3] = False
        if dtype == "bool":
            arrays.append(keep)
        else:
            arrays.append(np.where(keep, rng.integers(1, VOCAB, size=shape), 0).astype(dtype))
    return arrays


def check_conversion(model, path, *, opsets=OPSETS, batches=BATCHES, lengths=LENGTHS,
                     tokens=None, padded=(), inputs=None, atol: float = ATOL,
                     rtol: float = 0.0, precision: str = "keras", seed: int = 3) -> None:
    """Convert ``path`` at every opset and compare with ``model`` on every input size;
    Keras runs once per input size (its eager recurrent loops are slow).
    ``inputs(model, batch, length, rng)`` makes the inputs (default: ``make_inputs``)."""
    converted = [(opset, convert(path, opset=opset, precision=precision).model)
                 for opset in opsets]
    for _, onnx_model in converted:
        assert "Einsum" not in {n.op_type for n in onnx_model.graph.node}
    rng = np.random.default_rng(seed)
    for batch in batches:
        for length in lengths:
            arrays = (inputs(model, batch, length, rng) if inputs is not None
                      else make_inputs(model, batch, length, rng, tokens, padded))
            expected = keras_outputs(model, arrays)
            for opset, onnx_model in converted:
                assert_same(expected, run_onnx(onnx_model, arrays),
                            f"{path.name} opset {opset} batch {batch} length {length}", atol,
                            rtol)


# check_conversion options for models fed padded tokens / masks from ``masked_inputs``
MASKED = {"inputs": masked_inputs, "batches": (1, 3), "seed": 5}


@dataclass
class Case:
    """A test model: ``build(k)`` builds it with the Keras module ``k`` for each of
    ``dialects``; ``check`` holds the check_conversion options that feed it."""

    name: str
    build: Callable
    dialects: tuple = DIALECTS
    check: dict = field(default_factory=dict)


class Cases(dict):
    """A test module's models by name, registered with ``@cases.register(...)``."""

    def register(self, *dialects: str, **check):
        def add(build):
            self[build.__name__] = Case(build.__name__, build, dialects or DIALECTS, check)
            return build

        return add

    def params(self) -> list:
        """``(name, dialect)`` for every case and every dialect that builds it."""
        return [(name, d) for name, case in sorted(self.items()) for d in case.dialects]

    def cache(self, folder):
        """``model_cache`` over these cases."""
        return model_cache(folder, {name: case.build for name, case in self.items()})
