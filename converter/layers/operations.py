"""Raw tensor operations inside functional models: Keras 3 ``keras.src.ops.*`` operation
nodes and Keras 2 ``TFOpLambda`` layers (``tf.math.add(x, y)`` on Keras tensors).

Both are read as one OPERATION (a Keras 3 op class name such as ``Add`` or ``Matmul``) with
ATTRIBUTES (``axis``, ``axes``, ``newshape``, ``keepdims``, ``dtype``), so later stages
handle ``keras.ops.mean(x, axis=-1)`` and ``tf.reduce_mean(x, axis=-1)`` alike.
Tensor arguments have the roles ``arg0``, ``arg1``, ... (or their keyword names).
"""
from __future__ import annotations

from .registry import broadcast_shapes, layer_kind, no_mask, normalize_axis

ELEMENTWISE = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Power", "Maximum",
               "Minimum", "Mod", "FloorDivide"}
COMPARISONS = {"NotEqual", "Equal", "Greater", "GreaterEqual", "Less", "LessEqual",
               "LogicalAnd", "LogicalOr"}
UNARY = {"Exp", "Log", "Sqrt", "Rsqrt", "Tanh", "Sigmoid", "Relu", "Abs", "Negative",
         "Square", "Softmax", "LogSoftmax", "Erf", "Sin", "Cos", "LogicalNot", "Gelu", "Silu"}
REDUCTIONS = {"Mean", "Sum", "Max", "Min", "Prod", "Any", "All"}

# TF function name (TFOpLambda ``config.function``) -> (operation, {TF kwarg: attribute})
TF_FUNCTIONS = {
    "math.add": ("Add", {}), "__operators__.add": ("Add", {}),
    "math.subtract": ("Subtract", {}), "math.multiply": ("Multiply", {}),
    "math.truediv": ("Divide", {}), "math.divide": ("Divide", {}),
    "math.maximum": ("Maximum", {}), "math.minimum": ("Minimum", {}),
    "math.pow": ("Power", {}), "math.not_equal": ("NotEqual", {}),
    "math.equal": ("Equal", {}), "math.greater": ("Greater", {}), "math.less": ("Less", {}),
    "linalg.matmul": ("Matmul", {}), "matmul": ("Matmul", {}),
    "reshape": ("Reshape", {"shape": "newshape"}),
    "transpose": ("Transpose", {"perm": "axes"}),
    "compat.v1.transpose": ("Transpose", {"perm": "axes"}),
    "expand_dims": ("ExpandDims", {}), "compat.v1.expand_dims": ("ExpandDims", {}),
    "squeeze": ("Squeeze", {}), "compat.v1.squeeze": ("Squeeze", {}),
    "cast": ("Cast", {}), "concat": ("Concatenate", {}),
    "math.reduce_mean": ("Mean", {}), "reduce_mean": ("Mean", {}),
    "math.reduce_sum": ("Sum", {}), "reduce_sum": ("Sum", {}),
    "math.reduce_max": ("Max", {}), "math.sqrt": ("Sqrt", {}), "math.rsqrt": ("Rsqrt", {}),
    "math.exp": ("Exp", {}), "math.log": ("Log", {}), "math.tanh": ("Tanh", {}),
    "math.sigmoid": ("Sigmoid", {}), "nn.relu": ("Relu", {}), "math.abs": ("Abs", {}),
    "math.square": ("Square", {}), "nn.softmax": ("Softmax", {}),
    "math.softmax": ("Softmax", {}), "nn.log_softmax": ("LogSoftmax", {}),
}
ATTRIBUTE_NAMES = ("axis", "axes", "newshape", "keepdims", "dtype")


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


# Keyword names TF functions give their second operand (tf.math.add(x, y), matmul(a, b)).
SECOND_OPERAND_KEYWORDS = ("y", "b")


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


def _is_keras_op(module: str, config: dict) -> bool:
    return module.startswith("keras.src.ops")


def _first_dtype(node) -> str:
    data = node.data_inputs()
    return data[0].dtype if data else "float32"


def operation_output_types(node):
    """Output shape of an operation: NumPy broadcasting, matmul, reshape, reductions."""
    name, attributes = operation(node)
    shapes = [t.shape for t in node.data_inputs()]
    first = shapes[0] if shapes else None
    dtype = _first_dtype(node)
    if name in ELEMENTWISE or name in COMPARISONS:
        shape = broadcast_shapes(shapes)
        return [(shape, "bool" if name in COMPARISONS else dtype)]
    if first is None:
        return None
    if name in UNARY:
        return [(first, dtype)]
    if name == "Cast":
        return [(first, str(attributes.get("dtype", dtype)))]
    if name == "Matmul" and len(shapes) == 2 and shapes[1] is not None:
        batch = broadcast_shapes([first[:-2], shapes[1][:-2]])
        return [(batch + (first[-2], shapes[1][-1]), dtype)]
    if name == "Transpose":
        axes = attributes.get("axes") or list(reversed(range(len(first))))
        return [(tuple(first[a] for a in axes), dtype)]
    if name == "Reshape":
        return [(tuple(None if d == -1 else d for d in attributes["newshape"]), dtype)]
    if name == "ExpandDims":
        axis = normalize_axis(attributes.get("axis", -1), len(first) + 1)
        return [(first[:axis] + (1,) + first[axis:], dtype)]
    if name == "Squeeze":
        axis = attributes.get("axis")
        axes = ({normalize_axis(a, len(first)) for a in ([axis] if isinstance(axis, int) else axis)}
                if axis is not None else {i for i, d in enumerate(first) if d == 1})
        return [(tuple(d for i, d in enumerate(first) if i not in axes), dtype)]
    if name == "Concatenate":
        axis = normalize_axis(attributes.get("axis", 0), len(first))
        sizes = [s[axis] if s is not None else None for s in shapes]
        joined = None if None in sizes else sum(sizes)
        return [(first[:axis] + (joined,) + first[axis + 1:], dtype)]
    if name in REDUCTIONS:
        return [(_reduced(first, attributes.get("axis"), attributes.get("keepdims", False)),
                 "bool" if name in ("Any", "All") else dtype)]
    return None


def _reduced(shape, axis, keepdims) -> tuple:
    axes = range(len(shape)) if axis is None else [axis] if isinstance(axis, int) else axis
    axes = {normalize_axis(a, len(shape)) for a in axes}
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


KERAS_OPS = sorted(ELEMENTWISE | COMPARISONS | UNARY | REDUCTIONS
                   | {"Cast", "Matmul", "Transpose", "Reshape", "ExpandDims", "Squeeze",
                      "Concatenate"})
layer_kind(*KERAS_OPS, signature=(), matches=_is_keras_op, mask_roles={},
           output_mask=no_mask)(operation_output_types)
layer_kind("TFOpLambda", signature=(), mask_roles={}, output_mask=no_mask)(
    operation_output_types)
