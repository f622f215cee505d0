"""Raw tensor operations inside functional models: Keras 3 ``keras.src.ops.*`` operation
nodes and Keras 2 ``TFOpLambda`` layers (``tf.math.add(x, y)`` on Keras tensors).

Both are read as one OPERATION (a Keras 3 op class name such as ``Add`` or ``Matmul``) with
ATTRIBUTES (``axis``, ``axes``, ``newshape``, ``keepdims``, ``dtype``, ``transpose_a``,
``transpose_b``, ``approximate``), so later stages handle ``keras.ops.mean(x, axis=-1)`` and
``tf.reduce_mean(x, axis=-1)`` alike. Tensor arguments have the roles ``arg0``, ``arg1``, ...
(or their keyword names); ``operands(node)`` lists tensors and constants in call order.

Dtypes follow each dialect: Keras 2 runs TF ops, which convert Python constants to the
tensor's dtype; Keras 3 promotes like ``keras.backend.result_type`` (Python scalars are
"weak" in arithmetic, and several ops compute in float: see ``operation_dtypes``).
"""
from __future__ import annotations

from typing import Optional

from ..ir import Tensor
from .registry import broadcast_shapes, layer_kind, no_mask, normalize_axis

ARITHMETIC = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Power", "Maximum",
              "Minimum", "Mod", "FloorDivide"}
COMPARISONS = {"NotEqual", "Equal", "Greater", "GreaterEqual", "Less", "LessEqual"}
LOGICAL = {"LogicalAnd", "LogicalOr", "LogicalNot"}
# Unary ops that compute in float (Keras 3 casts integer inputs to float32 first).
FLOAT_UNARY = {"Exp", "Log", "Sqrt", "Rsqrt", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
               "Erf", "Sin", "Cos", "Gelu", "Silu"}
SAME_DTYPE_UNARY = {"Relu", "Abs", "Absolute", "Negative", "Square"}
REDUCTIONS = {"Mean", "Sum", "Max", "Min", "Prod", "Any", "All"}
STRUCTURAL = {"Cast", "Matmul", "Transpose", "Reshape", "ExpandDims", "Squeeze",
              "Concatenate", "TakeAlongAxis"}
# (real, imaginary) in, (real, imaginary) out: the 2-D Fourier transform of the last two axes
SPECTRAL = {"FFT2"}
# Keras 3 arithmetic that treats Python scalars as weak (``x * 2.0`` keeps x's dtype);
# the other ops convert them to int32 / float32 tensors first.
WEAK_SCALAR_OPS = ARITHMETIC - {"Mod"}

# TF function name (TFOpLambda ``config.function``) -> (operation, {TF kwarg: attribute})
_AXIS = {"reduction_indices": "axis", "keep_dims": "keepdims"}
TF_FUNCTIONS = {
    "math.add": ("Add", {}), "__operators__.add": ("Add", {}),
    "math.subtract": ("Subtract", {}), "math.multiply": ("Multiply", {}),
    "math.truediv": ("Divide", {}), "math.divide": ("Divide", {}),
    "math.maximum": ("Maximum", {}), "math.minimum": ("Minimum", {}),
    "math.pow": ("Power", {}), "math.floordiv": ("FloorDivide", {}),
    "compat.v1.floor_div": ("FloorDivide", {}),
    "math.floormod": ("Mod", {}),
    "math.not_equal": ("NotEqual", {}), "math.equal": ("Equal", {}),
    "math.greater": ("Greater", {}), "math.greater_equal": ("GreaterEqual", {}),
    "math.less": ("Less", {}), "math.less_equal": ("LessEqual", {}),
    "math.logical_and": ("LogicalAnd", {}), "math.logical_or": ("LogicalOr", {}),
    "math.logical_not": ("LogicalNot", {}),
    "linalg.matmul": ("Matmul", {"adjoint_a": "transpose_a", "adjoint_b": "transpose_b"}),
    "reshape": ("Reshape", {"shape": "newshape"}),
    "transpose": ("Transpose", {"perm": "axes"}),
    "compat.v1.transpose": ("Transpose", {"perm": "axes"}),
    "expand_dims": ("ExpandDims", {}), "compat.v1.expand_dims": ("ExpandDims", {"dim": "axis"}),
    "squeeze": ("Squeeze", {}), "compat.v1.squeeze": ("Squeeze", {"squeeze_dims": "axis"}),
    "cast": ("Cast", {}), "concat": ("Concatenate", {}),
    "math.reduce_mean": ("Mean", _AXIS), "math.reduce_sum": ("Sum", _AXIS),
    "math.reduce_max": ("Max", _AXIS), "math.reduce_min": ("Min", _AXIS),
    "math.reduce_prod": ("Prod", _AXIS), "math.reduce_any": ("Any", _AXIS),
    "math.reduce_all": ("All", _AXIS),
    "math.sqrt": ("Sqrt", {}), "math.rsqrt": ("Rsqrt", {}), "math.exp": ("Exp", {}),
    "math.log": ("Log", {}), "math.tanh": ("Tanh", {}), "math.sigmoid": ("Sigmoid", {}),
    "math.erf": ("Erf", {}), "math.sin": ("Sin", {}), "math.cos": ("Cos", {}),
    "nn.relu": ("Relu", {}), "math.abs": ("Abs", {}), "math.negative": ("Negative", {}),
    "math.square": ("Square", {}), "nn.softmax": ("Softmax", {}),
    "nn.log_softmax": ("LogSoftmax", {}), "nn.gelu": ("Gelu", {}), "nn.silu": ("Silu", {}),
}
ATTRIBUTE_NAMES = ("axis", "axes", "newshape", "keepdims", "dtype", "transpose_a",
                   "transpose_b", "approximate")
