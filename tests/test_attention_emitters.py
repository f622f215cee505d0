"""MultiHeadAttention, GroupQueryAttention, Attention and AdditiveAttention: every case of
``attention_cases`` built with real Keras 3 and, where the layer and its options exist in
Keras 2, tf_keras, weights randomized, saved, converted at
opset 23 (ONNX Attention operator) and 17 (MatMul/Softmax), run in onnxruntime at two
batch sizes and two sequence lengths, and every output element compared with Keras."""
from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest

import kerasonnx

from attention_cases import CASES
from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import UnsupportedLayerError
from keras_check import (assert_same, check_conversion, float_inputs, keras_module,
                         keras_outputs, make_inputs, run_onnx, save)

pytestmark = requires_keras

OPSETS = (23, 17, 24)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Build each (case, dialect) model once: (Keras model, saved file)."""
    return CASES.cache(tmp_path_factory.mktemp("attention_models"))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name, dialect", CASES.params())
def test_attention_matches_keras(saved_models, name, dialect, opset):
    model, path = saved_models(name, dialect)
    check_conversion(model, path, opsets=(opset,), **CASES[name].check)


@pytest.mark.parametrize("name, dialect, fused", [
    ("mha_self", "keras3", True), ("mha_self", "keras2", True),
    ("mha_embedding_masks", "keras3", True),  # Keras 3's fused path: replacement masking
    ("mha_embedding_masks", "keras2", True),  # additive -1e9
    ("mha_embedding_masks_scores", "keras3", False),  # zeroed fully masked rows: MatMul
    ("mha_embedding_masks_scores", "keras2", True),
    ("mha_causal_scores", "keras3", True),  # only the causal mask: is_causal
    ("attention_embedding_masks", "keras3", True),
    ("attention_concat", "keras3", False), ("additive_scaled", "keras2", False),
    ("gqa_self", "keras3", True), ("gqa_causal_self_and_cross", "keras3", True),
    ("gqa_masks_dropout_causal", "keras3", False),  # dropout path: zeroed rows
    ("gqa_value_and_key_masks_from_masking", "keras3", True),
    ("mha_4d_attention_mask_two_axes", "keras2", False),  # Keras 2's logsumexp softmax
    ("mha_4d_causal_one_axis", "keras2", True)])
def test_attention_operator_where_exact(saved_models, name, dialect, fused):
    _, path = saved_models(name, dialect)
    ops = {n.op_type for n in convert(path, opset=23).model.graph.node}
    assert ("Attention" in ops) == fused
    assert "Attention" not in {n.op_type for n in convert(path, opset=17).model.graph.node}


LEARNED_SCALES = (-2.5, 0.0, 0.01, 1.0, 9.0)


@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
def test_attention_learned_scale_of_any_sign(tmp_path, dialect):
    """Attention(use_scale=True) learns a scalar of any sign; the operator's ``scale``
    must be positive, so a negative or zero one multiplies the query instead."""
    k = keras_module(dialect)
    q, v = float_inputs(k, (None, 6), (5, 6))
    masked = k.layers.Masking()(v)
    layers = [k.layers.Attention(use_scale=True) for _ in LEARNED_SCALES]
    model = k.Model([q, v], [t for layer in layers
                             for t in layer([q, masked], return_attention_scores=True)])
    for layer, scale in zip(layers, LEARNED_SCALES):
        layer.set_weights([np.array(scale, np.float32)])
    path = save(model, dialect, tmp_path, "attention_scales")
    check_conversion(model, path, opsets=OPSETS, padded=("in_1",))


def test_unknown_layer_with_scores_output_is_unsupported(saved_models, tmp_path):
    """A class kerasonnx does not know whose second output (scores) the model uses gets
    the unsupported-layer error, not a complaint that the layer has one output."""
    _, path = saved_models("gqa_multi_query_no_bias_key_dim_scores", "keras3")
    renamed = tmp_path / "renamed.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(renamed, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "config.json":
                data = data.replace(b'"GroupQueryAttention"', b'"FutureAttention"')
            target.writestr(item, data)
    with pytest.raises(UnsupportedLayerError, match="cannot be converted yet"):
        convert(renamed)


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
    arrays = make_inputs(model, 3, 6, np.random.default_rng(5))
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




def _keras_run_order(model) -> list:
    """The calls a Keras 3 Functional runs, in its order (``_run_through_graph``)."""
    calls = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if not node.is_input:
                index = node.operation._inbound_nodes.index(node)
                calls.append(node.operation.name + (f"/call{index}" if index else ""))
    return calls


def test_keras3_calls_are_read_in_keras_run_order(tmp_path):
    """The parser makes a Keras 3 model's calls in the order the reloaded Keras model runs
    them, which decides what MultiHeadAttention's mask deletion reaches: shared layers
    called at several depths, keyword arguments (flattened with sorted keys), a nested
    model called twice with a mask, op nodes, dict outputs (flattened with sorted keys)."""
    import keras
    from keras import ops
    layers = keras.layers
    inner_input = keras.Input((None, 8))
    inner = keras.Model(inner_input, layers.Dense(8)(
        layers.MultiHeadAttention(2, 2)(inner_input, inner_input)), name="inner")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = layers.Embedding(20, 8, mask_zero=True)(tokens)
    first, second, third = (layers.MultiHeadAttention(2, 4) for _ in range(3))
    a1, a3 = first(x, x), third(x, x)
    a2 = second(query=x, value=a1, key=x)
    shared = layers.Dense(8)
    s2 = shared(ops.silu(a3))
    b, c = inner(x), inner(layers.Dense(8)(x))
    outputs = {"z": layers.Add()([x, a1, shared(s2), ops.multiply(shared(a1), a2)]),
               "a": layers.Dense(3)(a2), "s": s2, "m": layers.Concatenate()([b, c, a3])}
    path = tmp_path / "order.keras"
    keras.Model(tokens, outputs).save(path)
    expected = _keras_run_order(keras.models.load_model(path))
    with kerasonnx.load(path) as graph:
        made = []
        for node in graph.nodes:  # an inlined nested call: the nodes of its call
            call = max((c for c in expected if node.name == c or node.name.startswith(c + "/")),
                       key=len)
            if not made or made[-1] != call:
                made.append(call)
    assert made == expected
