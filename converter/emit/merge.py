"""Emitters for the merge family (see converter/layers/merge.py).

Masks. The output mask of an element-wise merge is the AND of the masks present in Keras 2
and the OR of the masks in Keras 3 (none when an input has none; the parser decides which
node computes a new mask). Keras 3 also lets masks change the VALUES of Multiply, Maximum
and Minimum (Keras 2 does not): a masked step of an input is replaced before the op (by 1
for Multiply, by the other operand for Maximum / Minimum), and Multiply zeroes the steps
that every input masks.
"""
from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ..errors import ConversionError
from ..ir import Node
from ..layers.merge import dot_axes
from ..layers.registry import normalize_axis
from .builder import Builder
from .registry import emits

BINARY_OPS = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Average": "Add",
              "Maximum": "Max", "Minimum": "Min"}
KERAS3_NORMALIZE_EPSILON = 1e-7  # Keras 3 caps 1 / norm at 1 / backend.epsilon()
KERAS2_NORMALIZE_EPSILON = 1e-12  # tf.linalg.l2_normalize floors the squared norm


def _unsqueeze(b: Builder, x: str, axes: list, base: str) -> str:
    return b.op("Unsqueeze", [x, b.ints(f"{base}/axes", axes)], base)


def _aligned_inputs(node: Node, b: Builder) -> list:
    """The inputs' ONNX names, lower ranks given new axes after the batch (Keras' rule)."""
    inputs = node.input("inputs")
    rank = max(len(t.shape) for t in inputs)
    return [b.value(t) if len(t.shape) == rank else
            _unsqueeze(b, b.value(t), list(range(1, 1 + rank - len(t.shape))),
                       f"{node.name}/input{i}_aligned")
            for i, t in enumerate(inputs)]


def _combined_mask(b: Builder, masks: list, op_type: str, base: str) -> str:
    combined = masks[0]
    for i, mask in enumerate(masks[1:]):
        combined = b.op(op_type, [combined, mask], f"{base}_{op_type.lower()}{i}")
    return combined


def _merged_mask(node: Node, b: Builder) -> list:
    """The node's new mask, if it computes one: AND (Keras 2) / OR (Keras 3) of the
    distinct input masks."""
    if not node.mask_outputs:
        return []
    distinct = []
    for tensor in node.input("inputs"):
        if tensor.mask is not None and all(tensor.mask is not m for m in distinct):
            distinct.append(tensor.mask)
    op_type = "And" if node.layer.dialect == "keras2" else "Or"
    return [_combined_mask(b, [b.value(m) for m in distinct], op_type, f"{node.name}/mask")]


def _step_masks(node: Node, b: Builder) -> list:
    """Per input: its mask with a trailing axis (broadcasts over features), or None."""
    return [None if t.mask is None else
            _unsqueeze(b, b.value(t.mask), [-1], f"{node.name}/input{i}_mask")
            for i, t in enumerate(node.input("inputs"))]


def _keras3_masked_multiply(node: Node, b: Builder, inputs: list, masks: list) -> str:
    """Masked steps count as 1; with every input masked, steps no input keeps are 0."""
    base = node.name
    one, zero = (b.constant(f"{base}/{n}", np.float32(v)) for n, v in (("one", 1), ("zero", 0)))
    output = None
    for i, (x, mask) in enumerate(zip(inputs, masks)):
        if mask is not None:
            x = b.op("Where", [mask, x, one], f"{base}/input{i}_kept")
        output = x if output is None else b.op("Mul", [output, x], f"{base}/product{i}")
    if all(m is not None for m in masks):
        kept = _combined_mask(b, masks, "Or", f"{base}/kept")
        output = b.op("Where", [kept, output, zero], base)
    return output


def _keras3_masked_extreme(node: Node, b: Builder, op_type: str, inputs: list,
                           masks: list) -> str:
    """Keras 3 Maximum / Minimum: a masked step takes the other operand's value; the
    running mask is the OR of the masks until an input without a mask ends it."""
    base = node.name
    output, output_mask = inputs[0], masks[0]
    for i, (x, mask) in enumerate(zip(inputs[1:], masks[1:]), start=1):
        if mask is not None:
            x = b.op("Where", [mask, x, output], f"{base}/input{i}_kept")
        if output_mask is not None:
            output = b.op("Where", [output_mask, output, x], f"{base}/running{i}_kept")
        output_mask = (None if mask is None or output_mask is None else
                       b.op("Or", [output_mask, mask], f"{base}/running{i}_mask"))
        output = b.op(op_type, [output, x], f"{base}/{op_type.lower()}{i}")
    return output


