"""Emitters for the recurrent family: LSTM, GRU, SimpleRNN, Bidirectional, TimeDistributed.

Recurrences run as ONNX's LSTM / GRU / RNN operators, never as unrolled loops: Keras' kernels
are transposed and their gate blocks reordered in NumPy (LSTM i, f, c, o -> ONNX i, o, f, c;
GRU z, r, h stays), Bidirectional is one operator with ``direction="bidirectional"``. The
operators run time-major (``layout=0``: onnxruntime refuses batch-major recurrences).

Masks. ONNX skips padding only at the END of a sequence (``sequence_lens``), so kerasonnx
ASSUMES every mask reaching a recurrent layer is right-padded (True steps, then False steps,
as ``Embedding(mask_zero=True)`` or ``Masking`` give for sequences padded at the end); a mask
with holes is not reproduced. With ``sequence_lens = sum(mask)``, Keras' results at padded
steps are rebuilt from what Keras' ``rnn`` loop does (same in Keras 2 and Keras 3):
- a masked step keeps the states, so the final states are those of the last valid step
  (a fully padded sequence keeps its initial states);
- the output at a masked step is the previous output (zeros before any valid step), or
  zeros with ``zero_output_for_mask``, which Bidirectional forces with ``return_sequences``;
- ``go_backwards`` processes the padded steps first: their outputs are zeros.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
from onnx import TensorProto

from ..errors import ConversionError
from ..ir import Node, Tensor
from ..layers.recurrent import (GATE_COUNT, STATE_COUNT, recurrent_ways,
                                time_distributed_inner)
from ..layers.registry import compute_dtype
from ..model import named_weights
from .activations import HARD_SIGMOID_SLOPE, activation_name
from .builder import Builder
from .registry import emits, emitter_for

ONNX_OP = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}
# Keras gate blocks in ONNX's order: LSTM i, f, c, o -> i, o, f, c.
ONNX_GATE_ORDER = {"LSTM": (0, 3, 1, 2), "GRU": (0, 1, 2), "SimpleRNN": (0,)}
# Keras activation -> (ONNX activation, alpha, beta); None: the ONNX default or unused.
ONNX_ACTIVATIONS = {
    "tanh": ("Tanh", None, None), "sigmoid": ("Sigmoid", None, None),
    "relu": ("Relu", None, None), "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None), "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None),
}
INT64_MIN = np.iinfo(np.int64).min


# ---------------------------------------------------------------------- weights, options


def onnx_weights(class_name: str, units: int, weights: dict) -> tuple:
    """Keras kernel (in, g*u), recurrent kernel (u, g*u), bias -> ONNX W (g*u, in),
    R (g*u, u), B (2*g*u,) = input bias then recurrent bias (Keras' GRU with reset_after
    stores both as a (2, 3u) bias; every other cell has one, the recurrent one is zero)."""
    order = ONNX_GATE_ORDER[class_name]

    def reorder(matrix):
        blocks = np.split(matrix, GATE_COUNT[class_name], axis=-1)
        return np.concatenate([blocks[i] for i in order], axis=-1)

    width = GATE_COUNT[class_name] * units
    bias = weights.get("bias", np.zeros(width, np.float32))
    input_bias, recurrent_bias = bias if bias.ndim == 2 else (bias, np.zeros_like(bias))
    return (reorder(weights["kernel"]).T, reorder(weights["recurrent_kernel"]).T,
            np.concatenate([reorder(input_bias), reorder(recurrent_bias)]))


def onnx_activations(way, dialect: str, where: str) -> list:
    """The cell's activations in ONNX's order (LSTM f, g, h; GRU f, g; RNN f) as
    (ONNX name, alpha, beta)."""
    config = way.config
    names = {"LSTM": ("recurrent_activation", "activation", "activation"),
             "GRU": ("recurrent_activation", "activation"),
             "SimpleRNN": ("activation",)}[way.class_name]
    defaults = {"activation": "tanh", "recurrent_activation": "sigmoid"}
    result = []
    for key in names:
        name = activation_name(config.get(key, defaults[key]))
        if name == "hard_sigmoid":
            result.append(("HardSigmoid", HARD_SIGMOID_SLOPE[dialect], 0.5))
        elif name in ONNX_ACTIVATIONS:
            result.append(ONNX_ACTIVATIONS[name])
        else:
            raise ConversionError(f"layer {where!r}: {key} {name!r} of {way.class_name} has "
                                  f"no exact ONNX {ONNX_OP[way.class_name]} activation; not "
                                  f"supported yet")
    return result


def check_supported(node: Node, ways: list) -> None:
    if compute_dtype(node) not in ("float32", "float16", "bfloat16"):
        raise ConversionError(f"layer {node.name!r}: dtype {compute_dtype(node)!r} not "
                              f"supported yet")
    first = ways[0]
    for way in ways:
        if way.class_name not in ONNX_OP:
            raise ConversionError(f"layer {node.name!r}: Bidirectional around "
                                  f"{way.class_name} not supported yet")
        for option in ("stateful", "time_major"):
            if way.config.get(option):
                raise ConversionError(f"layer {node.name!r}: {option}=True not supported yet")
        if (way.class_name, way.config["units"]) != (first.class_name, first.config["units"]):
            raise ConversionError(f"layer {node.name!r}: a backward layer of another class "
                                  f"or size than the forward one is not supported yet")
        if way.class_name == "GRU" and (way.config.get("reset_after", True)
                                        != first.config.get("reset_after", True)):
            raise ConversionError(f"layer {node.name!r}: forward and backward GRUs with "
                                  f"different reset_after not supported yet")
    if len(ways) == 2 and ways[0].go_backwards:
        raise ConversionError(f"layer {node.name!r}: a forward layer with go_backwards=True "
                              f"not supported yet")


# ---------------------------------------------------------------------- the recurrence


class Recurrence:
    """One ONNX LSTM / GRU / RNN node over a Keras call: its inputs (time-major sequence,
    lengths from the mask, initial states) and its per-direction results, batch-major."""

    def __init__(self, node: Node, b: Builder, ways: list):
        self.node, self.b, self.ways = node, b, ways
        self.base = node.name
        way = ways[0]
        self.class_name, self.units = way.class_name, way.config["units"]
        self.state_count = STATE_COUNT[self.class_name]
        sequences = b.value(node.input("sequences"))
        self.mask = self._mask()
        self.lengths = self._lengths()
        self.initial = self._initial_states()
        self.y, *self.finals = self._run(sequences)

    # -- inputs

    def _mask(self):
        mask = self.node.input("mask")
        if mask is None:
            return None
        name = self.b.value(mask)
        if mask.dtype != "bool":
            name = self.b.op("Cast", [name], f"{self.base}/mask_bool", to=TensorProto.BOOL)
        return name

    def _lengths(self):
        """sequence_lens = the number of True steps of each row (int32)."""
        if self.mask is None:
            return None
        steps = self.b.op("Cast", [self.mask], f"{self.base}/mask_int", to=TensorProto.INT32)
        return self.b.reduce("ReduceSum", steps, [1], f"{self.base}/lengths", keepdims=0)

    def _initial_states(self) -> list:
        """Per direction, the Keras initial states (h, c for LSTM), or [] for zeros.
        Bidirectional takes the forward layer's states first, then the backward one's."""
        states = self.node.input("initial_state") or []
        if not states:
            return []
        if len(states) != self.state_count * len(self.ways):
            raise ConversionError(f"layer {self.node.name!r}: expected "
                                  f"{self.state_count * len(self.ways)} initial states, got "
                                  f"{len(states)}")
        names = [self.b.value(t) for t in states]
        return [names[i:i + self.state_count] for i in range(0, len(names), self.state_count)]

    def _stacked_initial(self, index: int):
        """ONNX initial_h (index 0) or initial_c (1): (directions, batch, units)."""
        if not self.initial:
            return None
        parts = [self.b.op("Unsqueeze", [states[index], self.b.ints(f"{self.base}/axis0", [0])],
                           f"{self.base}/initial{index}_{d}")
                 for d, states in enumerate(self.initial)]
        return parts[0] if len(parts) == 1 else self.b.op(
            "Concat", parts, f"{self.base}/initial{index}", axis=0)

    # -- the operator

    def _run(self, sequences: str) -> list:
        b, base = self.b, self.base
        w, r, bias, activations = self._folded_weights()
        x = b.op("Transpose", [sequences], f"{base}/time_major", perm=[1, 0, 2])
        inputs = [x, w, r, bias, self.lengths, self._stacked_initial(0)]
        if self.class_name == "LSTM":
            inputs.append(self._stacked_initial(1))
        direction = ("bidirectional" if len(self.ways) == 2
                     else "reverse" if self.ways[0].go_backwards else "forward")
        reset_after = None
        if self.class_name == "GRU":
            reset_after = int(bool(self.ways[0].config.get("reset_after", True)))
        alphas = [alpha for _, alpha, _ in activations if alpha is not None]
        betas = [beta for _, _, beta in activations if beta is not None]
        op_type = ONNX_OP[self.class_name]
        return b.op(op_type, inputs, f"{base}/{op_type}", outputs=1 + self.state_count,
                    hidden_size=self.units, direction=direction,
                    activations=[name for name, _, _ in activations],
                    activation_alpha=alphas or None, activation_beta=betas or None,
                    linear_before_reset=reset_after)

    def _folded_weights(self) -> tuple:
        """ONNX W, R, B initializers (directions stacked) and the activations of every
        direction in order."""
        weights = named_weights(self.node)
        fan_in = self.node.input("sequences").shape[-1]
        stacks, activations = ([], [], []), []
        for way in self.ways:
            own = {spec.name.rsplit("/", 1)[1]: weights[spec.name]
                   for spec in way.weight_specs(fan_in)}
            for stack, array in zip(stacks, onnx_weights(self.class_name, self.units, own)):
                stack.append(array.astype(np.float32))
            activations += onnx_activations(way, self.node.layer.dialect, self.node.name)
        w, r, bias = (self.b.constant(f"{self.base}/{name}", np.stack(stack))
                      for name, stack in zip(("W", "R", "B"), stacks))
        return w, r, bias, activations

    # -- results of one direction, batch-major

    def _pick(self, value: str, axis: int, direction: int, name: str) -> str:
        index = self.b.constant(f"{self.base}/direction{direction}", np.int64(direction))
        return self.b.op("Gather", [value, index], f"{self.base}/{name}{direction}", axis=axis)

    def states(self, direction: int) -> list:
        """Keras' final states (h, c for LSTM): the operator's, or the initial ones for a
        fully padded row (the operator zeroes those)."""
        finals = [self._pick(final, 0, direction, f"state{i}_")
                  for i, final in enumerate(self.finals)]
        if self.mask is None or not self.initial:
            return finals
        return [self.b.op("Where", [self._has_steps, final, initial],
                          f"{self.base}/state{i}_kept{direction}")
                for i, (final, initial) in enumerate(zip(finals, self.initial[direction]))]

    def output(self, direction: int, zero_output: bool, flip: bool) -> str:
        """The Keras layer's output: the last output, or with ``return_sequences`` every
        step's output in time order (reversed when ``flip``). ``zero_output``: Keras'
        zero_output_for_mask."""
        way = self.ways[direction]
        if not way.config.get("return_sequences"):
            return self._last_output(direction, zero_output)
        b = self.b
        y = self._pick(self.y, 1, direction, "sequence")
        y = b.op("Transpose", [y], f"{self.base}/batch_major{direction}", perm=[1, 0, 2])
        if self.mask is not None:
            if zero_output or way.go_backwards:
                fill = self._zero
            else:
                fill = self._unsqueeze(self._last_output(direction, False), 1,
                                       f"{self.base}/previous_output{direction}")
            valid = self._unsqueeze(self.mask, 2, f"{self.base}/valid_steps{direction}")
            y = b.op("Where", [valid, y, fill], f"{self.base}/sequence_masked{direction}")
        if flip:
            y = b.op("Slice", [y, b.ints(f"{self.base}/flip_start", [-1]),
                               b.ints(f"{self.base}/flip_end", [INT64_MIN]),
                               b.ints(f"{self.base}/flip_axis", [1]),
                               b.ints(f"{self.base}/flip_step", [-1])],
                     f"{self.base}/reversed{direction}")
        return y

    def _last_output(self, direction: int, zero_output: bool) -> str:
        """The output of the step Keras processes last: its h if that step is valid, else
        zeros with zero_output_for_mask, else the last valid h (zeros if there is none)."""
        h = self._pick(self.finals[0], 0, direction, "last")
        if self.mask is None:
            return h
        keep = self._has_steps
        if zero_output:
            last = self.b.constant(f"{self.base}/last_step",
                                   np.int64(0 if self.ways[direction].go_backwards else -1))
            keep = self.b.op("Gather", [self.mask, last], f"{self.base}/last_step_valid",
                             axis=1)
            keep = self._unsqueeze(keep, 1, f"{self.base}/last_step_valid_b")
        return self.b.op("Where", [keep, h, self._zero], f"{self.base}/last_output{direction}")

    @cached_property
    def _has_steps(self) -> str:
        """(batch, 1) bool: the row has at least one valid step."""
        positive = self.b.op("Greater", [self.lengths, self.b.constant(
            f"{self.base}/no_steps", np.int32(0))], f"{self.base}/has_steps")
        return self._unsqueeze(positive, 1, f"{self.base}/has_steps_b")

    @cached_property
    def _zero(self) -> str:
        return self.b.constant(f"{self.base}/zero", np.float32(0))

    def _unsqueeze(self, value: str, axis: int, base: str) -> str:
        return self.b.op("Unsqueeze", [value, self.b.ints(f"{base}/axes", [axis])], base)


# ---------------------------------------------------------------------- emitters


@emits("LSTM", "GRU", "SimpleRNN")
def recurrent(node: Node, b: Builder) -> list:
    """h_t = cell(x_t, h_{t-1}) (LSTM: with c_t; GRU with reset_after: linear_before_reset)
    over the steps, backwards with ``go_backwards`` (whose sequence output Keras returns in
    processing order: reversed); outputs the last h or every h, then the final states."""
    ways = recurrent_ways(node)
    check_supported(node, ways)
    run = Recurrence(node, b, ways)
    way = ways[0]
    output = run.output(0, bool(way.config.get("zero_output_for_mask")), way.go_backwards)
    return [output] + (run.states(0) if way.config.get("return_state") else [])


MERGES = {"sum": "Add", "mul": "Mul"}


@emits("Bidirectional")
def bidirectional(node: Node, b: Builder) -> list:
    """y = merge(forward(x), reverse(backward(x))) with merge concat (last axis), sum, mul,
    ave ((y + y_rev) / 2) or None (both outputs); then the forward states, the backward
    states. Keras forces zero_output_for_mask on both layers with ``return_sequences``."""
    ways = recurrent_ways(node)
    check_supported(node, ways)
    run = Recurrence(node, b, ways)
    sequences = bool(ways[0].config.get("return_sequences"))
    # ONNX's reverse direction is in time order already: Keras' flip of the backward
    # layer's (processing-order) sequence output cancels out.
    forward, backward = run.output(0, sequences, False), run.output(1, sequences, False)
    mode = node.config.get("merge_mode", "concat")
    if mode is None:
        outputs = [forward, backward]
    elif mode == "concat":
        outputs = [b.op("Concat", [forward, backward], node.name, axis=-1)]
    elif mode == "ave":
        total = b.op("Add", [forward, backward], f"{node.name}/sum")
        outputs = [b.op("Div", [total, b.constant(f"{node.name}/two", np.float32(2))],
                        node.name)]
    elif mode in MERGES:
        outputs = [b.op(MERGES[mode], [forward, backward], node.name)]
    else:
        raise ConversionError(f"layer {node.name!r}: merge_mode {mode!r} not supported yet")
    if ways[0].config.get("return_state"):
        outputs += run.states(0) + run.states(1)
    return outputs


@emits("TimeDistributed")
def time_distributed(node: Node, b: Builder) -> list:
    """y[:, t] = layer(x[:, t]): the steps folded into the batch, (B, T, ...) ->
    (B*T, ...), the wrapped layer's own emitter on that, then (B*T, ...) -> (B, T, ...)."""
    x_tensor = node.input("inputs")
    x = b.value(x_tensor)
    step_shape = b.op("Shape", [x], f"{node.name}/step_shape", start=2)
    folded = b.op("Concat", [b.ints(f"{node.name}/all_steps", [-1]), step_shape],
                  f"{node.name}/folded_shape", axis=0)
    steps = Tensor(f"{node.name}/steps", (None,) + tuple(x_tensor.shape[2:]), x_tensor.dtype)
    b.bind(steps, b.op("Reshape", [x, folded], f"{node.name}/steps"))
    inner = time_distributed_inner(node, steps)
    emit_inner = emitter_for(inner.layer)
    if emit_inner is None:
        raise ConversionError(f"layer {node.name!r}: TimeDistributed around "
                              f"{inner.class_name} not supported yet")
    batch_and_time = b.op("Shape", [x], f"{node.name}/batch_and_time", start=0, end=2)
    outputs = []
    for i, y in enumerate(emit_inner(inner, b)[:len(inner.outputs)]):
        per_step = b.op("Shape", [y], f"{node.name}/output_shape{i}", start=1)
        shape = b.op("Concat", [batch_and_time, per_step], f"{node.name}/unfolded_shape{i}",
                     axis=0)
        outputs.append(b.op("Reshape", [y, shape], node.name))
    return outputs
