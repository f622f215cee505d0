"""Recurrent layers: LSTM, GRU, SimpleRNN, Bidirectional, TimeDistributed."""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Layer, Node, Tensor
from .registry import (WeightSpec, compute_dtype, first_input, kind_for, layer_kind,
                       propagate_mask, split_tensors, wrapped_output_types)

RNN_SIGNATURE = ("sequences", "initial_state", "mask", "training")
STATE_COUNT = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}
GATE_COUNT = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
# The cell's name, which legacy .h5 files put in every weight name (``lstm/lstm_cell/kernel``).
CELL_NAME = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}


@dataclass(frozen=True)
class OneWay:
    """One recurrent layer running over the sequence: the layer itself, or one direction of a
    Bidirectional. ``legacy_prefix`` / ``saving_prefix`` locate its weights inside the
    node's layer (``forward_lstm/``, ``forward_layer/``)."""

    class_name: str
    config: dict
    legacy_prefix: str = ""
    saving_prefix: str = ""

    @property
    def go_backwards(self) -> bool:
        return bool(self.config.get("go_backwards"))

    def weight_specs(self, fan_in: int) -> list:
        """kernel (in, gates*units), recurrent_kernel (units, gates*units), bias (gates*units,),
        or (2, 3*units) for GRU with ``reset_after`` (input bias, recurrent bias)."""
        units = self.config["units"]
        width = GATE_COUNT[self.class_name] * units
        shapes = [("kernel", (fan_in, width)), ("recurrent_kernel", (units, width))]
        if self.config.get("use_bias", True):
            two_biases = self.class_name == "GRU" and self.config.get("reset_after", True)
            shapes.append(("bias", (2, width) if two_biases else (width,)))
        cell = f"{self.legacy_prefix}{CELL_NAME[self.class_name]}"
        return [WeightSpec(f"{cell}/{name}", f"{self.saving_prefix}cell/vars/{i}", shape)
                for i, (name, shape) in enumerate(shapes)]


def recurrent_ways(node: Node) -> list:
    """The recurrent layers a node runs: one for LSTM / GRU / SimpleRNN, forward then backward
    for Bidirectional (whose config may omit ``backward_layer``: then it is the forward
    layer going backwards).

    Legacy weight names of a Bidirectional's layers: Keras 3 saves them under the names its
    config records (``forward_lstm``, ``backward_layer``'s own name); Keras 2 prefixes
    ``forward_`` / ``backward_`` to the names in the config (``lstm``, or the given
    ``backward_layer``'s name)."""
    if node.class_name != "Bidirectional":
        return [OneWay(node.class_name, node.config)]
    forward = node.config["layer"]
    backward = node.config.get("backward_layer")
    forward_name = forward["config"]["name"]
    if node.layer.dialect == "keras2":
        backward_name = f"backward_{(backward or forward)['config']['name']}"
        forward_name = f"forward_{forward_name}"
    else:
        backward_name = (backward["config"]["name"] if backward
                         else f"backward_{forward_name.removeprefix('forward_')}")
    if backward is None:
        backward = {**forward, "config": {**forward["config"], "go_backwards": True}}
    return [OneWay(forward["class_name"], forward["config"], f"{forward_name}/",
                   "forward_layer/"),
            OneWay(backward["class_name"], backward["config"], f"{backward_name}/",
                   "backward_layer/")]


def _recurrent_weights(node: Node) -> list:
    fan_in = node.input("sequences").shape[-1]
    return [spec for way in recurrent_ways(node) if way.class_name in GATE_COUNT
            for spec in way.weight_specs(fan_in)]


def bind_recurrent_roles(arguments: dict) -> tuple:
    """``sequences``, ``initial_state`` (always a list), ``mask``. Keras 2 writes
    ``layer(x, initial_state=[h, c])`` as one first argument ``[x, h, c]``: split it."""
    roles, arguments = split_tensors(arguments)
    sequences = roles.get("sequences")
    if isinstance(sequences, list):
        roles["sequences"] = sequences[0]
        if len(sequences) > 1:
            roles["initial_state"] = sequences[1:]
    state = roles.get("initial_state")
    if isinstance(state, Tensor):
        roles["initial_state"] = [state]
    mask = roles.get("mask")
    if isinstance(mask, list):
        roles["mask"] = mask[0]
    return roles, arguments


def _sequence_mask(node):
    """Keras' RNN.compute_mask: the call's mask passes on with ``return_sequences``."""
    return node.input("mask") if node.config.get("return_sequences") else None


def _rnn_types(config: dict, class_name: str, shape, dtype) -> list:
    units = config["units"]
    batch, steps = shape[0], shape[1]
    out = (batch, steps, units) if config.get("return_sequences") else (batch, units)
    states = [((batch, units), dtype)] * (STATE_COUNT[class_name] if config.get("return_state")
                                          else 0)
    return [(out, dtype)] + states