# Keyword names TF functions give their second operand (tf.math.add(x, y), matmul(a, b)).
SECOND_OPERAND_KEYWORDS = ("y", "b")


def operation(node) -> tuple:
    """(operation name, attributes) of a Keras 3 op node or a Keras 2 TFOpLambda, or
    (None, {}) for a TF function we do not know."""
    if node.class_name != "TFOpLambda":
        return node.class_name, {k: v for k, v in node.config.items() if k in ATTRIBUTE_NAMES}
    name, renames = TF_FUNCTIONS.get(node.config.get("function"), (None, {}))
    attributes = {}
    for key, value in node.arguments.items():
        key = renames.get(key, key)
        if key in ATTRIBUTE_NAMES:
            attributes[key] = value
    return name, attributes


def unsupported_arguments(node) -> dict:
    """Call arguments or config entries that ``operation`` does not read and that change
    the result (set to something other than None / False): ``{"initial": 0.0}``."""
    if node.class_name != "TFOpLambda":
        ignored = {"name", *ATTRIBUTE_NAMES}
        values = node.config
    else:
        renames = TF_FUNCTIONS.get(node.config.get("function"), (None, {}))[1]
        ignored = {"name", *ATTRIBUTE_NAMES, *renames, *SECOND_OPERAND_KEYWORDS}
        values = {k: v for k, v in node.arguments.items() if not k.startswith("arg")}
    return {k: v for k, v in values.items()
            if k not in ignored and v is not None and v is not False}


def operands(node) -> list:
    """The positional operands, tensors or constants, in call order, for both dialects:
    ``arg0``, ``arg1``, ... then a TF function's second operand passed by keyword."""
    values = {**node.arguments, **node.inputs}
    ordered = []
    while f"arg{len(ordered)}" in values:
        ordered.append(values[f"arg{len(ordered)}"])
    if node.class_name == "TFOpLambda":
        ordered += [values[k] for k in SECOND_OPERAND_KEYWORDS if k in values]
    return ordered


# ---------------------------------------------------------------------- dtypes

FLOATS = ("bfloat16", "float16", "float32", "float64")


def _bits(dtype: str) -> int:
    return 16 if dtype == "bfloat16" else int("".join(c for c in dtype if c.isdigit()) or 8)


def _category(dtype: str) -> int:
    return 0 if dtype == "bool" else 2 if dtype in FLOATS else 1


