"""Roles, masks, arguments and node structure the parser must recover, per construct."""
from __future__ import annotations

import pytest

import kerasonnx
from kerasonnx.layers.operations import operands, operation
from conftest import FIXTURES, fixture_path

DIALECTS = ("keras3", "keras2")


def load(dialect, name, fmt=None, weights=None):
    return kerasonnx.load(fixture_path(dialect, name, fmt), weights)


def names(value):
    return [v.name if v is not None else None for v in value] if isinstance(value, list) \
        else value.name


@pytest.mark.parametrize("dialect, fmt, weights", [
    ("keras3", "keras", None), ("keras3", "h5", None),
    ("keras3", "json", "keras3/three_attention.weights.h5"),
    ("keras2", "h5", None), ("keras2", "keras", None),
    ("keras2", "json", "keras2/three_attention_weights.h5")])
def test_mha_value_from_keras2_kwargs(dialect, fmt, weights):
    """Keras 2 stores MHA's value inside the node's kwargs; the IR has it as a role."""
    with load(dialect, "three_attention", fmt, weights and FIXTURES / weights) as graph:
        mha = graph.node("multi_head_attention")
        assert {r: names(v) for r, v in mha.inputs.items()} == {
            "query": "input_1", "value": "input_2", "key": "input_2"}
        for layer in ("attention", "additive_attention"):
            node = graph.node(layer)
            assert {r: names(v) for r, v in node.inputs.items()} == {
                "query": "input_1", "value": "input_2"}
        assert mha.layer.param_count() == 284


@pytest.mark.parametrize("dialect", DIALECTS)
def test_mha_keyword_only_call_with_scores(dialect):
    with load(dialect, "mha_keywords") as graph:
        mha = graph.node("mha")
        assert {r: names(v) for r, v in mha.inputs.items()} == {
            "query": "q", "value": "v", "key": "k", "attention_mask": "attention_mask"}
        assert mha.arguments == {"return_attention_scores": True}
        assert [t.shape for t in mha.outputs] == [(None, 5, 10), (None, 2, 5, 6)]
        assert graph.inputs[3].dtype == "bool"
        assert graph.output_names == ["mha", "mha_1"]
        assert graph.outputs == mha.outputs


@pytest.mark.parametrize("dialect", DIALECTS)
def test_causal_flag_and_symbolic_length(dialect):
    with load(dialect, "mha_causal") as graph:
        mha = graph.node("mha")
        assert mha.arguments == {"use_causal_mask": True}
        assert mha.outputs[0].shape == (None, None, 8)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_embedding_mask_reaches_attention_and_pooling(dialect):
    with load(dialect, "masked_encoder") as graph:
        embedding = graph.node("embedding")
        (mask,) = embedding.mask_outputs
        assert mask.is_mask and mask.shape == (None, None) and mask.dtype == "bool"
        mha = graph.node("mha")
        # Keras 3 hands mha(e, e) the masks of the arguments it was given: no key_mask
        roles = ("query_mask", "value_mask") + (("key_mask",) if dialect == "keras2" else ())
        assert {r: v for r, v in mha.inputs.items() if r.endswith("mask")} == {
            r: mask for r in roles}
        pool_mask = graph.node("pool").inputs["mask"]
        if dialect == "keras2":
            assert embedding.outputs[0].mask is mask
            assert graph.node("norm").outputs[0].mask is mask
            assert pool_mask is mask
        else:
            # Keras 3's MultiHeadAttention deletes its inputs' masks, so the residual Add
            # meets an unmasked input and drops the mask ...
            assert embedding.outputs[0].mask is None and mha.outputs[0].mask is mask
            assert graph.node("norm").outputs[0].mask is None
            # ... but Keras 3 wrote the pooling mask it computed as ops nodes, explicitly
            assert pool_mask.producer.class_name == "LogicalOr"
            not_equal = graph.node("not_equal")
            assert operation(not_equal) == ("NotEqual", {})
            assert not_equal.inputs["arg0"].name == "tokens"
            assert not_equal.arguments == {"arg1": 0}
        assert graph.node("pool").outputs[0].mask is None


@pytest.mark.parametrize("dialect", DIALECTS)
def test_masking_layer_mask_reaches_attention(dialect):
    with load(dialect, "masking_attention") as graph:
        (mask,) = graph.node("masking").mask_outputs
        attention = graph.node("dot_attention")
        assert attention.inputs["query_mask"] is mask
        assert attention.inputs["value_mask"] is mask
        assert attention.arguments == {"return_attention_scores": True}
        assert len(attention.outputs) == 2
        additive = graph.node("additive_attention")
        assert sorted(additive.inputs) == ["key", "query", "query_mask", "value",
                                           "value_mask"]
        assert graph.node("concat_attention").arguments == {"use_causal_mask": True}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_nested_model_called_twice_is_inlined_with_shared_weights(dialect):
    with load(dialect, "nested_twice") as graph:
        first, second = graph.node("block/block_mha"), graph.node("block/call1/block_mha")
        assert first.layer is second.layer
        assert first.inputs["query"].name == "input_1"
        assert second.inputs["query"].name == "input_2"
        concat = graph.node("concat")
        assert [t.name for t in concat.inputs["inputs"]] == ["block/block_norm",
                                                            "block/call1/block_norm"]
        assert graph.node("seq_block/seq_dense_1").inputs["inputs"].name == "block/block_norm"
        assert graph.output_names == ["head", "seq_block"]
        assert graph.outputs[1].name == "seq_block/seq_dense_2"
        assert first.layer.param_count() == 288


