"""Emitters for tensor operations: Keras 3 ``keras.ops`` nodes and Keras 2 ``TFOpLambda``
layers, lowered by operation name (``layers/operations.py`` reads both dialects into one
operation with attributes).

Every operand is first brought to the dtype the dialect computes in (``operation_dtypes``):
tensors by a Cast when they differ, Python constants folded as initializers of that dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConversionError
from ..ir import Node, Tensor
from ..layers.operations import (FLOATS, as_axes, expand_axes, operands, operation,
                                 operation_dtypes, unsupported_arguments)
from .activations import apply_activation
from .builder import Builder, onnx_dtype
from .registry import emits

@dataclass
class _Operation:
    """One operation node being lowered: its attributes and dtypes, and its operands as
    ONNX values in the compute dtype."""

    node: Node
    b: Builder
    name: str  # the operation: "Add", "Mean", ...
    attributes: dict
    compute: str  # dtype the operands are cast to
    result: str  # dtype Keras returns

    @property
    def base(self) -> str:
        return self.node.name

    def values(self, items=None) -> list:
        """ONNX names of the operands (or of ``items``), cast to the compute dtype."""
        items = operands(self.node) if items is None else items
        return [self.operand(item, i) for i, item in enumerate(items)]

    def operand(self, item, index: int) -> str:
        if isinstance(item, Tensor):
            return cast(self.b, self.b.value(item), item.dtype, self.compute,
                        f"{self.base}/operand{index}")
        if isinstance(item, (bool, int, float)):
            return self.b.constant(f"{self.base}/constant{index}",
                                   np.asarray(item, dtype=_numpy_dtype(self.compute)))
        raise ConversionError(f"layer {self.base!r}: operand {item!r} of {_label(self.node)} "
                              f"is not supported yet (only tensors and Python numbers)")

    def rank(self) -> int:
        shape = next(t for _, t in self.node.input_tensors()).shape
        if shape is None:
            raise ConversionError(f"layer {self.base!r}: {_label(self.node)} needs the rank "
                                  f"of its input, which the saved model does not give")
        return len(shape)

    def finish(self, name: str) -> str:
        """``name`` (computed in the compute dtype) in the dtype Keras returns."""
        return cast(self.b, name, self.compute, self.result, f"{self.base}/result")


def cast(b: Builder, name: str, source: str, target: str, base: str) -> str:
    return name if source == target else b.op("Cast", [name], base, to=onnx_dtype(target))


def _numpy_dtype(dtype: str):
    try:
        return np.dtype(dtype)
    except TypeError:
        raise ConversionError(f"constants of dtype {dtype!r} cannot be converted yet") from None


def _label(node: Node) -> str:
    if node.class_name == "TFOpLambda":
        return f"operation 'tf.{node.config.get('function')}' (TFOpLambda)"
    return f"operation {node.class_name!r} (keras.ops)"


LOWERINGS = {}


def lowering(*names: str):
    """Register the decorated ``lower(op) -> ONNX name`` (a list of names for operations
    with several outputs) for the operations ``names``."""
    def register(function):
        for name in names:
            LOWERINGS[name] = function
        return function

    return register


# ---------------------------------------------------------------------- elementwise

ARITHMETIC = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div",
              "TrueDivide": "Div", "Power": "Pow", "Maximum": "Max", "Minimum": "Min"}
# These give bool whatever the compute dtype.
COMPARISONS = {"Equal": "Equal", "Greater": "Greater", "GreaterEqual": "GreaterOrEqual",
               "Less": "Less", "LessEqual": "LessOrEqual", "LogicalAnd": "And",
               "LogicalOr": "Or", "LogicalNot": "Not"}
UNARY = {"Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Tanh": "Tanh", "Sigmoid": "Sigmoid",
         "Relu": "Relu", "Abs": "Abs", "Absolute": "Abs", "Negative": "Neg", "Erf": "Erf",
         "Sin": "Sin", "Cos": "Cos"}


@lowering(*ARITHMETIC)
def arithmetic(op: _Operation) -> str:
    """x1 <op> x2 with NumPy broadcasting."""
    return op.finish(op.b.op(ARITHMETIC[op.name], op.values(), op.base))


@lowering(*COMPARISONS)
def comparison(op: _Operation) -> str:
    """x1 <op> x2 (or not x) as bool, NumPy broadcasting."""
    return op.b.op(COMPARISONS[op.name], op.values(), op.base)


@lowering(*UNARY)
def unary(op: _Operation) -> str:
    """The ONNX op of the same function, elementwise."""
    (x,) = op.values()
    return op.finish(op.b.op(UNARY[op.name], [x], op.base))


@lowering("NotEqual")
def not_equal(op: _Operation) -> str:
    """not (x1 == x2)."""
    return op.b.op("Not", [op.b.op("Equal", op.values(), f"{op.base}/equal")], op.base)


@lowering("Square")
def square(op: _Operation) -> str:
    """x * x."""
    (x,) = op.values()
    return op.finish(op.b.op("Mul", [x, x], op.base))


@lowering("Rsqrt")
def rsqrt(op: _Operation) -> str:
    """1 / sqrt(x)."""
    (x,) = op.values()
    return op.finish(op.b.op("Reciprocal", [op.b.op("Sqrt", [x], f"{op.base}/sqrt")],
                             op.base))


@lowering("Mod")
def mod(op: _Operation) -> str:
    """Floor modulo, the sign of the divisor (TF floormod): integers directly; floats as
    r = fmod(x1, x2), plus x2 where r is non-zero and its sign differs from x2's."""
    x1, x2 = op.values()
    b, base = op.b, op.base
    if op.compute not in FLOATS:
        return op.finish(b.op("Mod", [x1, x2], base, fmod=0))
    remainder = b.op("Mod", [x1, x2], f"{base}/fmod", fmod=1)
    zero = b.constant(f"{base}/zero", np.zeros((), _numpy_dtype(op.compute)))
    signs_differ = b.op("Xor", [b.op("Less", [remainder, zero], f"{base}/negative"),
                                b.op("Less", [x2, zero], f"{base}/divisor_negative")],
                        f"{base}/signs_differ")
    nonzero = b.op("Not", [b.op("Equal", [remainder, zero], f"{base}/is_zero")],
                   f"{base}/nonzero")
    adjust = b.op("And", [signs_differ, nonzero], f"{base}/adjust")
    shifted = b.op("Add", [remainder, x2], f"{base}/shifted")
    return op.finish(b.op("Where", [adjust, shifted, remainder], base))


