"""Emitters for tensor operations: Keras 3 ``keras.ops`` nodes (``x[...]`` included) and
Keras 2 ``TFOpLambda`` / ``SlicingOpLambda`` layers, lowered by operation name (``layers/operations.py`` reads both dialects into one
operation with attributes).

Every operand is first brought to the dtype the dialect computes in (``operation_dtypes``):
tensors by a Cast when they differ, Python constants folded as initializers of that dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConversionError
from ..ir import Node, Tensor
from ..layers.operations import (FLOATS, TF_LAYERS, as_axes, constant_value, expand_axes,
                                 expand_key, index_key, operands, operation,
                                 operation_dtypes, parse_einsum, split_pieces, tile_repeats,
                                 unsupported_arguments)
from ..layers.registry import normalize_axis
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
        array = constant_value(item)
        if isinstance(item, (bool, int, float)) or array is not None:
            return self.b.constant(f"{self.base}/constant{index}",
                                   np.asarray(item if array is None else array,
                                              dtype=_numpy_dtype(self.compute)))
        raise ConversionError(f"layer {self.base!r}: operand {item!r} of {_label(self.node)} "
                              f"is not supported yet (only tensors and Python numbers)")

    def rank(self) -> int:
        return len(self.shape())

    def shape(self, tensor: Tensor = None) -> tuple:
        """The static shape (None for unknown dims) of ``tensor``, by default the first
        input tensor (a mask, when a composite applies the op to one); its rank must be
        known."""
        tensor = tensor or next(t for _, t in self.node.input_tensors())
        if tensor.shape is None:
            raise ConversionError(f"layer {self.base!r}: {_label(self.node)} needs the rank "
                                  f"of its input, which the saved model does not give")
        return tensor.shape

    def first(self) -> str:
        """The first operand, in the compute dtype."""
        return self.operand(operands(self.node)[0], 0)

    def refuse(self, what: str) -> ConversionError:
        return ConversionError(f"layer {self.base!r}: {_label(self.node)} {what}")

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
    if node.class_name in TF_LAYERS:
        return f"operation 'tf.{node.config.get('function')}' ({node.class_name})"
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


@lowering("Normalize")
def normalize(op: _Operation) -> str:
    """Keras 3's L2 normalization along ``axis``: x * min(rsqrt(sum(x², axis)), 1 /
    epsilon) (epsilon by default Keras' 1e-7), the sum's axes kept."""
    if op.attributes.get("order", 2) != 2:
        raise op.refuse(f"with order={op.attributes['order']!r} is not supported yet "
                        f"(only 2)")
    (x,) = op.values()
    b, base = op.b, op.base
    epsilon = op.attributes.get("epsilon")
    squares = b.reduce("ReduceSum", b.op("Mul", [x, x], f"{base}/square"),
                       as_axes(op.attributes.get("axis", -1), op.rank()), f"{base}/sum")
    inverse = b.op("Reciprocal", [b.op("Sqrt", [squares], f"{base}/norm")],
                   f"{base}/inverse_norm")
    bound = b.constant(f"{base}/bound", np.asarray(1.0 / (1e-7 if epsilon is None
                                                           else epsilon),
                                                   _numpy_dtype(op.compute)))
    return op.finish(b.op("Mul", [x, b.op("Min", [inverse, bound], f"{base}/clamped")],
                          base))


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
    """x without its size-1 axes ``axis``; without an axis, every axis whose size is 1 at
    run time, as TF's squeeze (the batch axis too when the batch has one row)."""
    (x,) = op.values()
    axis = op.attributes.get("axis")
    if axis is None:
        return op.finish(op.b.op("Squeeze", [x], op.base))
    axes = as_axes(axis, op.rank())
    return op.finish(op.b.op("Squeeze", [x, op.b.ints(f"{op.base}/axes", axes)], op.base))


@lowering("Concatenate")
def concatenate(op: _Operation) -> str:
    """The tensors joined along ``axis`` (default 0, Keras 3's)."""
    values = op.values(operands(op.node)[0])
    return op.finish(op.b.op("Concat", values, op.base, axis=op.attributes.get("axis", 0)))


@lowering("Stack")
def stack(op: _Operation) -> str:
    """The tensors joined along a new axis ``axis``: each unsqueezed there, concatenated."""
    items = operands(op.node)[0]
    axis = normalize_axis(op.attributes.get("axis", 0), op.rank() + 1)
    axes = op.b.ints(f"{op.base}/axes", [axis])
    values = [op.b.op("Unsqueeze", [value, axes], f"{op.base}/unsqueeze{i}")
              for i, value in enumerate(op.values(items))]
    return op.finish(op.b.op("Concat", values, op.base, axis=axis))


@lowering("Where")
def where(op: _Operation) -> str:
    """x1 where the condition is true (non-zero), else x2, broadcast together."""
    items = operands(op.node)
    if len(items) != 3:
        raise op.refuse("with only a condition (the indices of its true elements, whose "
                        "count depends on the data) is not supported; pass x1 and x2")
    condition = items[0]
    if not isinstance(condition, Tensor):
        raise op.refuse("with a constant condition is not supported yet")
    flag = cast(op.b, op.b.value(condition), condition.dtype, "bool", f"{op.base}/condition")
    return op.finish(op.b.op("Where", [flag, *op.values(items[1:])], op.base))


@lowering("Tile")
def tile(op: _Operation) -> str:
    """x repeated ``repeats`` times along each axis (NumPy's rule: repeats padded with
    leading 1s, or x given leading size-1 axes when repeats is longer)."""
    x, rank = op.first(), op.rank()
    repeats = tile_repeats(op.attributes["repeats"], rank)
    if len(repeats) > rank:
        x = op.b.op("Unsqueeze", [x, op.b.ints(f"{op.base}/axes",
                                               list(range(len(repeats) - rank)))],
                    f"{op.base}/unsqueeze")
    return op.finish(op.b.op("Tile", [x, op.b.ints(f"{op.base}/repeats", repeats)], op.base))


@lowering("Cumsum")
def cumsum(op: _Operation) -> str:
    """Running sum along ``axis`` (of the flattened x when None); TF's ``exclusive`` and
    ``reverse``. Booleans sum as int32."""
    x, b, base = op.first(), op.b, op.base
    axis = op.attributes.get("axis")
    if axis is None:
        x, axis = b.op("Reshape", [x, b.ints(f"{base}/flat_shape", [-1])], f"{base}/flat"), 0
    return op.finish(b.op("CumSum", [x, b.ints(f"{base}/axis", axis)], base,
                          exclusive=int(bool(op.attributes.get("exclusive"))),
                          reverse=int(bool(op.attributes.get("reverse")))))


# ---------------------------------------------------------------------- indexing

INT64_MAX, INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def slice_axes(b: Builder, x: str, starts: list, ends: list, axes: list, steps: list,
               base: str) -> str:
    """ONNX Slice (NumPy clamping of out-of-range bounds); x itself when nothing is cut.
    Bounds are ints, or ONNX names of 1-element int64 values computed at run time."""
    if not axes:
        return x
    return b.op("Slice", [x, _index_vector(b, starts, f"{base}/starts"),
                          _index_vector(b, ends, f"{base}/ends"), b.ints(f"{base}/axes", axes),
                          _index_vector(b, steps, f"{base}/steps")], base)


def _index_vector(b: Builder, values: list, base: str) -> str:
    if all(isinstance(v, (int, np.integer)) for v in values):
        return b.ints(base, values)
    parts = [b.ints(f"{base}/{i}", [v]) if not isinstance(v, str) else v
             for i, v in enumerate(values)]
    return b.op("Concat", parts, base, axis=0)


@lowering("GetItem")
def get_item(op: _Operation) -> str:
    """x[key], NumPy basic indexing: every int and slice in one Slice (negative bounds count
    from the end; an omitted bound of a negative step starts at the last element and runs
    through the first), then the int axes squeezed and the None (newaxis) axes inserted.
    Ints and bounds held in scalar tensors (Keras 2) feed the Slice at run time."""
    b, base = op.b, op.base
    try:
        items = expand_key(index_key(op.attributes.get("key"), op.node.inputs), op.rank())
    except ValueError as exc:
        raise op.refuse(f"with the index {exc} is not supported (only ints, slices with int "
                        f"bounds, None and Ellipsis)") from None
    starts, ends, axes, steps, squeezed, inserted = [], [], [], [], [], []
    axis = position = 0  # the input axis, the output axis
    for item in items:
        if item is None:
            inserted.append(position)
            position += 1
            continue
        if not isinstance(item, slice):  # an index: [i, i + 1), squeezed
            index = _dynamic_bound(op, item, f"{base}/index{axis}")
            starts.append(index)
            ends.append(_next_index(op, item, index, f"{base}/index{axis}"))
            steps.append(1)
            axes.append(axis)
            squeezed.append(axis)
        else:
            position += 1
            start, stop, step = (_dynamic_bound(op, v, f"{base}/{name}{axis}") for v, name in
                                 zip((item.start, item.stop, item.step),
                                     ("start", "stop", "step")))
            step = 1 if step is None else step
            backwards = isinstance(step, int) and step < 0
            if isinstance(step, str) and (start is None or stop is None):
                raise op.refuse("with an omitted slice bound and a step held in a tensor is "
                                "not supported")
            if (start, stop, step) != (None, None, 1):
                starts.append(start if start is not None else INT64_MAX if backwards else 0)
                ends.append(stop if stop is not None else INT64_MIN if backwards
                            else INT64_MAX)
                steps.append(step)
                axes.append(axis)
        axis += 1
    x = slice_axes(b, op.first(), starts, ends, axes, steps, f"{base}/slice")
    if squeezed:
        x = b.op("Squeeze", [x, b.ints(f"{base}/squeeze_axes", squeezed)], f"{base}/squeeze")
    if inserted:
        x = b.op("Unsqueeze", [x, b.ints(f"{base}/new_axes", inserted)], f"{base}/unsqueeze")
    return x


def _dynamic_bound(op: _Operation, value, base: str):
    """An index or slice bound: an int or None as it is; a scalar tensor as the ONNX name
    of its value as a 1-element int64."""
    if not isinstance(value, Tensor):
        return value
    wide = cast(op.b, op.b.value(value), value.dtype, "int64", f"{base}/int64")
    return op.b.op("Reshape", [wide, op.b.ints(f"{base}/one", [1])], base)


def _next_index(op: _Operation, item, index, base: str):
    """The end of the one-element slice at ``index``: index + 1, except for -1 (the last
    element), whose slice runs to the end."""
    if isinstance(item, int):
        return INT64_MAX if item == -1 else item + 1
    b = op.b
    last = b.op("Equal", [index, b.ints(f"{base}/minus_one", [-1])], f"{base}/is_last")
    following = b.op("Add", [index, b.ints(f"{base}/step", [1])], f"{base}/next")
    return b.op("Where", [last, b.ints(f"{base}/to_end", [INT64_MAX]), following],
                f"{base}/end")


@lowering("Slice")
def slice_operation(op: _Operation) -> str:
    """x[start_indices[i] : start_indices[i] + shape[i]] on every axis (size -1: to the
    end, TF's rule)."""
    starts, sizes = op.attributes.get("start_indices"), op.attributes.get("shape")
    if not all(isinstance(v, list) and all(isinstance(i, int) for i in v)
               for v in (starts, sizes)):
        raise op.refuse("with start indices or sizes computed from tensors is not "
                        "supported yet")
    ends = [INT64_MAX if size == -1 else start + size for start, size in zip(starts, sizes)]
    return slice_axes(op.b, op.first(), starts, ends, list(range(len(starts))),
                      [1] * len(starts), op.base)


def _indices(op: _Operation, item) -> tuple:
    """Indices (a tensor, a Python int or list, a saved constant) as (int ONNX value,
    its dtype)."""
    if isinstance(item, Tensor):
        if item.dtype in ("int32", "int64"):
            return op.b.value(item), item.dtype
        return cast(op.b, op.b.value(item), item.dtype, "int64", f"{op.base}/indices"), "int64"
    array = constant_value(item)
    return op.b.ints(f"{op.base}/indices", item if array is None else array), "int64"


@lowering("Take")
def take(op: _Operation) -> str:
    """Elements of x at ``indices`` along ``axis`` (of the flattened x when None); negative
    indices count from the end, as Keras fixes them. TF's ``batch_dims`` (the leading axes
    indices and x share) with ``axis == batch_dims``: GatherND on indices[..., None]."""
    b, base = op.b, op.base
    x, (indices, dtype) = op.first(), _indices(op, operands(op.node)[1])
    axis, batch_dims = op.attributes.get("axis"), op.attributes.get("batch_dims") or 0
    if axis is None:
        x, axis = b.op("Reshape", [x, b.ints(f"{base}/flat_shape", [-1])], f"{base}/flat"), 0
    if not batch_dims:
        return b.op("Gather", [x, indices], base, axis=axis)
    if normalize_axis(axis, op.rank()) != batch_dims:
        raise op.refuse(f"with batch_dims={batch_dims} and axis={axis} is not supported "
                        f"yet (only axis equal to batch_dims)")
    wide = cast(b, indices, dtype, "int64", f"{base}/indices64")
    column = b.op("Unsqueeze", [wide, b.ints(f"{base}/last", [-1])], f"{base}/index_column")
    return b.op("GatherND", [x, column], base, batch_dims=batch_dims)


@lowering("Split")
def split(op: _Operation) -> list:
    """x cut along ``axis`` into pieces (equal sections, or at the given indices / into
    the given sizes): one Split when every size is known, else one Slice per piece
    (bounds after an open-ended piece count from the end); equal sections of an unknown
    dim: Split's num_outputs (opset 18+), or sizes computed from the run-time shape."""
    b, base = op.b, op.base
    x, shape = op.first(), op.shape()
    axis = normalize_axis(op.attributes.get("axis", 0), len(shape))
    try:
        pieces = split_pieces(op.attributes, shape[axis])
    except ValueError as exc:
        raise op.refuse(f"cannot split: {exc}") from None
    count = len(pieces)
    if all(size is not None for _, _, size in pieces):
        sizes = b.ints(f"{base}/sizes", [size for _, _, size in pieces])
        return _as_list(b.op("Split", [x, sizes], base, outputs=count, axis=axis))
    if all(start is not None for start, _, _ in pieces):
        return [slice_axes(b, x, [start], [INT64_MAX if stop is None else stop], [axis], [1],
                           base) for start, stop, _ in pieces]
    if b.opset >= 18:
        return _as_list(b.op("Split", [x], base, outputs=count, axis=axis,
                             num_outputs=count))
    dim = b.op("Gather", [b.op("Shape", [x], f"{base}/shape"),
                          b.ints(f"{base}/axis", [axis])], f"{base}/dim")
    size = b.op("Div", [dim, b.ints(f"{base}/count", [count])], f"{base}/size")
    sizes = b.op("Expand", [size, b.ints(f"{base}/count_shape", [count])], f"{base}/sizes")
    return _as_list(b.op("Split", [x, sizes], base, outputs=count, axis=axis))


def _as_list(names) -> list:
    return names if isinstance(names, list) else [names]


@lowering("Repeat")
def repeat(op: _Operation) -> str:
    """Each element of x repeated ``repeats`` times in place along ``axis`` (of the
    flattened x when None), NumPy's repeat. A known dim: one Gather of the repeated
    positions; an unknown one: a new axis tiled ``repeats`` times, merged back."""
    b, base = op.b, op.base
    x, shape = op.first(), op.shape()
    axis, repeats = op.attributes.get("axis"), op.attributes["repeats"]
    if axis is None:
        x, shape = b.op("Reshape", [x, b.ints(f"{base}/flat_shape", [-1])], f"{base}/flat"), (
            None if None in shape else int(np.prod(shape)),)
        axis = 0
    axis = normalize_axis(axis, len(shape))
    counts = repeats if isinstance(repeats, list) else [repeats]
    if shape[axis] is not None:
        positions = np.repeat(np.arange(shape[axis]), counts if len(counts) > 1 else counts[0])
        return b.op("Gather", [x, b.ints(f"{base}/positions", positions)], base, axis=axis)
    if len(counts) > 1:
        raise op.refuse("with one count per element on an axis of unknown size is not "
                        "supported")
    grown = b.op("Unsqueeze", [x, b.ints(f"{base}/new_axis", [axis + 1])], f"{base}/unsqueeze")
    tiles = [1] * (len(shape) + 1)
    tiles[axis + 1] = counts[0]
    tiled = b.op("Tile", [grown, b.ints(f"{base}/tiles", tiles)], f"{base}/tile")
    rest = shape[axis + 1:]
    if None not in rest:
        target = b.ints(f"{base}/shape", [0] * axis + [-1] + list(rest))
    else:
        dims = b.op("Shape", [x], f"{base}/input_shape")
        target = b.op("Concat", [
            slice_axes(b, dims, [0], [axis], [0], [1], f"{base}/leading"),
            b.ints(f"{base}/merged", [-1]),
            slice_axes(b, dims, [axis + 1], [INT64_MAX], [0], [1], f"{base}/trailing")],
            f"{base}/shape", axis=0)
    return b.op("Reshape", [tiled, target], base)


@lowering("Pad")
def pad(op: _Operation) -> str:
    """keras.ops.pad in "constant" mode: x grown by ``pad_width`` (a (before, after) pair
    per axis), the new elements ``constant_values`` (0 when None)."""
    widths, rank = op.attributes["pad_width"], op.rank()
    if op.attributes.get("mode", "constant") != "constant":
        raise op.refuse(f"with mode={op.attributes['mode']!r} is not supported yet (only "
                        f"'constant')")
    if len(widths) != rank or any(len(w) != 2 for w in widths):
        raise op.refuse(f"with pad_width={widths!r} is not supported yet (only one (before, "
                        f"after) pair per axis)")
    fill = op.node.arguments.get("constant_values")
    if isinstance(fill, Tensor):
        raise op.refuse("with tensor constant_values is not supported yet")
    pads = op.b.ints(f"{op.base}/pads", [w[0] for w in widths] + [w[1] for w in widths])
    value = op.operand(0 if fill is None else fill, 1)
    return op.finish(op.b.op("Pad", [op.first(), pads, value], op.base, mode="constant"))


# ---------------------------------------------------------------------- einsum


@lowering("Einsum")
def einsum(op: _Operation) -> str:
    """Einstein summation of one or two operands, lowered to ReduceSum / Transpose /
    MatMul (never ONNX's Einsum). Letters only one operand has and the output lacks are
    summed first. Then, for two operands: the letters both keep (batch) and the letters
    only one keeps, except its last, lead; each operand is transposed to [lead, row,
    contracted], its contracted letters merged into one axis (a size-1 axis stands in for
    a missing row or contraction, and for the lead letters only the other operand has),
    and a @ b^T gives [lead, row a, row b], transposed to the output's order."""
    items = operands(op.node)
    if not all(isinstance(item, Tensor) for item in items):
        raise op.refuse("on constants is not supported yet")
    subscripts = op.attributes.get("subscripts", "")
    try:
        inputs, output = parse_einsum(subscripts, [len(op.shape(t)) for t in items])
    except ValueError as exc:
        raise op.refuse(f"{subscripts!r}: {exc}") from None
    letters = "".join(inputs)
    if (len(items) > 2 or any(len(set(s)) != len(s) for s in inputs + [output])
            or not set(output) <= set(letters)):
        raise op.refuse(f"{subscripts!r} cannot be lowered (only one or two operands, "
                        f"each letter at most once per operand and in the output)")
    values = []
    for i, (value, spec) in enumerate(zip(op.values(), inputs)):
        others = "".join(s for j, s in enumerate(inputs) if j != i) + output
        summed = [axis for axis, c in enumerate(spec) if c not in others]
        if summed:
            value = op.b.reduce("ReduceSum", value, summed, f"{op.base}/sum{i}", keepdims=0)
        values.append((value, [c for c in spec if c in others]))
    if len(values) == 1:
        value, spec = values[0]
        return op.finish(_permute(op.b, value, [spec.index(c) for c in output], op.base))
    (a, la), (b_value, lb) = values
    batch = [c for c in la if c in lb and c in output]
    contracted = [c for c in la if c in lb and c not in output]
    left, right = [c for c in la if c not in lb], [c for c in lb if c not in la]
    lead = batch + left[:-1] + right[:-1]
    a = _matmul_operand(op, a, la, lead, left[-1:], contracted, "a")
    b_value = _matmul_operand(op, b_value, lb, lead, right[-1:], contracted, "b")
    rows = len(lead)
    b_value = _permute(op.b, b_value, list(range(rows)) + [rows + 1, rows], f"{op.base}/b_t")
    product = op.b.op("MatMul", [a, b_value], f"{op.base}/matmul")
    placeholders = [rows + i for i, row in enumerate((left, right)) if not row]
    if placeholders:
        product = op.b.op("Squeeze", [product, op.b.ints(f"{op.base}/rows", placeholders)],
                          f"{op.base}/squeeze")
    result = lead + left[-1:] + right[-1:]
    return op.finish(_permute(op.b, product, [result.index(c) for c in output], op.base))


def _matmul_operand(op: _Operation, x: str, spec: list, lead: list, row: list,
                    contracted: list, side: str) -> str:
    """One einsum operand as [lead (size 1 where it lacks the letter), row or 1, the
    contracted letters merged or 1] for MatMul."""
    b, base = op.b, f"{op.base}/{side}"
    present = [c for c in lead if c in spec]
    order = present + row + contracted
    x = _permute(b, x, [spec.index(c) for c in order], f"{base}/transpose")
    if len(contracted) > 1:
        x = b.op("Reshape", [x, b.ints(f"{base}/merge_shape",
                                       [0] * (len(present) + len(row)) + [-1])],
                 f"{base}/merge")
    new_axes = [i for i, c in enumerate(lead) if c not in spec]
    rank = len(lead) + 2
    if not row:
        new_axes.append(rank - 2)
    if not contracted:
        new_axes.append(rank - 1)
    if new_axes:
        x = b.op("Unsqueeze", [x, b.ints(f"{base}/new_axes", sorted(new_axes))],
                 f"{base}/unsqueeze")
    return x


def _permute(b: Builder, x: str, perm: list, base: str) -> str:
    return x if perm == sorted(perm) else b.op("Transpose", [x], base, perm=perm)


# ---------------------------------------------------------------------- Keras 2 shapes


@lowering("Shape")
def shape(op: _Operation) -> str:
    """tf.shape(x): the run-time dims, in ``out_type`` (int32 by default)."""
    x = op.b.value(operands(op.node)[0])
    return op.finish(op.b.op("Shape", [x], f"{op.base}/shape"))


@lowering("Range")
def range_operation(op: _Operation) -> str:
    """tf.range(start, limit, delta) (``tf.range(n)``: 0 to n), scalars in its dtype."""
    values = {**op.node.arguments, **op.node.inputs}
    start, limit, delta = values.get("arg0"), values.get("limit"), values.get("delta", 1)
    if limit is None:
        start, limit = 0, start
    bounds = []
    for i, item in enumerate((start, limit, delta)):
        value = op.operand(item, i)
        if isinstance(item, Tensor) and item.rank:
            value = op.b.op("Squeeze", [value], f"{op.base}/scalar{i}")
        bounds.append(value)
    return op.finish(op.b.op("Range", bounds, op.base))


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


@emits(*LOWERINGS, *TF_LAYERS)
def tensor_operation(node: Node, b: Builder) -> list:
    """One tensor operation, lowered by its operation name."""
    name, attributes = operation(node)
    extra = unsupported_arguments(node)
    if extra:
        listed = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        raise ConversionError(f"layer {node.name!r}: {_label(node)} with {listed} is not "
                              f"supported yet")
    compute, result = operation_dtypes(node)
    names = LOWERINGS[name](_Operation(node, b, name, attributes, compute, result))
    return names if isinstance(names, list) else [names]