@pytest.mark.parametrize("dialect", DIALECTS)
def test_shared_layer_second_call(dialect):
    with load(dialect, "shared_layer") as graph:
        first, second = graph.node("shared_dense"), graph.node("shared_dense/call1")
        assert first.layer is second.layer and second.call_index == 1
        assert (first.inputs["inputs"].name, second.inputs["inputs"].name) == (
            "input_1", "input_2")
        attention = graph.node("attention")
        assert (attention.inputs["query"], attention.inputs["value"]) == (
            first.outputs[0], second.outputs[0])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_operation_nodes_are_kept(dialect):
    """Keras 3 ops nodes and Keras 2 TFOpLambda layers read as the same operations."""
    with load(dialect, "ops_nodes") as graph:
        nodes = {operation(n)[0]: n for n in graph.nodes}  # Keras 3: in Keras' run order
        order = ["Add", "Transpose", "Multiply", "Matmul", "Reshape", "ExpandDims", "Mean",
                 "Subtract"]
        assert len(graph.nodes) == len(order) and sorted(nodes) == sorted(order)
        add, transpose, multiply, matmul, reshape, _, mean, subtract = map(nodes.get, order)
        assert operation(transpose)[1]["axes"] == [0, 2, 1]
        assert operation(reshape)[1]["newshape"] == [-1, 4, 3, 2]
        assert operation(mean)[1]["axis"] == -1
        assert operands(add) == graph.inputs
        assert operands(multiply) == [add.outputs[0], 2.0]
        assert operands(matmul) == [graph.inputs[0], transpose.outputs[0]]
        # Keras 2 writes a constant first argument as _CONSTANT_VALUE
        assert operands(subtract) == [1.0, graph.inputs[0]]


@pytest.mark.parametrize("dialect, input_name", [("keras3", "input_layer"),
                                                 ("keras2", "dense_in_input")])
def test_sequential_without_explicit_input(dialect, input_name):
    with load(dialect, "sequential_first_layer_shape") as graph:
        assert [(t.name, t.shape) for t in graph.inputs] == [(input_name, (None, 6, 8))]
        assert graph.nodes[0].inputs["inputs"] is graph.inputs[0]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sequential_holding_a_functional_block(dialect):
    with load(dialect, "sequential_with_functional_block") as graph:
        assert [(n.name, n.class_name) for n in graph.nodes] == [
            ("block/block_mha", "MultiHeadAttention"), ("block/block_add", "Add"),
            ("block/block_norm", "LayerNormalization"), ("pool", "GlobalAveragePooling1D"),
            ("head", "Dense")]
        assert graph.node("block/block_mha").inputs["query"] is graph.inputs[0]


def test_keras_multi_head_layers_told_apart():
    with load("keras2", "kmh_attention") as graph:
        node = graph.node("kmh_qkv")
        assert node.layer.kind.family == "keras_multi_head"
        assert {r: names(v) for r, v in node.inputs.items()} == {
            "query": "q", "key": "k", "value": "v"}
        assert node.outputs[0].shape == (None, 4, 6)
        self_attention = graph.node("kmh_self")
        assert names(self_attention.inputs["query"]) == names(
            self_attention.inputs["value"]) == "x"
    with load("keras2", "three_attention") as graph:
        assert graph.node("multi_head_attention").layer.kind.family == "attention"


def test_multi_head_wrapper_stacks_copies():
    with load("keras2", "multihead_lstm") as graph:
        node = graph.node("Multi-LSTMs")
        assert node.outputs[0].shape == (None, 8, 3)
        assert node.layer.param_count() == 3 * (4 * 8 * (20 + 8 + 1))
        # a composite: its copies are ordinary LSTM calls reading the wrapper's weights
        assert [(n.name, n.class_name) for n in graph.nodes if n.parent is node] == [
            ("Multi-LSTMs/sub_0", "LSTM"), ("Multi-LSTMs/sub_0/stacked", "ExpandDims"),
            ("Multi-LSTMs/sub_1", "LSTM"), ("Multi-LSTMs/sub_1/stacked", "ExpandDims"),
            ("Multi-LSTMs/sub_2", "LSTM"), ("Multi-LSTMs/sub_2/stacked", "ExpandDims"),
            ("Multi-LSTMs/stack", "Concatenate")]
        assert graph.node("Multi-LSTMs/sub_1").layer.param_count() == 4 * 8 * (20 + 8 + 1)


def test_old_keras2_sequential_without_input_layer(tmp_path):
    """Older Keras 2 wrote no InputLayer: the input shape sits on the first layer."""
    import json

    import h5py

    path = tmp_path / "model.h5"
    path.write_bytes(fixture_path("keras2", "sequential_first_layer_shape").read_bytes())
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        assert layers[0]["class_name"] == "InputLayer"
        del layers[0]
        f.attrs["model_config"] = json.dumps(config)
    with kerasonnx.load(path) as graph:
        assert [(t.name, t.shape) for t in graph.inputs] == [("dense_in_input", (None, 6, 8))]
        assert graph.outputs[0].shape == (None, 6, 4)
        assert graph.nodes[0].layer.param_count() == 72
