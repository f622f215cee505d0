"""MultiHeadAttention, Attention and AdditiveAttention: every case of ``attention_cases``
built with real Keras 3 and tf_keras (Keras 2), weights randomized, saved, converted at
opset 23 (ONNX Attention operator) and 17 (MatMul/Softmax), run in onnxruntime at two
batch sizes and two sequence lengths, and every output element compared with Keras."""
from __future__ import annotations

import json

import h5py
import numpy as np
import onnxruntime as ort
import pytest

from attention_cases import CASES
from conftest import requires_keras
from converter.convert import convert

pytestmark = requires_keras

ATOL = 1e-5
BATCHES = (1, 3)
LENGTHS = (4, 7)
OPSETS = (23, 17, 24)


def keras_module(dialect: str):
    if dialect == "keras3":
        import keras
        return keras
    import tf_keras
    return tf_keras


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Build each (case, dialect) model once: (Keras model, saved file)."""
    folder = tmp_path_factory.mktemp("attention_models")
    cache = {}

    def get(name: str, dialect: str):
        if (name, dialect) not in cache:
            k = keras_module(dialect)
            k.utils.set_random_seed(7)
            model = CASES[name].build(k)
            rng = np.random.default_rng(11)
            model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype)
                               for w in model.get_weights()])
            path = folder / f"{name}_{dialect}.{'keras' if dialect == 'keras3' else 'h5'}"
            model.save(path)
            cache[(name, dialect)] = (model, path)
        return cache[(name, dialect)]

    return get


def make_inputs(model, case, batch: int, length: int, rng) -> list:
    """Inputs for every model input: None dims set to ``length``; token ids with padding
    tails (row 1 padded at the end, row 2 entirely), masks with a fully masked row."""
    arrays = []
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        shape = [batch] + [length if d is None else d for d in tensor.shape[1:]]
        dtype = str(tensor.dtype.name if hasattr(tensor.dtype, "name") else tensor.dtype)
        if name in case.tokens:
            array = rng.integers(1, case.tokens[name], size=shape).astype(dtype)
            _pad_rows(array)
        elif dtype in ("bool", "int32", "int64") or name == "attention_mask":
            attend = rng.random(shape) < 0.7
            if batch > 1:
                attend[1, 0, :] = False  # a query that may attend nothing
            array = attend.astype(dtype)
        else:
            array = rng.normal(size=shape).astype(dtype)
            if name in case.padded:
                _pad_rows(array)
        arrays.append(array)
    return arrays


def _pad_rows(array) -> None:
    if len(array) > 1:
        array[1, -2:] = 0
    if len(array) > 2:
        array[2] = 0


def keras_outputs(model, arrays) -> list:
    outputs = model(arrays, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(o) for o in outputs]


def run_onnx(onnx_model, arrays) -> list:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
    return session.run(None, feeds)


def assert_same(expected: list, actual: list, where: str) -> None:
    assert len(expected) == len(actual), where
    for i, (e, a) in enumerate(zip(expected, actual)):
        assert e.shape == a.shape, f"{where} output {i}: {e.shape} vs {a.shape}"
        error = float(np.max(np.abs(e - a))) if e.size else 0.0
        assert error <= ATOL, f"{where} output {i}: max abs error {error:.3g}"


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
@pytest.mark.parametrize("name", sorted(CASES))
def test_attention_matches_keras(saved_models, name, dialect, opset):
    model, path = saved_models(name, dialect)
    converted = convert(path, opset=opset).model
    assert "Einsum" not in {n.op_type for n in converted.graph.node}
    rng = np.random.default_rng(3)
    for batch in BATCHES:
        for length in LENGTHS:
            arrays = make_inputs(model, CASES[name], batch, length, rng)
            assert_same(keras_outputs(model, arrays), run_onnx(converted, arrays),
                        f"{name} {dialect} opset {opset} batch {batch} length {length}")


@pytest.mark.parametrize("name, dialect, fused", [
    ("mha_self", "keras3", True), ("mha_self", "keras2", True),
    ("mha_embedding_masks", "keras3", True),  # Keras 3's fused path: replacement masking
    ("mha_embedding_masks", "keras2", True),  # additive -1e9
    ("mha_embedding_masks_scores", "keras3", False),  # zeroed fully masked rows: MatMul
    ("mha_embedding_masks_scores", "keras2", True),
    ("mha_causal_scores", "keras3", True),  # only the causal mask: is_causal
    ("attention_embedding_masks", "keras3", True),
    ("attention_concat", "keras3", False), ("additive_scaled", "keras2", False)])
def test_attention_operator_where_exact(saved_models, name, dialect, fused):
    _, path = saved_models(name, dialect)
    ops = {n.op_type for n in convert(path, opset=23).model.graph.node}
    assert ("Attention" in ops) == fused
    assert "Attention" not in {n.op_type for n in convert(path, opset=17).model.graph.node}


def test_keras2_causal_config_flag(saved_models, tmp_path):
    """Older Keras 2 wrote ``causal: true`` in Attention's config instead of the
    use_causal_mask call argument: same numbers as the call argument gives."""
    model, path = saved_models("attention_causal_scores", "keras2")
    legacy = tmp_path / "legacy.h5"
    legacy.write_bytes(path.read_bytes())
    with h5py.File(legacy, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        (layer,) = [x for x in config["config"]["layers"] if x["class_name"] == "Attention"]
        layer["config"]["causal"] = True
        del layer["inbound_nodes"][0][0][3]["use_causal_mask"]
        f.attrs["model_config"] = json.dumps(config)
    arrays = make_inputs(model, CASES["attention_causal_scores"], 3, 6,
                         np.random.default_rng(5))
    for opset in OPSETS:
        assert_same(keras_outputs(model, arrays), run_onnx(convert(legacy, opset=opset).model,
                                                           arrays), f"opset {opset}")


def test_input_dtypes_kept(saved_models):
    _, path = saved_models("mha_attention_mask_int", "keras3")
    graph = convert(path).model.graph
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.input] == [
        ("in_0", 1), ("in_1", 1), ("attention_mask", 6)]
    _, path = saved_models("mha_embedding_masks", "keras2")
    assert convert(path).model.graph.input[0].type.tensor_type.elem_type == 6  # int32


def test_dynamic_dims_stay_symbolic(saved_models):
    _, path = saved_models("mha_self", "keras3")
    (graph_input,) = convert(path).model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "in_0_dim1", 8]


def test_deterministic_output(saved_models):
    _, path = saved_models("mha_causal_with_mask_and_scores", "keras2")
    assert (convert(path).model.SerializeToString()
            == convert(path).model.SerializeToString())