@lowering("FloorDivide")
def floor_divide(op: _Operation) -> str:
    """floor(x1 / x2): Floor(Div) for floats; (x1 - floormod(x1, x2)) / x2 for integers
    (exact, where ONNX's integer Div truncates)."""
    x1, x2 = op.values()
    b, base = op.b, op.base
    if op.compute in FLOATS:
        return op.finish(b.op("Floor", [b.op("Div", [x1, x2], f"{base}/div")], base))
    remainder = b.op("Mod", [x1, x2], f"{base}/mod", fmod=0)
    return op.finish(b.op("Div", [b.op("Sub", [x1, remainder], f"{base}/multiple"), x2],
                          base))


@lowering("Gelu", "Silu")
def activation(op: _Operation) -> str:
    """The Keras activation function of that name (gelu's ``approximate`` passed on)."""
    (x,) = op.values()
    options = {k: bool(v) for k, v in op.attributes.items() if k == "approximate"}
    return op.finish(apply_activation(op.b, x, op.name.lower(), op.base,
                                      op.node.layer.dialect, **options))


@lowering("Softmax", "LogSoftmax")
def softmax(op: _Operation) -> str:
    """exp(x) / sum(exp(x)) along ``axis`` (log of it for LogSoftmax); axis None: over
    every element of the tensor, batch included (Keras 3)."""
    (x,) = op.values()
    b, base = op.b, op.base
    onnx_op = "Softmax" if op.name == "Softmax" else "LogSoftmax"
    axis = op.attributes.get("axis", -1)
    if axis is not None:
        return op.finish(b.op(onnx_op, [x], base, axis=axis))
    flat = b.op("Reshape", [x, b.ints(f"{base}/flat_shape", [-1])], f"{base}/flat")
    result = b.op(onnx_op, [flat], f"{base}/flat_{onnx_op.lower()}", axis=-1)
    shape = b.op("Shape", [x], f"{base}/shape")
    return op.finish(b.op("Reshape", [result, shape], base))


