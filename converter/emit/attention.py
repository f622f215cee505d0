"""Emitters for Keras' attention layers: MultiHeadAttention, GroupQueryAttention,
Attention, AdditiveAttention.

Two lowerings. At opset 23+ the standard ``Attention`` operator runs the attention core
wherever it computes exactly what Keras computes; otherwise (and at opset 17-22) the core is
MatMul / Softmax / Transpose, grouped key/value heads repeated. Never Einsum. A call
with a key/value cache (``Builder.cache``, see with_past.py) attends past and new keys:
the operator's past_key / past_value, or a Concat and a causal mask offset by the past.

How Keras masks the logits, which decides what fully masked rows give:
- Keras 2 MultiHeadAttention, and Attention / AdditiveAttention in both dialects: logits
  plus -1e9 where masked ("add"), so a fully masked row averages every position; but
  Keras 2's softmax over several attention axes, exp(x - logsumexp(x)), rounds every
  probability of such a row to 1 (MatMul only);
- Keras 3 MultiHeadAttention / GroupQueryAttention on the fused path (3-D inputs, no
  scores, no dropout): ``where(mask, logits, -0.7 * 3.38953e38)`` ("replace"), which also
  averages;
- Keras 3 otherwise: ``where(mask, logits, -1e9)``, softmax, then
  ``where(mask, probabilities, 0)`` ("zero"): a fully masked row gives zeros.
The ONNX operator adds a float mask to the logits, which reproduces "add" and "replace"
exactly (-0.7 * 3.38953e38 absorbs any logit); "zero" with a mask falls back to MatMul.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from onnx import TensorProto

from ..errors import ConversionError
from ..ir import Node
from ..layers.attention import attention_axes, keras3_fused_path, mha_masking, mha_output_dims
from ..model import named_weights
from .builder import Builder
from .registry import emits

KERAS_MASK_NEGATIVE = -1e9
KERAS3_FUSED_NEGATIVE = float(np.float32(3.38953e38 * -0.7))
FUSED_ATTENTION_OPSET = 23


# ---------------------------------------------------------------------- masks


def as_bool(b: Builder, name: str, dtype: str, base: str) -> str:
    """Keras casts masks to bool: any non-zero value attends."""
    return name if dtype == "bool" else b.op("Cast", [name], f"{base}/bool", to=TensorProto.BOOL)


def causal_mask(b: Builder, query: str, key: str, shape_q, shape_k, base: str,
                window: int = None, past: str = None) -> str:
    """(1, T, S) bool, True where row >= column (Keras' lower-triangular causal mask), or
    with ``window`` where |row - column| < window (Keras' sliding-window band). With a
    cache, ``past`` (B, heads, P, dim) holds the earlier keys: rows are positions P ...
    P + T - 1 and columns 0 ... P + T - 1."""
    if past is None and shape_q[1] is not None and shape_k[1] is not None:
        rows = np.arange(shape_q[1]).reshape(1, -1, 1)
        cols = np.arange(shape_k[1]).reshape(1, 1, -1)
        mask = rows >= cols if window is None else np.abs(rows - cols) < window
        return b.constant(base, mask)
    rows = positions(b, query, f"{base}/query_positions")
    if past is None:
        cols = positions(b, key, f"{base}/key_positions")
    else:
        past_length = axis_length(b, past, 2, f"{base}/past_length")
        rows = b.op("Add", [rows, past_length], f"{base}/query_offset_positions")
        total = b.op("Add", [past_length, axis_length(b, key, 1, f"{base}/new_length")],
                     f"{base}/total_length")
        cols = count_up(b, total, f"{base}/key_positions")
    rows = unsqueeze(b, rows, [0, 2], f"{base}/rows")
    cols = unsqueeze(b, cols, [0, 1], f"{base}/columns")
    if window is None:
        return b.op("GreaterOrEqual", [rows, cols], base)
    distance = b.op("Abs", [b.op("Sub", [rows, cols], f"{base}/offset")], f"{base}/distance")
    return b.op("Less", [distance, b.constant(f"{base}/window", np.int64(window))], base)


def positions(b: Builder, value: str, base: str) -> str:
    """0, 1, ... along axis 1 of ``value``."""
    return count_up(b, axis_length(b, value, 1, f"{base}/length"), base)


def axis_length(b: Builder, value: str, axis: int, base: str) -> str:
    """The size of ``value``'s ``axis``, an int64 scalar."""
    length = b.op("Shape", [value], f"{base}/shape", start=axis, end=axis + 1)
    return b.op("Squeeze", [length], base)


def count_up(b: Builder, length: str, base: str) -> str:
    return b.op("Range", [b.constant(f"{base}/zero", np.int64(0)), length,
                          b.constant(f"{base}/one", np.int64(1))], base)


def combine_masks(b: Builder, parts: list, base: str):
    """AND of the (name, rank-3-broadcastable) bool masks present; None when none is."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    combined = parts[0]
    for i, part in enumerate(parts[1:]):
        combined = b.op("And", [combined, part], f"{base}/mask_and{i}")
    return combined


def unsqueeze(b: Builder, name: str, axes: list, base: str) -> str:
    return b.op("Unsqueeze", [name, b.ints(f"{base}/axes", axes)], base)


def additive_mask(b: Builder, mask: str, negative: float, base: str) -> str:
    """0 where attending, ``negative`` where masked, float32."""
    return b.op("Where", [mask, b.constant(f"{base}/zero", np.float32(0)),
                          b.constant(f"{base}/negative", np.float32(negative))], base)


def expand_to_queries(b: Builder, mask4: str, query: str, base: str) -> str:
    """(B|1, N|1, T|1, S) -> (B|1, N|1, T, S): the operator wants mask.shape[-2] == q_len."""
    length = b.op("Shape", [query], f"{base}/query_length", start=1, end=2)
    one = b.ints(f"{base}/ones", [1, 1])
    target = b.op("Concat", [one, length, b.ints(f"{base}/one", [1])], f"{base}/target",
                  axis=0)
    return b.op("Expand", [mask4, target], base)


# ---------------------------------------------------------------------- cores


class Heads(NamedTuple):
    """Query heads, key/value heads (fewer in grouped-query attention: each serves
    query // key_value consecutive query heads), and the per-head sizes."""

    query: int
    key_value: int
    key_dim: int
    value_dim: int


def matmul_attention(b: Builder, q: str, k: str, v: str, heads: Heads, mask4, masking: str,
                     base: str, logsumexp: bool = False, past: tuple = None,
                     soft_cap: float = None) -> tuple:
    """softmax(q kᵀ (masked)) v per head on (B, T, heads*dim) tensors (q pre-scaled), key
    and value heads repeated to the query heads; ``mask4`` broadcasts to the logits
    (B, heads, T, S); with ``soft_cap`` the logits are cap * tanh(logits / cap) before
    the mask. Returns the context (B, T, heads*value_dim), the probabilities and,
    given the cached ``past`` (key, value) heads (B, kv_heads, P, dim), the present ones:
    past and new concatenated along the sequence axis, which the query attends.

    ``logsumexp``: Keras' softmax over several axes, exp(x - logsumexp(x)); after adding
    -1e9 to a whole row it gives 1, not 1 / S, at every position (float32 rounding)."""
    def split(x, count, dim, perm, name):
        x = b.op("Reshape", [x, b.ints(f"{base}/{name}_shape", [0, 0, count, dim])],
                 f"{base}/{name}_heads")
        return b.op("Transpose", [x], f"{base}/{name}_t", perm=perm)

    def repeat(x, target, name):
        """(B, kv, a, b) -> (B, heads, a, b), each key/value head ``repeats`` times."""
        repeats = heads.query // heads.key_value
        if repeats == 1:
            return x
        x = b.op("Expand", [unsqueeze(b, x, [2], f"{base}/{name}_group"),
                            b.ints(f"{base}/{name}_repeats", [1, 1, repeats, 1, 1])],
                 f"{base}/{name}_repeated")
        return b.op("Reshape", [x, b.ints(f"{base}/{name}_query_heads", target)],
                    f"{base}/{name}_shared")

    key = split(k, heads.key_value, heads.key_dim, [0, 2, 3, 1] if past is None
                else [0, 2, 1, 3], "key")
    value = split(v, heads.key_value, heads.value_dim, [0, 2, 1, 3], "value")
    present = None
    if past is not None:
        present = (b.op("Concat", [past[0], key], f"{base}/present_key", axis=2),
                   b.op("Concat", [past[1], value], f"{base}/present_value", axis=2))
        key = b.op("Transpose", [present[0]], f"{base}/key_all_t", perm=[0, 1, 3, 2])
        value = present[1]
    key = repeat(key, [0, heads.query, heads.key_dim, -1], "key")
    value = repeat(value, [0, heads.query, -1, heads.value_dim], "value")
    logits = b.op("MatMul", [split(q, heads.query, heads.key_dim, [0, 2, 1, 3], "query"), key],
                  f"{base}/logits")
    if soft_cap is not None:
        cap = b.constant(f"{base}/soft_cap", np.float32(soft_cap))
        logits = b.op("Mul", [b.op("Tanh", [b.op("Div", [logits, cap], f"{base}/over_cap")],
                                   f"{base}/tanh"), cap], f"{base}/capped")
    if mask4 is not None and masking == "add":
        logits = b.op("Add", [logits, additive_mask(b, mask4, KERAS_MASK_NEGATIVE,
                                                    f"{base}/adder")], f"{base}/masked")
    elif mask4 is not None:
        negative = KERAS3_FUSED_NEGATIVE if masking == "replace" else KERAS_MASK_NEGATIVE
        logits = b.op("Where", [mask4, logits, b.constant(f"{base}/negative",
                                                          np.float32(negative))],
                      f"{base}/masked")
    if logsumexp:
        peak = b.reduce("ReduceMax", logits, [-1], f"{base}/peak")
        shifted = b.op("Exp", [b.op("Sub", [logits, peak], f"{base}/shifted")], f"{base}/exp")
        total = b.op("Log", [b.reduce("ReduceSum", shifted, [-1], f"{base}/sum")],
                     f"{base}/log_sum")
        normalizer = b.op("Add", [total, peak], f"{base}/logsumexp")
        probabilities = b.op("Exp", [b.op("Sub", [logits, normalizer], f"{base}/log_scores")],
                             f"{base}/scores")
    else:
        probabilities = b.op("Softmax", [logits], f"{base}/scores", axis=-1)
    if mask4 is not None and masking == "zero":
        probabilities = b.op("Where", [mask4, probabilities,
                                       b.constant(f"{base}/zero", np.float32(0))],
                             f"{base}/scores_masked")
    context = b.op("MatMul", [probabilities, value], f"{base}/context_heads")
    context = b.op("Transpose", [context], f"{base}/context_t", perm=[0, 2, 1, 3])
    context = b.op("Reshape", [context, b.ints(f"{base}/merge_heads", [0, 0, -1])],
                   f"{base}/context")
    return context, probabilities, present


def fused_attention(b: Builder, q: str, k: str, v: str, heads: int, mask4, masking: str,
                    causal_only: bool, want_scores: bool, scale: float, base: str,
                    kv_heads: int = None, past: tuple = None) -> tuple:
    """The ONNX Attention operator on (B, T, heads*dim) tensors (``kv_heads`` key/value
    heads, default ``heads``); ``mask4`` broadcasts to (B, heads, T, S); scores are its
    softmax output (qk_matmul_output_mode 3). Returns (context, scores, present): given
    the cached ``past`` (key, value) heads, the operator appends the new ones (present)
    and aligns its causal mask bottom-right (query i attends key j <= i + P)."""
    mask = None
    if mask4 is not None:
        negative = KERAS3_FUSED_NEGATIVE if masking == "replace" else KERAS_MASK_NEGATIVE
        mask = additive_mask(b, expand_to_queries(b, mask4, q, f"{base}/mask_full"),
                             negative, f"{base}/adder")
    outputs = b.op("Attention", [q, k, v, mask] + list(past or ()), f"{base}/attention",
                   outputs=4 if want_scores else (1 if past is None else 3),
                   q_num_heads=heads, kv_num_heads=kv_heads or heads, scale=scale,
                   is_causal=1 if causal_only else None,
                   qk_matmul_output_mode=3 if want_scores else None)
    if past is None and not want_scores:
        outputs = [outputs]
    present = None if past is None else (outputs[1], outputs[2])
    return outputs[0], (outputs[3] if want_scores else None), present


def project(b: Builder, x: str, kernel, bias, base: str) -> str:
    """x @ kernel (+ bias) with the kernel flattened to 2-D at conversion time."""
    out = b.op("MatMul", [x, b.constant(f"{base}/kernel", kernel)], f"{base}/matmul")
    if bias is None:
        return out
    return b.op("Add", [out, b.constant(f"{base}/bias", bias)], base)


# ---------------------------------------------------------------------- MultiHeadAttention


class _AxesLayout:
    """Attention over ``axes`` of an N-D input as 3-D attention: the other axes move
    next to the batch and fold into it, the attention axes fold into one sequence axis."""

    def __init__(self, rank: int, axes: tuple):
        self.rank, self.axes = rank, axes
        self.others = [a for a in range(1, rank - 1) if a not in axes]
        self.perm = [0] + self.others + list(axes) + [rank - 1]
        self.trivial = self.rank == 3

    def to_3d(self, b: Builder, name: str, shape: tuple, base: str) -> str:
        if self.trivial:
            return name
        if any(shape[a] is None for a in range(1, self.rank)):
            layer = base.rsplit("/", 1)[0]
            raise ConversionError(f"layer {layer!r}: attention over axes {self.axes} needs "
                                  f"fixed sizes on every non-batch axis, got {shape}")
        if self.perm != list(range(self.rank)):
            name = b.op("Transpose", [name], f"{base}/to_sequence", perm=self.perm)
        length = math.prod(shape[a] for a in self.axes)
        return b.op("Reshape", [name, b.ints(f"{base}/sequence_shape",
                                             [-1, length, shape[-1]])], f"{base}/sequence")

    def from_3d(self, b: Builder, name: str, query_shape: tuple, out_dims: tuple,
                base: str) -> str:
        """(B', T, prod(out_dims)) back to the query's layout with ``out_dims`` last."""
        if self.trivial:
            if len(out_dims) == 1:
                return name
            return b.op("Reshape", [name, b.ints(f"{base}/output_shape", [0, 0, *out_dims])],
                        f"{base}/output_dims")
        sizes = [query_shape[a] for a in self.others + list(self.axes)]
        shaped = b.op("Reshape", [name, b.ints(f"{base}/output_shape",
                                               [-1, *sizes, *out_dims])], f"{base}/output_dims")
        if self.perm == list(range(self.rank)):
            return shaped
        inverse = [int(i) for i in np.argsort(self.perm[:-1])]
        inverse += list(range(self.rank - 1, self.rank - 1 + len(out_dims)))
        return b.op("Transpose", [shaped], f"{base}/from_sequence", perm=inverse)

    def scores_from_3d(self, b: Builder, name: str, heads: int, query_shape: tuple,
                       key_shape: tuple, base: str) -> str:
        """(B', N, T, S) -> Keras' (B, <other axes>, N, <query axes>, <key axes>)."""
        if self.trivial:
            return name
        dims = ([query_shape[a] for a in self.others] + [heads]
                + [query_shape[a] for a in self.axes] + [key_shape[a] for a in self.axes])
        return b.op("Reshape", [name, b.ints(f"{base}/scores_shape", [-1] + dims)],
                    f"{base}/scores_dims")

    def scores_rank(self) -> int:
        """Rank of Keras' scores: batch and other axes, heads, query axes, key axes."""
        return self.rank + len(self.axes)

    def mask_to_3d(self, b: Builder, mask: str, query: str, heads: int, query_shape: tuple,
                   key_shape: tuple, base: str) -> str:
        """A mask broadcastable to Keras' scores -> (B', N, T, S) like the folded logits."""
        if self.trivial:
            return mask
        dims = ([query_shape[a] for a in self.others] + [heads]
                + [query_shape[a] for a in self.axes] + [key_shape[a] for a in self.axes])
        batch = b.op("Shape", [query], f"{base}/batch", start=0, end=1)
        full = b.op("Concat", [batch, b.ints(f"{base}/dims", dims)], f"{base}/scores_shape",
                    axis=0)
        mask = b.op("Expand", [mask, full], f"{base}/scores_like")
        length = math.prod(query_shape[a] for a in self.axes)
        source = math.prod(key_shape[a] for a in self.axes)
        return b.op("Reshape", [mask, b.ints(f"{base}/folded_shape",
                                             [-1, heads, length, source])], f"{base}/folded")


@emits("MultiHeadAttention")
def multi_head_attention(node: Node, b: Builder) -> list:
    """Keras MultiHeadAttention: project query/key/value, attend per head (over
    attention_axes, folded into 3-D), optionally gate by sigmoid(query projection),
    project back."""
    config = node.config
    key_dim = config["key_dim"]
    heads = Heads(config["num_heads"], config["num_heads"], key_dim,
                  config.get("value_dim") or key_dim)
    layout = _AxesLayout(len(node.input("query").shape), attention_axes(node))
    return _project_and_attend(node, b, heads, layout, mha_output_dims(node))


@emits("GroupQueryAttention")
def grouped_query_attention(node: Node, b: Builder) -> list:
    """Keras 3 GroupQueryAttention: MultiHeadAttention whose key and value heads are each
    shared by num_query_heads / num_key_value_heads consecutive query heads."""
    config = node.config
    heads = Heads(config["num_query_heads"], config["num_key_value_heads"],
                  config["head_dim"], config["head_dim"])
    query = node.input("query")
    return _project_and_attend(node, b, heads, _AxesLayout(3, (1,)), (query.shape[-1],))


def _project_and_attend(node: Node, b: Builder, heads: Heads, layout: _AxesLayout,
                        out_dims: tuple) -> list:
    """The body MultiHeadAttention and GroupQueryAttention share: query/key/value
    projections (1/sqrt(key_dim) folded into the query's), the attention core in the
    lowering that reproduces Keras' code path, the gate, the output projection."""
    config, base = node.config, node.name
    query, key, value = (node.input(r) for r in ("query", "key", "value"))
    want_scores = bool(node.arguments.get("return_attention_scores"))
    causal = bool(node.arguments.get("use_causal_mask"))
    window = config.get("sliding_window")

    explicit_path = not keras3_fused_path(node)
    slot = b.cache.get(node)  # with a key/value cache: this call's (with_past.CacheSlot)
    past = b.cached_past(node)
    mask4 = _mha_mask(node, b, layout, heads.query, causal, window, explicit_path, slot)
    masking = mha_masking(node)
    causal_only = causal and window is None and layout.trivial and not any(
        node.input(r) is not None for r in ("query_mask", "value_mask", "key_mask",
                                             "attention_mask"))

    weights = named_weights(node)

    def weight(name, shape, factor=1.0):
        array = weights.get(name)
        return None if array is None else (array.reshape(shape) * factor).astype(np.float32)

    def projection(name, x, count, dim, factor=1.0):
        return project(b, x, weight(f"{name}/kernel", (-1, count * dim), factor),
                       weight(f"{name}/bias", (-1,), factor), f"{base}/{name}")

    query_3d = layout.to_3d(b, b.value(query), query.shape, f"{base}/query_in")
    scale = 1.0 / math.sqrt(heads.key_dim)
    q = projection("query", query_3d, heads.query, heads.key_dim, scale)
    k = projection("key", layout.to_3d(b, b.value(key), key.shape, f"{base}/key_in"),
                   heads.key_value, heads.key_dim)
    v = projection("value", layout.to_3d(b, b.value(value), value.shape, f"{base}/value_in"),
                   heads.key_value, heads.value_dim)

    # "zero" masking cannot be expressed by the operator, unless only the causal mask
    # masks (then no row is fully masked and every masking gives the same numbers); nor
    # can Keras 2's added mask under its softmax over several axes.
    logsumexp = mask4 is not None and masking == "add" and len(layout.axes) > 1
    fused = b.opset >= FUSED_ATTENTION_OPSET and not logsumexp and (
        mask4 is None or masking != "zero" or causal_only)
    if fused:
        context, scores, present = fused_attention(
            b, q, k, v, heads.query, None if causal_only else mask4, masking, causal_only,
            want_scores, 1.0, f"{base}/core", kv_heads=heads.key_value, past=past)
    else:
        context, scores, present = matmul_attention(b, q, k, v, heads, mask4, masking,
                                                    f"{base}/core", logsumexp, past)
    b.bind_present(node, present)
    if config.get("use_gate"):
        gate = b.op("Sigmoid", [projection("gate", query_3d, heads.query, heads.value_dim)],
                    f"{base}/gate_sigmoid")
        context = b.op("Mul", [context, gate], f"{base}/gated")
    output = project(b, context, weight("attention_output/kernel",
                                        (heads.query * heads.value_dim, -1)),
                     weight("attention_output/bias", (-1,)), f"{base}/output")
    outputs = [layout.from_3d(b, output, query.shape, out_dims, base)]
    if want_scores:
        outputs.append(layout.scores_from_3d(b, scores, heads.query, query.shape, key.shape,
                                             base))
    return outputs


@emits("AttentionCore")
def attention_core(node: Node, b: Builder) -> list:
    """softmax(q·kᵀ · scale, masked) v per head of (B, T, heads, dim) query and (B, S,
    kv_heads, dim) key and value (each key/value head shared by heads / kv_heads
    consecutive query heads), masked where the attention_mask (B|1, T|1, S) is zero, by the
    causal mask (``use_causal_mask``) and the ``sliding_window`` (|i - j| < window), as
    Keras' Softmax layer masks: logits -1e9, probabilities 0 (a fully masked row gives
    zeros); the logits soft-capped first with ``logit_soft_cap`` (Gemma). With a cache
    (with_past.py) the keys and values of earlier positions come first."""
    config, base = node.config, node.name
    heads = Heads(config["num_query_heads"], config["num_key_value_heads"],
                  config["head_dim"], config["head_dim"])
    past = b.cached_past(node)
    query, key, given = node.input("query"), node.input("key"), node.input("attention_mask")
    window, soft_cap = config.get("sliding_window"), config.get("logit_soft_cap")

    def merged(role):
        return b.op("Reshape", [b.value(node.input(role)), b.ints(f"{base}/{role}_merged",
                                                                   [0, 0, -1])],
                    f"{base}/{role}_3d")

    q = b.op("Mul", [merged("query"), b.constant(f"{base}/scale", np.float32(config["scale"]))],
             f"{base}/query_scaled")
    parts = [None if given is None else unsqueeze(
        b, as_bool(b, b.value(given), given.dtype, f"{base}/attention_mask"), [1],
        f"{base}/attention_mask4")]
    if node.arguments.get("use_causal_mask"):
        causal = causal_mask(b, b.value(query), b.value(key), query.shape, key.shape,
                             f"{base}/causal", past=None if past is None else past[0])
        parts.append(unsqueeze(b, causal, [1], f"{base}/causal4"))
    if window is not None:
        band = causal_mask(b, b.value(query), b.value(key), query.shape, key.shape,
                           f"{base}/window", window=window,
                           past=None if past is None else past[0])
        parts.append(unsqueeze(b, band, [1], f"{base}/window4"))
    mask4 = combine_masks(b, parts, f"{base}/mask")
    causal_only = given is None and window is None and node.arguments.get("use_causal_mask")
    # the operator soft-caps after adding the mask, which would lift masked logits to -cap
    fusable = (mask4 is None or causal_only) and soft_cap is None
    if b.opset >= FUSED_ATTENTION_OPSET and fusable:
        context, _, present = fused_attention(b, q, merged("key"), merged("value"), heads.query,
                                              None, "zero", bool(causal_only), False, 1.0,
                                              f"{base}/core", kv_heads=heads.key_value,
                                              past=past)
    else:
        context, _, present = matmul_attention(b, q, merged("key"), merged("value"), heads,
                                               mask4, "zero", f"{base}/core", past=past,
                                               soft_cap=soft_cap)
    b.bind_present(node, present)
    return [b.op("Reshape", [context, b.ints(f"{base}/heads", [0, 0, heads.query,
                                                                heads.value_dim])], base)]


def _mha_mask(node: Node, b: Builder, layout: _AxesLayout, heads: int, causal: bool,
              window, explicit_path: bool, slot=None):
    """Keras' bool mask from the inputs' masks, the attention_mask, the causal flag and
    the sliding window, expanded as Keras expands it against the scores, then folded
    like the logits: (B'|1, N|1, T|1, S). None when nothing masks.

    Keras 3 makes the query mask (B, ..., T, 1) and value/key masks (B, ..., 1, S)
    (``expand_dims`` at -1 / -2); Keras 2 inserts the axis at 2 / 1 (``mask[:, :,
    newaxis]``), the same for 3-D inputs. The causal and window masks are (1, T, S) over
    the inputs' axis 1. Missing axes are inserted before the attention axes of the
    scores, one at a time, as ``_masked_softmax`` does. GroupQueryAttention leaves an
    attention_mask that is the only mask uncast, and on its explicit path Keras' Softmax
    keeps a non-bool mask where it is > 0.5 (> 0 for ints) instead. With a cache
    (``slot``, a with_past.CacheSlot), the causal and window masks cover the cached keys
    too, and the value and key masks (B, S) of the new positions, ANDed, follow the cached
    positions' (``slot.past_mask``) as ``slot.present_mask``."""
    base = f"{node.name}/mask"
    keras2 = node.layer.dialect == "keras2"
    past_key = None if slot is None else b.value(slot.past_key)
    parts, ranks, key_side = [], [], []
    for role, axis in (("query_mask", 2 if keras2 else -1), ("value_mask", 1 if keras2 else -2),
                       ("key_mask", 1 if keras2 else -2)):
        tensor = node.input(role)
        if tensor is not None:
            mask = as_bool(b, b.value(tensor), tensor.dtype, f"{base}/{role}")
            if slot is not None and slot.past_mask is not None and role != "query_mask":
                key_side.append(mask)  # (B, S): axis 1 in either dialect
                continue
            parts.append(unsqueeze(b, mask, [axis], f"{base}/{role}_3d"))
            ranks.append(len(tensor.shape) + 1)
    if key_side:
        present = b.op("Concat", [b.value(slot.past_mask),
                                  combine_masks(b, key_side, f"{base}/new_keys")],
                       f"{base}/present_keys", axis=1)
        b.bind(slot.present_mask, present)
        parts.append(unsqueeze(b, present, [1], f"{base}/present_keys_3d"))
        ranks.append(3)
    explicit = node.input("attention_mask")
    if explicit is not None:
        if (node.class_name == "GroupQueryAttention" and explicit_path and not parts
                and not causal and not window and explicit.dtype != "bool"):
            half = b.constant(f"{base}/half", np.array(0.5).astype(explicit.dtype))
            parts.append(b.op("Greater", [b.value(explicit), half], f"{base}/attention_mask"))
        else:
            parts.append(as_bool(b, b.value(explicit), explicit.dtype,
                                 f"{base}/attention_mask"))
        ranks.append(len(explicit.shape))
    query, key = node.input("query"), node.input("key")
    for name, flag, size in (("causal", causal, None), ("window", window, window)):
        if flag:
            parts.append(causal_mask(b, b.value(query), b.value(key), query.shape, key.shape,
                                     f"{base}/{name}", window=size, past=past_key))
            ranks.append(3)
    mask = combine_masks(b, parts, base)
    if mask is None:
        return None
    axes = _expanded_axes(max(ranks), layout.scores_rank(), -2 * len(layout.axes) - 1)
    if axes is None:
        raise ConversionError(f"layer {node.name!r}: its masks (rank {max(ranks)}) cannot be "
                              f"expanded against attention scores of rank "
                              f"{layout.scores_rank()}; Keras cannot run this call either")
    if axes:
        mask = unsqueeze(b, mask, axes, f"{base}/expanded")
    return layout.mask_to_3d(b, mask, b.value(query), heads, query.shape, key.shape,
                             f"{base}/scores")


def _expanded_axes(rank: int, target: int, axis: int):
    """Where repeated ``expand_dims(mask, axis)`` from ``rank`` up to ``target`` puts the
    new axes (final positions); None when an expansion is out of range."""
    dims = [False] * rank
    for _ in range(target - rank):
        position = axis + len(dims) + 1
        if position < 0:
            return None
        dims.insert(position, True)
    return [i for i, new in enumerate(dims) if new]


# ---------------------------------------------------------------------- Attention layers


def _score_mask(node: Node, b: Builder):
    """Value mask (B, 1, S) AND the causal mask (T, S), as Keras' scores_mask."""
    base = f"{node.name}/mask"
    parts = []
    value_mask = node.input("value_mask")
    if value_mask is not None:
        parts.append(unsqueeze(b, as_bool(b, b.value(value_mask), value_mask.dtype,
                                          f"{base}/value_mask"), [-2], f"{base}/value_mask_3d"))
    if node.arguments.get("use_causal_mask") or node.config.get("causal"):
        query, key = node.input("query"), node.input("key") or node.input("value")
        parts.append(causal_mask(b, b.value(query), b.value(key), query.shape, key.shape,
                                 f"{base}/causal"))
    return combine_masks(b, parts, base)


def _finish_attention(node: Node, b: Builder, output: str, scores: str) -> list:
    """Zero the rows of padded queries, as Keras does with the query mask."""
    query_mask = node.input("query_mask")
    if query_mask is not None:
        keep = unsqueeze(b, as_bool(b, b.value(query_mask), query_mask.dtype,
                                    f"{node.name}/query_mask"), [-1], f"{node.name}/keep")
        output = b.op("Where", [keep, output, b.constant(f"{node.name}/zero", np.float32(0))],
                      f"{node.name}/output")
    return [output, scores] if node.arguments.get("return_attention_scores") else [output]


def _softmax_attend(node: Node, b: Builder, logits: str, mask3) -> tuple:
    """softmax(logits - 1e9 where masked) @ value."""
    base = node.name
    if mask3 is not None:
        logits = b.op("Add", [logits, additive_mask(b, mask3, KERAS_MASK_NEGATIVE,
                                                    f"{base}/adder")], f"{base}/masked")
    scores = b.op("Softmax", [logits], f"{base}/scores", axis=-1)
    return b.op("MatMul", [scores, b.value(node.input("value"))], f"{base}/context"), scores


def _pairwise_tanh(node: Node, b: Builder, scale) -> str:
    """tanh(scale * (q[:, :, None] + k[:, None])) of shape (B, T, S, D)."""
    base = node.name
    query, key = node.input("query"), node.input("key") or node.input("value")
    pairs = b.op("Add", [unsqueeze(b, b.value(query), [2], f"{base}/query_rows"),
                         unsqueeze(b, b.value(key), [1], f"{base}/key_columns")],
                 f"{base}/pairs")
    if scale is not None:
        pairs = b.op("Mul", [pairs, b.constant(f"{base}/scale", scale)], f"{base}/scaled")
    return b.op("Tanh", [pairs], f"{base}/tanh")


@emits("Attention")
def attention(node: Node, b: Builder) -> list:
    """Keras Attention: softmax(scores) @ value; scores = q kᵀ (× scale with use_scale), or
    concat_score_weight × Σ tanh(scale (q + k)) with score_mode "concat"."""
    weights = named_weights(node)
    scale = weights.get("scale")
    mask3 = _score_mask(node, b)
    query, value = node.input("query"), node.input("value")
    key = node.input("key") or value
    want_scores = bool(node.arguments.get("return_attention_scores"))
    if node.config.get("score_mode", "dot") == "concat":
        summed = b.reduce("ReduceSum", _pairwise_tanh(node, b, scale), [-1],
                          f"{node.name}/tanh_sum", keepdims=0)
        logits = b.op("Mul", [summed, b.constant(f"{node.name}/concat_score_weight",
                                                 weights["concat_score_weight"])],
                      f"{node.name}/logits")
        return _finish_attention(node, b, *_softmax_attend(node, b, logits, mask3))
    if b.opset >= FUSED_ATTENTION_OPSET:
        # The operator's scale must be positive: any other learned scale multiplies q.
        q, scale_value = b.value(query), 1.0 if scale is None else float(scale)
        if scale_value <= 0:
            q = b.op("Mul", [q, b.constant(f"{node.name}/scale", scale)],
                     f"{node.name}/scaled_query")
            scale_value = 1.0
        mask4 = None if mask3 is None else unsqueeze(b, mask3, [1], f"{node.name}/mask4")
        output, scores, _ = fused_attention(b, q, b.value(key), b.value(value), 1, mask4, "add",
                                         False, want_scores, scale_value, f"{node.name}/core")
        if scores is not None:  # (B, 1, T, S) from the one-head operator
            scores = b.op("Squeeze", [scores, b.ints(f"{node.name}/head_axis", [1])],
                          f"{node.name}/scores")
        return _finish_attention(node, b, output, scores)
    key_t = b.op("Transpose", [b.value(key)], f"{node.name}/key_t", perm=[0, 2, 1])
    logits = b.op("MatMul", [b.value(query), key_t], f"{node.name}/logits")
    if scale is not None:
        logits = b.op("Mul", [logits, b.constant(f"{node.name}/scale", scale)],
                      f"{node.name}/scaled_logits")
    return _finish_attention(node, b, *_softmax_attend(node, b, logits, mask3))


@emits("AdditiveAttention")
def additive_attention(node: Node, b: Builder) -> list:
    """Keras AdditiveAttention: softmax(Σ scale · tanh(q[:, :, None] + k[:, None])) @ value
    (plain Σ without use_scale)."""
    weights = named_weights(node)
    tanh = _pairwise_tanh(node, b, None)
    if "scale" in weights:
        column = weights["scale"].reshape(-1, 1).astype(np.float32)
        summed = b.op("MatMul", [tanh, b.constant(f"{node.name}/scale", column)],
                      f"{node.name}/weighted")
        logits = b.op("Squeeze", [summed, b.ints(f"{node.name}/last_axis", [-1])],
                      f"{node.name}/logits")
    else:
        logits = b.reduce("ReduceSum", tanh, [-1], f"{node.name}/logits", keepdims=0)
    return _finish_attention(node, b, *_softmax_attend(node, b, logits, _score_mask(node, b)))