RECURRENT_OPTIONS = dict(signature=RNN_SIGNATURE, mask_roles={"sequences": "mask"},
                         bind_roles=bind_recurrent_roles, weights=_recurrent_weights)


@layer_kind("LSTM", "GRU", "SimpleRNN", output_mask=_sequence_mask, **RECURRENT_OPTIONS)
def recurrent(node):
    """h_t = cell(x_t, h_{t-1}) over the time axis (reversed with ``go_backwards``);
    the last h, or every h with ``return_sequences``, then the final states."""
    return _rnn_types(node.config, node.class_name, first_input(node).shape,
                      compute_dtype(node))


def _bidirectional_mask(node):
    """The call's mask with ``return_sequences``, on both outputs when ``merge_mode`` is None
    (Keras' Bidirectional.compute_mask); the parser attaches output 0's, we attach output 1's."""
    returns_sequences = node.config["layer"]["config"].get("return_sequences")
    mask = node.input("mask") if returns_sequences else None
    if node.config.get("merge_mode", "concat") is None:
        node.outputs[1].mask = mask
    return mask


@layer_kind("Bidirectional", output_mask=_bidirectional_mask, **RECURRENT_OPTIONS)
def bidirectional(node):
    """forward(x) and reverse(backward(reverse(x))), merged by ``merge_mode`` (concat, sum,
    mul, ave, or None for two outputs), then the forward and the backward states."""
    inner = node.config["layer"]
    dtype = compute_dtype(node)
    one_way = _rnn_types(inner["config"], inner["class_name"], first_input(node).shape, dtype)
    output, states = one_way[0], one_way[1:]
    mode = node.config.get("merge_mode", "concat")
    if mode is None:
        merged = [output, output]
    elif mode == "concat":
        merged = [(output[0][:-1] + (2 * output[0][-1],), dtype)]
    else:
        merged = [output]
    return merged + states + states


# ---------------------------------------------------------------------- TimeDistributed


def time_distributed_inner(node: Node, steps: Tensor) -> Node:
    """The wrapped layer as a node of its own, called on ``steps``: every time step folded
    into the batch, shape (batch * time, ...). Its weights are read through the wrapper's."""
    wrapped = node.config["layer"]
    config = wrapped.get("config", {})
    kind = kind_for(wrapped["class_name"], wrapped.get("module"), config)
    weights = node.layer.weights
    if weights is not None:
        weights = weights.view(_wrapped_prefixes(node))
    name = config.get("name", "layer")
    layer = Layer(f"{node.layer.name}/{name}", wrapped["class_name"], wrapped.get("module"),
                  config, weights, kind, node.layer.dialect)
    inner = Node(f"{node.name}/{name}", layer, node.call_index,
                 inputs={kind.signature[0] if kind else "inputs": steps})
    types = kind.output_types(inner) if kind else []
    inner.outputs = [Tensor(inner.name if i == 0 else f"{inner.name}:{i}", shape, dtype, inner, i)
                     for i, (shape, dtype) in enumerate(types)]
    return inner


def _wrapped_prefixes(node: Node) -> tuple:
    """Where the wrapped layer's weights sit in the wrapper's: (legacy, saving_lib) prefix.
    Legacy files from Keras 3 name the wrapped layer (``time_distributed/dense/kernel``),
    Keras 2 files do not (``time_distributed/kernel``)."""
    name = node.config["layer"].get("config", {}).get("name", "layer")
    return (f"{name}/" if node.layer.dialect == "keras3" else ""), "layer/"


def _time_distributed_weights(node: Node) -> list:
    """The wrapped layer's weights, as its kind describes them for one step."""
    shape = first_input(node).shape
    inner = time_distributed_inner(node, Tensor(f"{node.name}/steps", (None,) + shape[2:],
                                                first_input(node).dtype))
    kind = inner.layer.kind
    if kind is None or kind.weights is None:
        return []
    legacy, saving = _wrapped_prefixes(node)
    return [WeightSpec(legacy + spec.name, saving + spec.saving_path, spec.shape)
            for spec in kind.weights(inner)]


@layer_kind("TimeDistributed", output_mask=propagate_mask, mask_roles={"inputs": "mask"},
            weights=_time_distributed_weights)
def time_distributed(node):
    """Apply the wrapped layer to every step: y[:, t] = layer(x[:, t])."""
    shape = first_input(node).shape
    inner = wrapped_output_types(node, node.config["layer"], (shape[0],) + shape[2:])
    if inner is None:
        return None
    return [((shape[0], shape[1]) + out_shape[1:], dtype) for out_shape, dtype in inner]