# ---------------------------------------------------------------------- reductions

REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin",
          "Prod": "ReduceProd", "Any": "ReduceMax", "All": "ReduceMin"}


@lowering(*REDUCE)
def reduce(op: _Operation) -> str:
    """Reduce over ``axis`` (every axis when None), keeping reduced axes with ``keepdims``.
    Booleans (Any, All, and Keras 3's Max / Min of bool) reduce as int32 max / min."""
    (x,) = op.values()
    axes = as_axes(op.attributes.get("axis"), op.rank())
    if not axes:  # an empty axis list reduces nothing
        return op.finish(x)
    keepdims = int(bool(op.attributes.get("keepdims", False)))
    if op.compute != "bool":
        return op.finish(op.b.reduce(REDUCE[op.name], x, axes, op.base, keepdims))
    as_int = op.b.op("Cast", [x], f"{op.base}/as_int", to=onnx_dtype("int32"))
    reduced = op.b.reduce(REDUCE[op.name], as_int, axes, f"{op.base}/reduce", keepdims)
    return op.b.op("Cast", [reduced], op.base, to=onnx_dtype("bool"))


# ---------------------------------------------------------------------- structure


@lowering("Cast")
def cast_operation(op: _Operation) -> str:
    """x in ``dtype`` (floats to integers truncate toward zero, non-zero is True)."""
    (x,) = op.values()
    return op.finish(x)


@lowering("Matmul")
def matmul(op: _Operation) -> str:
    """x1 @ x2 over the last two axes (each transposed first with TF's transpose_a /
    transpose_b), batch axes broadcast."""
    values = []
    for value, item, side in zip(op.values(), operands(op.node), "ab"):
        if op.attributes.get(f"transpose_{side}"):
            rank = item.rank
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            value = op.b.op("Transpose", [value], f"{op.base}/transpose_{side}", perm=perm)
        values.append(value)
    return op.finish(op.b.op("MatMul", values, op.base))


@lowering("Transpose")
def transpose(op: _Operation) -> str:
    """Axes permuted by ``axes`` (reversed when None)."""
    (x,) = op.values()
    perm = op.attributes.get("axes") or list(reversed(range(op.rank())))
    return op.finish(op.b.op("Transpose", [x], op.base, perm=list(perm)))


@lowering("Reshape")
def reshape(op: _Operation) -> str:
    """x reshaped to ``newshape`` (batch axis included, -1 inferred)."""
    if "newshape" not in op.attributes:
        raise ConversionError(f"layer {op.base!r}: {_label(op.node)} with a shape computed "
                              f"from tensors is not supported yet")
    (x,) = op.values()
    shape = op.b.ints(f"{op.base}/shape", list(op.attributes["newshape"]))
    return op.finish(op.b.op("Reshape", [x, shape], op.base))


@lowering("ExpandDims")
def expand_dims(op: _Operation) -> str:
    """x with new size-1 axes at ``axis`` (counted in the output)."""
    (x,) = op.values()
    axes = expand_axes(op.attributes.get("axis", -1), op.rank())
    return op.finish(op.b.op("Unsqueeze", [x, op.b.ints(f"{op.base}/axes", axes)], op.base))


@lowering("Squeeze")
def squeeze(op: _Operation) -> str:
    """x without its size-1 axes ``axis``."""
    axis = op.attributes.get("axis")
    if axis is None:
        raise ConversionError(f"layer {op.base!r}: {_label(op.node)} without an axis drops "
                              f"whichever axes have size 1 at run time (the batch axis too); "
                              f"not supported, pass axis=")
    (x,) = op.values()
    axes = as_axes(axis, op.rank())
    return op.finish(op.b.op("Squeeze", [x, op.b.ints(f"{op.base}/axes", axes)], op.base))