def promote(a: str, b: str) -> str:
    """Keras 3's type promotion of two tensor dtypes (the JAX-like lattice): bool < ints
    < floats; within a kind the wider one; float16 with bfloat16 gives float32; a signed
    and an unsigned int give a signed int wide enough for both."""
    if a == b:
        return a
    if _category(a) != _category(b):
        return a if _category(a) > _category(b) else b
    if {a, b} == {"float16", "bfloat16"}:
        return "float32"
    if _category(a) == 1 and a.startswith("u") != b.startswith("u"):
        signed, unsigned = (b, a) if a.startswith("u") else (a, b)
        return f"int{min(64, max(_bits(signed), 2 * _bits(unsigned)))}"
    return a if _bits(a) >= _bits(b) else b


def _scalar_dtype(value, tensor_dtype: str, weak: bool) -> str:
    """The dtype Keras 3 gives a Python scalar operand next to a tensor of ``tensor_dtype``."""
    if isinstance(value, bool):
        return "bool" if not weak else tensor_dtype
    if isinstance(value, int):
        return ("int32" if tensor_dtype == "bool" else tensor_dtype) if weak else "int32"
    return (tensor_dtype if tensor_dtype in FLOATS else "float32") if weak else "float32"


def _float_of(dtype: str) -> str:
    """The float dtype Keras 3 computes an op in when it needs a float."""
    return dtype if dtype in FLOATS else "float32"


def operation_dtypes(node) -> tuple:
    """(dtype the operands are cast to, dtype of the result) of an operation node."""
    name, attributes = operation(node)
    values = operands(node)
    if name in ("Concatenate", "FFT2") and values:
        values = values[0]
    first = next((v.dtype for v in values if isinstance(v, Tensor)), "float32")
    if name in LOGICAL or name in ("Any", "All"):
        return "bool", "bool"
    if name == "Cast":
        return first, str(attributes.get("dtype", first))
    if name == "TakeAlongAxis":  # values keep their dtype, indices are not cast
        return first, first
    if name in SPECTRAL:
        return "float32", "float32"
    if name == "Prod" and attributes.get("dtype"):  # keras.ops.prod(x, dtype=...)
        return str(attributes["dtype"]), str(attributes["dtype"])
    if name in COMPARISONS:
        return (first if node.layer.dialect == "keras2" else _joined(name, first, values),
                "bool")
    if node.layer.dialect == "keras2":
        return _keras2_dtypes(name, first)
    joined = _joined(name, first, values)
    if name in ("Divide", "TrueDivide") or name in FLOAT_UNARY:
        compute = "float32" if joined == "int64" else _float_of(joined)
        return compute, compute
    if name == "Mod" and joined == "bool":
        return "int32", "int32"
    if name == "Matmul":
        return _float_of(joined), joined
    if name == "Mean":
        return ("float32", _float_of(joined)) if joined not in ("float64", "float32") else (
            joined, joined)
    if name in ("Sum", "Prod") and joined in ("bool", "int8", "int16", "uint8", "uint16"):
        widened = "uint32" if joined.startswith("u") else "int32"
        return widened, widened
    if name == "Square" and joined == "bool":
        return "int32", "int32"
    return joined, joined


def _joined(name: str, first: str, values: list) -> str:
    """Keras 3's result_type of the operands (tensors and Python scalars)."""
    joined = first
    for value in values:
        dtype = value.dtype if isinstance(value, Tensor) else _scalar_dtype(
            value, first, name in WEAK_SCALAR_OPS)
        joined = promote(joined, dtype)
    return joined


def _keras2_dtypes(name: str, dtype: str) -> tuple:
    """TF keeps the tensor's dtype (constants are converted to it), except true division
    of integers: float32 for 8 and 16 bit ints, float64 for wider ones."""
    if name == "Divide" and dtype not in FLOATS:
        compute = "float32" if _bits(dtype) <= 16 else "float64"
        return compute, compute
    return dtype, dtype


# ---------------------------------------------------------------------- shapes


def _is_keras_op(module: str, config: dict) -> bool:
    """A Keras 3 operation node. Legacy ``.h5`` configs written by Keras 3 have no
    ``module``; there an operation is told from a layer of the same name (``Add``) by its
    config, which has no ``trainable`` key as every layer's has."""
    return module.startswith("keras.src.ops") or (not module and "trainable" not in config)


def _is_known_tf_function(module: str, config: dict) -> bool:
    return config.get("function") in TF_FUNCTIONS


