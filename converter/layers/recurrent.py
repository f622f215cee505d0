"""Recurrent layers: LSTM, GRU, SimpleRNN, Bidirectional, TimeDistributed."""
from __future__ import annotations

from .registry import (compute_dtype, first_input, first_mask, layer_kind, propagate_mask,
                       wrapped_output_types)

RNN_SIGNATURE = ("sequences", "initial_state", "mask", "training")
STATE_COUNT = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}


def _sequence_mask(node):
    return first_mask(node) if node.config.get("return_sequences") else None


def _rnn_types(config: dict, class_name: str, shape, dtype) -> list:
    units = config["units"]
    batch, steps = shape[0], shape[1]
    out = (batch, steps, units) if config.get("return_sequences") else (batch, units)
    states = [((batch, units), dtype)] * STATE_COUNT[class_name] if config.get("return_state") else []
    return [(out, dtype)] + states


@layer_kind("LSTM", "GRU", "SimpleRNN", signature=RNN_SIGNATURE,
            mask_roles={"sequences": "mask"}, output_mask=_sequence_mask)
def recurrent(node):
    """h_t = cell(x_t, h_{t-1}) over the time axis (reversed with ``go_backwards``);
    the last h, or every h with ``return_sequences``, then the final states."""
    return _rnn_types(node.config, node.class_name, first_input(node).shape,
                      compute_dtype(node))


def _bidirectional_mask(node):
    inner = node.config["layer"]["config"]
    return first_mask(node) if inner.get("return_sequences") else None


@layer_kind("Bidirectional", signature=RNN_SIGNATURE, mask_roles={"sequences": "mask"},
            output_mask=_bidirectional_mask)
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


@layer_kind("TimeDistributed", output_mask=propagate_mask, mask_roles={"inputs": "mask"})
def time_distributed(node):
    """Apply the wrapped layer to every step: y[:, t] = layer(x[:, t])."""
    shape = first_input(node).shape
    inner = wrapped_output_types(node, node.config["layer"], (shape[0],) + shape[2:])
    if inner is None:
        return None
    return [((shape[0], shape[1]) + out_shape[1:], dtype) for out_shape, dtype in inner]