@lowering("Concatenate")
def concatenate(op: _Operation) -> str:
    """The tensors joined along ``axis`` (default 0, Keras 3's)."""
    values = op.values(operands(op.node)[0])
    return op.finish(op.b.op("Concat", values, op.base, axis=op.attributes.get("axis", 0)))


@lowering("TakeAlongAxis")
def take_along_axis(op: _Operation) -> str:
    """x's values at ``indices`` along ``axis`` (NumPy's take_along_axis): both broadcast
    to their common shape on the other axes, negative indices counted from the end."""
    axis = op.attributes.get("axis")
    if axis is None:
        raise ConversionError(f"layer {op.base!r}: {_label(op.node)} without an axis (on the "
                              f"flattened tensor) is not supported yet")
    values, indices = operands(op.node)
    x, index = op.operand(values, 0), op.b.value(indices)
    rank = op.rank()
    axis = axis + rank if axis < 0 else axis
    shapes = [op.b.op("Shape", [v], f"{op.base}/shape{i}") for i, v in enumerate((x, index))]
    common = op.b.op("Max", shapes, f"{op.base}/common_shape")
    on_axis = op.b.constant(f"{op.base}/on_axis", np.arange(rank) == axis)
    x, index = (op.b.op("Expand", [v, op.b.op("Where", [on_axis, shape, common],
                                              f"{op.base}/target{i}")], f"{op.base}/broadcast{i}")
                for i, (v, shape) in enumerate(zip((x, index), shapes)))
    return op.finish(op.b.op("GatherElements", [x, index], op.base, axis=axis))


@lowering("FFT2")
def fft2(op: _Operation) -> list:
    """(real, imaginary) of the 2-D discrete Fourier transform over the last two axes of
    real + i imaginary (a Python number broadcasts): ONNX's DFT on each axis in turn."""
    real_item, imaginary_item = operands(op.node)[0]
    real, imaginary = op.values([real_item, imaginary_item])
    if not isinstance(imaginary_item, Tensor):
        imaginary = op.b.op("Expand", [imaginary, op.b.op("Shape", [real],
                                                          f"{op.base}/shape")],
                            f"{op.base}/imaginary")
    rank = op.rank()
    parts = [op.b.op("Unsqueeze", [v, op.b.ints(f"{op.base}/part{i}_axis", [-1])],
                     f"{op.base}/part{i}") for i, v in enumerate((real, imaginary))]
    spectrum = op.b.op("Concat", parts, f"{op.base}/complex", axis=-1)
    for axis in (rank - 1, rank - 2):
        if op.b.opset >= 20:  # the axis became an input
            spectrum = op.b.op("DFT", [spectrum, None, op.b.constant(
                f"{op.base}/axis{axis}", np.int64(axis))], f"{op.base}/dft{axis}")
        else:
            spectrum = op.b.op("DFT", [spectrum], f"{op.base}/dft{axis}", axis=axis)
    real, imaginary = op.b.op("Split", [spectrum, op.b.ints(f"{op.base}/halves", [1, 1])],
                              f"{op.base}/split", outputs=2, axis=-1)
    return [op.finish(op.b.op("Squeeze", [v, op.b.ints(f"{op.base}/last{i}", [-1])],
                              f"{op.base}/{part}"))
            for i, (v, part) in enumerate(((real, "real"), (imaginary, "imaginary")))]


# ---------------------------------------------------------------------- the emitter


@emits(*LOWERINGS, "TFOpLambda")
def tensor_operation(node: Node, b: Builder) -> list:
    """One tensor operation, lowered by its operation name."""
    name, attributes = operation(node)
    extra = unsupported_arguments(node)
    if extra:
        listed = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        raise ConversionError(f"layer {node.name!r}: {_label(node)} with {listed} is not "
                              f"supported yet")
    compute, result = operation_dtypes(node)
    lowered = LOWERINGS[name](_Operation(node, b, name, attributes, compute, result))
    return lowered if isinstance(lowered, list) else [lowered]