def operation_output_types(node):
    """Output shape of an operation: NumPy broadcasting, matmul, reshape, reductions."""
    name, attributes = operation(node)
    shapes = [t.shape for _, t in node.input_tensors()]  # masks too: composites use them
    first = shapes[0] if shapes else None
    dtype = operation_dtypes(node)[1]
    if name in ARITHMETIC or name in COMPARISONS or name in LOGICAL:
        return [(broadcast_shapes(shapes), dtype)]
    if first is None:
        return None
    if name in FLOAT_UNARY or name in SAME_DTYPE_UNARY or name == "Cast":
        return [(first, dtype)]
    if name == "Matmul" and len(shapes) == 2 and shapes[1] is not None:
        left, right = (_swap_last(s) if attributes.get(f"transpose_{side}") else s
                       for s, side in zip(shapes, "ab"))
        batch = broadcast_shapes([left[:-2], right[:-2]])
        return [(batch + (left[-2], right[-1]), dtype)]
    if name == "Transpose":
        axes = attributes.get("axes") or list(reversed(range(len(first))))
        return [(tuple(first[a] for a in axes), dtype)]
    if name == "Reshape" and "newshape" in attributes:
        return [(tuple(None if d == -1 else d for d in attributes["newshape"]), dtype)]
    if name == "ExpandDims":
        axes = expand_axes(attributes.get("axis", -1), len(first))
        shape = list(first)
        for axis in axes:
            shape.insert(axis, 1)
        return [(tuple(shape), dtype)]
    if name == "Squeeze":
        axis = attributes.get("axis")
        axes = (set(as_axes(axis, len(first))) if axis is not None
                else {i for i, d in enumerate(first) if d == 1})
        return [(tuple(d for i, d in enumerate(first) if i not in axes), dtype)]
    if name == "Concatenate":
        axis = normalize_axis(attributes.get("axis", 0), len(first))
        sizes = [s[axis] if s is not None else None for s in shapes]
        joined = None if None in sizes else sum(sizes)
        return [(first[:axis] + (joined,) + first[axis + 1:], dtype)]
    if name in REDUCTIONS:
        return [(_reduced(first, attributes.get("axis"), attributes.get("keepdims", False)),
                 dtype)]
    if name in SPECTRAL:
        return [(first, dtype), (first, dtype)]
    if name == "TakeAlongAxis" and attributes.get("axis") is not None and len(shapes) == 2:
        return [(take_along_axis_shape(first, shapes[1], attributes["axis"]), dtype)]
    return None


def take_along_axis_shape(values: tuple, indices: tuple, axis: int) -> Optional[tuple]:
    """NumPy's take_along_axis: the two shapes broadcast except on ``axis``, which is the
    indices' size."""
    if indices is None:
        return None
    axis = normalize_axis(axis, len(values))
    shape = list(broadcast_shapes([values[:axis] + (1,) + values[axis + 1:],
                                   indices[:axis] + (1,) + indices[axis + 1:]]))
    shape[axis] = indices[axis]
    return tuple(shape)


def as_axes(axis, rank: int) -> list:
    """``axis`` (an int, a list, or None for every axis) as sorted non-negative axes."""
    if axis is None:
        return list(range(rank))
    return sorted(normalize_axis(a, rank) for a in ([axis] if isinstance(axis, int) else axis))


def expand_axes(axis, rank: int) -> list:
    """The new axes of expand_dims on a rank-``rank`` input, counted in the output."""
    return as_axes(axis, rank + (1 if isinstance(axis, int) else len(axis)))


def _swap_last(shape: tuple) -> tuple:
    return shape[:-2] + (shape[-1], shape[-2])


def _reduced(shape, axis, keepdims) -> tuple:
    axes = set(as_axes(axis, len(shape)))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


KERAS_OPS = sorted(ARITHMETIC | COMPARISONS | LOGICAL | FLOAT_UNARY | SAME_DTYPE_UNARY
                   | REDUCTIONS | STRUCTURAL | SPECTRAL)
layer_kind(*KERAS_OPS, signature=(), matches=_is_keras_op, mask_roles={},
           output_mask=no_mask)(operation_output_types)
layer_kind("TFOpLambda", signature=(), matches=_is_known_tf_function, mask_roles={},
           output_mask=no_mask)(operation_output_types)