@emits("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
def elementwise_merge(node: Node, b: Builder) -> list:
    """y = x1 + x2 + ... / x1 - x2 / x1 * x2 * ... / mean / max / min, left to right;
    Keras 3's mask-aware Multiply, Maximum and Minimum when inputs carry masks."""
    inputs = _aligned_inputs(node, b)
    op_type = BINARY_OPS[node.class_name]
    masked = any(t.mask is not None for t in node.input("inputs"))
    if node.layer.dialect == "keras3" and masked and op_type in ("Mul", "Max", "Min"):
        masks = _step_masks(node, b)
        output = (_keras3_masked_multiply(node, b, inputs, masks) if op_type == "Mul" else
                  _keras3_masked_extreme(node, b, op_type, inputs, masks))
        return [output] + _merged_mask(node, b)
    output = inputs[0]
    for i, x in enumerate(inputs[1:], start=1):
        output = b.op(op_type, [output, x], f"{node.name}/{op_type.lower()}{i}")
    if node.class_name == "Average":
        output = b.op("Div", [output, b.constant(f"{node.name}/count",
                                                 np.float32(len(inputs)))], node.name)
    return [output] + _merged_mask(node, b)


@emits("Concatenate")
def concatenate(node: Node, b: Builder) -> list:
    """y = concat(inputs, axis). Mask: per-step masks (all True for an unmasked input)
    joined along ``axis``; joined along the feature axis they combine per step instead,
    AND in Keras 2 (unmasked inputs ignored) and OR in Keras 3."""
    inputs = node.input("inputs")
    rank = len(inputs[0].shape)
    axis = normalize_axis(node.config.get("axis", -1), rank)
    output = b.op("Concat", [b.value(t) for t in inputs], node.name, axis=axis)
    if not node.mask_outputs:
        return [output]
    base = f"{node.name}/mask"
    masks = [None if t.mask is None else b.value(t.mask) for t in inputs]
    if axis < rank - 1:
        parts = [_all_true(b, b.value(t), f"{base}/input{i}_unmasked") if m is None else m
                 for i, (t, m) in enumerate(zip(inputs, masks))]
        return [output, b.op("Concat", parts, base, axis=axis)]
    if node.layer.dialect == "keras2":
        return [output, _combined_mask(b, [m for m in masks if m is not None], "And", base)]
    if any(m is None for m in masks):
        return [output, _all_true(b, output, base)]
    return [output, _combined_mask(b, masks, "Or", base)]


def _all_true(b: Builder, x: str, base: str) -> str:
    """A bool mask of True with x's shape minus its last axis."""
    shape = b.op("Shape", [x], f"{base}/shape", end=-1)
    return b.op("ConstantOfShape", [shape], base,
                value=numpy_helper.from_array(np.array([True]), "value"))


def _l2_normalized(node: Node, b: Builder, x: str, axis: int, base: str) -> str:
    """x / ||x|| along ``axis``: Keras 3 x * min(rsqrt(Σx²), 1/1e-7); Keras 2 (TF's
    l2_normalize) x * rsqrt(max(Σx², 1e-12))."""
    square_sum = b.reduce("ReduceSum", b.op("Mul", [x, x], f"{base}/square"), [axis],
                          f"{base}/square_sum", keepdims=1)
    keras2 = node.layer.dialect == "keras2"
    if keras2:
        square_sum = b.op("Max", [square_sum, b.constant(
            f"{base}/epsilon", np.float32(KERAS2_NORMALIZE_EPSILON))], f"{base}/floored")
    inverse = b.op("Reciprocal", [b.op("Sqrt", [square_sum], f"{base}/norm")],
                   f"{base}/inverse_norm")
    if not keras2:
        inverse = b.op("Min", [inverse, b.constant(
            f"{base}/cap", np.float32(1 / KERAS3_NORMALIZE_EPSILON))], f"{base}/capped")
    return b.op("Mul", [x, inverse], base)


@emits("Dot")
def dot(node: Node, b: Builder) -> list:
    """Keras batch_dot: contract x1's axes[0] with x2's axes[1] per sample, output dims
    x1's remaining dims then x2's (rank-1 results get a trailing 1); with ``normalize``
    both inputs are L2-normalized along those axes first (cosine similarity)."""
    first, second = node.input("inputs")
    axes = dot_axes(node)
    ranks = (len(first.shape), len(second.shape))
    if max(ranks) > 3:
        raise ConversionError(f"layer {node.name!r}: Dot on inputs of rank {max(ranks)} is "
                              f"not supported yet (rank 2 and 3 are)")
    x, y = b.value(first), b.value(second)
    if node.config.get("normalize"):
        x = _l2_normalized(node, b, x, axes[0], f"{node.name}/x_normalized")
        y = _l2_normalized(node, b, y, axes[1], f"{node.name}/y_normalized")
    # x as (B, rows, D), y as (B, D, columns): MatMul contracts D.
    if ranks[0] == 2:
        x = _unsqueeze(b, x, [1], f"{node.name}/x_row")
    elif axes[0] == 1:
        x = b.op("Transpose", [x], f"{node.name}/x_t", perm=[0, 2, 1])
    if ranks[1] == 2:
        y = _unsqueeze(b, y, [2], f"{node.name}/y_column")
    elif axes[1] == 2:
        y = b.op("Transpose", [y], f"{node.name}/y_t", perm=[0, 2, 1])
    product = b.op("MatMul", [x, y], f"{node.name}/matmul")
    if ranks[0] == 2 or ranks[1] == 2:
        squeezed = 1 if ranks[0] == 2 else 2
        product = b.op("Squeeze", [product, b.ints(f"{node.name}/squeeze_axis", [squeezed])],
                       node.name)
    return [product]
