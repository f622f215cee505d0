"""Raw tensor operations inside functional models: Keras 3 ``keras.src.ops.*`` operation
nodes (``x[:, 0]`` is a ``GetItem`` node) and Keras 2 ``TFOpLambda`` layers
(``tf.math.add(x, y)`` on Keras tensors) and ``SlicingOpLambda`` layers (``x[:, 0]``).

Both are read as one OPERATION (a Keras 3 op class name such as ``Add`` or ``Matmul``) with
ATTRIBUTES (``axis``, ``axes``, ``newshape``, ``keepdims``, ``dtype``, ``transpose_a``,
``transpose_b``, ``approximate``, the index ``key``, ...: ``ATTRIBUTE_NAMES``), so later
stages handle ``keras.ops.mean(x, axis=-1)`` and ``tf.reduce_mean(x, axis=-1)`` alike. Tensor
arguments have the roles ``arg0``, ``arg1``, ... (or their keyword names; tensors inside an
index key ``index0``, ...); ``operands(node)`` lists tensors and constants in call order.

Dtypes follow each dialect: Keras 2 runs TF ops, which convert Python constants to the
tensor's dtype; Keras 3 promotes like ``keras.backend.result_type`` (Python scalars are
"weak" in arithmetic, and several ops compute in float: see ``operation_dtypes``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ir import Tensor
from .registry import broadcast_shapes, layer_kind, no_mask, normalize_axis, split_tensors

ARITHMETIC = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Power", "Maximum",
              "Minimum", "Mod", "FloorDivide"}
COMPARISONS = {"NotEqual", "Equal", "Greater", "GreaterEqual", "Less", "LessEqual"}
LOGICAL = {"LogicalAnd", "LogicalOr", "LogicalNot"}
# Unary ops that compute in float (Keras 3 casts integer inputs to float32 first).
FLOAT_UNARY = {"Exp", "Log", "Sqrt", "Rsqrt", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
               "Erf", "Sin", "Cos", "Gelu", "Silu", "Normalize"}
SAME_DTYPE_UNARY = {"Relu", "Abs", "Absolute", "Negative", "Square"}
REDUCTIONS = {"Mean", "Sum", "Max", "Min", "Prod", "Any", "All"}
STRUCTURAL = {"Cast", "Matmul", "Transpose", "Reshape", "ExpandDims", "Squeeze",
              "Concatenate", "TakeAlongAxis"}
# Ops that move or pick elements: the result keeps the dtype of the first tensor.
INDEXING = {"GetItem", "Take", "Slice", "Split", "Tile", "Repeat", "Pad"}
JOINING = {"Concatenate", "Stack"}  # a list of tensors, promoted to one dtype
OTHER_OPS = {"Where", "Einsum", "Cumsum"}
# (real, imaginary) in, (real, imaginary) out: the 2-D Fourier transform of the last two axes
SPECTRAL = {"FFT2"}
# Keras 3 arithmetic that treats Python scalars as weak (``x * 2.0`` keeps x's dtype);
# the other ops convert them to int32 / float32 tensors first.
WEAK_SCALAR_OPS = ARITHMETIC - {"Mod"}

TF_LAYERS = ("TFOpLambda", "SlicingOpLambda")  # Keras 2: tf.* functions, x[...]

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
    "__operators__.getitem": ("GetItem", {"slice_spec": "key"}),  # SlicingOpLambda
    "compat.v1.gather": ("Take", {}), "gather": ("Take", {}),
    "slice": ("Slice", {"begin": "start_indices", "size": "shape"}),
    "split": ("Split", {}), "stack": ("Stack", {}), "where": ("Where", {}),
    "tile": ("Tile", {"multiples": "repeats"}), "repeat": ("Repeat", {}),
    "math.cumsum": ("Cumsum", {}), "range": ("Range", {}),
    "compat.v1.shape": ("Shape", {"out_type": "dtype"}), "shape": ("Shape", {"out_type": "dtype"}),
}
ATTRIBUTE_NAMES = ("axis", "axes", "newshape", "keepdims", "dtype", "transpose_a",
                   "transpose_b", "approximate", "key", "start_indices", "shape",
                   "indices_or_sections", "num_or_size_splits", "repeats", "subscripts",
                   "exclusive", "reverse", "batch_dims", "order", "epsilon", "pad_width",
                   "mode")
# Keyword names TF functions give their operands after the first (tf.math.add(x, y),
# matmul(a, b), tf.where(c, x, y), tf.gather(params, indices), tf.range(start, limit, delta)).
SECOND_OPERAND_KEYWORDS = ("y", "b")
OPERAND_KEYWORDS = {"where": ("x", "y"), "compat.v1.gather": ("indices",),
                    "gather": ("indices",), "range": ("limit", "delta")}
# Keras 3 positional arguments that are attributes: x[key], ops.slice(x, start_indices, ..)
POSITIONAL_ATTRIBUTES = {"GetItem": "key", "Slice": "start_indices"}


def operation(node) -> tuple:
    """(operation name, attributes) of a Keras 3 op node or a Keras 2 TFOpLambda, or
    (None, {}) for a TF function we do not know."""
    if node.class_name not in TF_LAYERS:
        attributes = {k: v for k, v in node.config.items() if k in ATTRIBUTE_NAMES}
        if node.class_name in POSITIONAL_ATTRIBUTES:
            attributes[POSITIONAL_ATTRIBUTES[node.class_name]] = {
                **node.arguments, **node.inputs}.get("arg1")
        return node.class_name, attributes
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
    if node.class_name not in TF_LAYERS:
        ignored = {"name", *ATTRIBUTE_NAMES}
        values = node.config
    else:
        function = node.config.get("function")
        renames = TF_FUNCTIONS.get(function, (None, {}))[1]
        ignored = {"name", *ATTRIBUTE_NAMES, *renames, *_operand_keywords(function)}
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
    if node.class_name in TF_LAYERS:
        ordered += [values[k] for k in _operand_keywords(node.config.get("function"))
                    if k in values]
    return ordered


def _operand_keywords(function) -> tuple:
    return OPERAND_KEYWORDS.get(function, SECOND_OPERAND_KEYWORDS)


def constant_value(item):
    """A Keras 3 ``__tensor__`` / ``__numpy__`` constant operand (``x + ops.arange(6)`` on
    a static dim saves the evaluated arange) as a NumPy array; None for anything else."""
    if isinstance(item, dict) and item.get("class_name") in ("__tensor__", "__numpy__"):
        config = item.get("config", {})
        return np.asarray(config.get("value"), dtype=config.get("dtype"))
    return None


# ---------------------------------------------------------------------- index keys


def index_key(key, inputs: dict) -> list:
    """``x[key]`` in either dialect's encoding as a list of ints, ``slice`` objects,
    None (newaxis) and Ellipsis; ints and slice bounds may be scalar Tensors (Keras 2's
    ``x[:, :tf.shape(y)[1]]``, marked by ``bind_index_roles``, looked up in ``inputs``).
    Keras 3 writes slices as ``{"class_name": "__slice__", "config": {start, stop,
    step}}`` and Ellipsis as ``__ellipsis__``; tf_keras writes a slice as a bare
    ``{start, stop, step}`` dict. Raises ValueError for anything else (boolean masks,
    tensors of indices)."""
    def scalar(value):
        if isinstance(value, dict) and "__input__" in value:
            value = inputs[value["__input__"]]
            if value.rank != 0 or value.dtype not in ("int32", "int64"):
                raise ValueError(f"{value.name!r} (only scalar int tensors)")
        elif value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(repr(value))
        return value

    items = key if isinstance(key, list) else [key]
    decoded = []
    for item in items:
        if isinstance(item, dict) and item.get("class_name") == "__ellipsis__":
            decoded.append(Ellipsis)
        elif isinstance(item, dict) and "__input__" not in item:
            bounds = item.get("config", {}) if item.get("class_name") == "__slice__" else item
            parts = [scalar(bounds.get(k)) for k in ("start", "stop", "step")]
            if parts[2] == 0:
                raise ValueError("a slice step of 0")
            decoded.append(slice(*parts))
        else:
            decoded.append(scalar(item))
    if decoded.count(Ellipsis) > 1:
        raise ValueError("more than one Ellipsis")
    return decoded


def bind_index_roles(arguments: dict) -> tuple:
    """Roles of ``x[key]``: tensors inside the key (Keras 2 ``slice_spec``, Keras 3's
    second argument) become roles ``index0``, ``index1``, ... and are marked
    ``{"__input__": "index0"}`` in the key, which stays a plain argument."""
    key_name = "slice_spec" if "slice_spec" in arguments else "arg1"
    roles, rest = split_tensors({k: v for k, v in arguments.items() if k != key_name})

    def mark(value):
        if isinstance(value, Tensor):
            role = f"index{sum(r.startswith('index') for r in roles)}"
            roles[role] = value
            return {"__input__": role}
        if isinstance(value, list):
            return [mark(v) for v in value]
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        return value

    if key_name in arguments:
        rest[key_name] = mark(arguments[key_name])
    return roles, rest


def expand_key(items: list, rank: int) -> list:
    """``index_key`` items with the Ellipsis (implicit at the end) replaced by full slices,
    so that every input axis has one int or slice, in order, plus the None items."""
    if Ellipsis not in items:
        items = items + [Ellipsis]
    used = sum(1 for item in items if item is not None and item is not Ellipsis)
    if used > rank:
        raise ValueError(f"{used} indices into a rank-{rank} tensor")
    at = items.index(Ellipsis)
    return items[:at] + [slice(None)] * (rank - used) + items[at + 1:]


def _sliced_shape(shape: tuple, items: list) -> tuple:
    dims, axis = [], 0
    for item in expand_key(items, len(shape)):
        if item is None:
            dims.append(1)
            continue
        dim = shape[axis]
        axis += 1
        if isinstance(item, slice):
            static = all(not isinstance(v, Tensor) for v in (item.start, item.stop, item.step))
            dims.append(len(range(*item.indices(dim))) if static and dim is not None else None)
    return tuple(dims)


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
    if (name in JOINING or name in SPECTRAL) and values:
        values = values[0]
    if name == "Where":  # the condition is cast to bool; x1 and x2 are promoted
        values = values[1:]
    first = next((v.dtype for v in values if isinstance(v, Tensor)), None)
    if first is None:  # only Python scalars (keras.ops.where(c, 1, 0)): int32, float32
        first = "bool" if values else "float32"
        for value in values:
            first = promote(first, _scalar_dtype(value, "bool", weak=False))
    if name in LOGICAL or name in ("Any", "All"):
        return "bool", "bool"
    if name in INDEXING or name == "Range":
        dtype = attributes.get("dtype") or (_range_dtype(values) if name == "Range" else first)
        return dtype, dtype
    if name == "Shape":
        return "int64", str(attributes.get("dtype") or "int32")
    if name == "Cumsum":
        dtype = str(attributes.get("dtype") or first)
        return ("int32", "int32") if dtype == "bool" else (dtype, dtype)
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
    """Keras 3's result_type of the operands (tensors, constants and Python scalars)."""
    joined = first
    for value in values:
        if isinstance(value, Tensor):
            dtype = value.dtype
        elif constant_value(value) is not None:
            dtype = str(constant_value(value).dtype)
        else:
            dtype = _scalar_dtype(value, first, name in WEAK_SCALAR_OPS | {"Where"})
        joined = promote(joined, dtype)
    return joined


def _range_dtype(values: list) -> str:
    """tf.range's dtype: the widest of its arguments' (int32 for Python ints)."""
    dtypes = [v.dtype if isinstance(v, Tensor) else "float32" if isinstance(v, float)
              else "int32" for v in values]
    return max(dtypes, key=lambda d: (_category(d), _bits(d)), default="int32")


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


def kind_label(layer) -> str:
    """How an unsupported layer is named in errors: ``Dense``; an operation as
    ``keras.ops.Sort`` or ``TFOpLambda, function tf.sort``."""
    if layer.class_name in TF_LAYERS:
        return f"{layer.class_name}, function tf.{layer.config.get('function')}"
    if _is_keras_op(layer.module or "", layer.config) and layer.class_name not in (
            "Functional", "Model", "Sequential", "Lambda"):
        return f"keras.ops.{layer.class_name}"
    return layer.class_name


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
    shaper = SHAPES.get(name)
    return None if shaper is None else shaper(node, attributes, shapes, dtype)


SHAPES = {}


def shape_of(*names: str):
    """Register ``shape(node, attributes, input shapes, dtype) -> output types``."""
    def register(function):
        for name in names:
            SHAPES[name] = function
        return function

    return register


@shape_of("GetItem")
def _getitem_types(node, attributes, shapes, dtype):
    try:
        return [(_sliced_shape(shapes[0], index_key(attributes.get("key"), node.inputs)),
                 dtype)]
    except ValueError:  # an index kerasonnx cannot lower: the emitter says which
        return None


@shape_of("Take")
def _take_types(node, attributes, shapes, dtype):
    indices = operands(node)[1]
    if isinstance(indices, Tensor):
        index_shape = indices.shape
    else:
        array = constant_value(indices)
        index_shape = np.shape(indices if array is None else array)
    axis, batch_dims = attributes.get("axis"), attributes.get("batch_dims") or 0
    x = shapes[0] if axis is not None else (_product(shapes[0]),)
    axis = normalize_axis(axis or 0, len(x))
    return [(x[:axis] + tuple(index_shape)[batch_dims:] + x[axis + 1:], dtype)]


@shape_of("Slice")
def _slice_types(node, attributes, shapes, dtype):
    sizes = attributes["shape"]
    return [(tuple(d if s == -1 else s for d, s in zip(shapes[0], sizes)), dtype)]


@shape_of("Split")
def _split_types(node, attributes, shapes, dtype):
    axis = normalize_axis(attributes.get("axis", 0), len(shapes[0]))
    pieces = split_pieces(attributes, shapes[0][axis])
    return [(shapes[0][:axis] + (size,) + shapes[0][axis + 1:], dtype) for _, _, size in pieces]


@shape_of("Stack")
def _stack_types(node, attributes, shapes, dtype):
    axis = normalize_axis(attributes.get("axis", 0), len(shapes[0]) + 1)
    return [(shapes[0][:axis] + (len(shapes),) + shapes[0][axis:], dtype)]


@shape_of("Where")
def _where_types(node, attributes, shapes, dtype):
    return [(broadcast_shapes(shapes), dtype)]


@shape_of("Tile")
def _tile_types(node, attributes, shapes, dtype):
    repeats, x = tile_repeats(attributes["repeats"], len(shapes[0])), shapes[0]
    x = (1,) * (len(repeats) - len(x)) + tuple(x)
    return [(tuple(None if d is None else d * r for d, r in zip(x, repeats)), dtype)]


@shape_of("Repeat")
def _repeat_types(node, attributes, shapes, dtype):
    repeats, axis = attributes["repeats"], attributes.get("axis")
    x = shapes[0] if axis is not None else (_product(shapes[0]),)
    axis = normalize_axis(axis or 0, len(x))
    counts = repeats if isinstance(repeats, list) else [repeats]
    if len(counts) == 1:
        size = None if x[axis] is None else x[axis] * counts[0]
    else:
        size = sum(counts)
    return [(x[:axis] + (size,) + x[axis + 1:], dtype)]


@shape_of("Pad")
def _pad_types(node, attributes, shapes, dtype):
    """Each dim grown by its (before, after) of ``pad_width`` (one pair per axis)."""
    widths = attributes["pad_width"]
    if len(widths) != len(shapes[0]):
        return None  # the emitter refuses it
    return [(tuple(None if d is None else d + before + after
                   for d, (before, after) in zip(shapes[0], widths)), dtype)]


@shape_of("Cumsum")
def _cumsum_types(node, attributes, shapes, dtype):
    if attributes.get("axis") is None:
        return [((_product(shapes[0]),), dtype)]
    return [(shapes[0], dtype)]


@shape_of("Einsum")
def _einsum_types(node, attributes, shapes, dtype):
    inputs, output = parse_einsum(attributes["subscripts"], [len(s) for s in shapes])
    sizes = {}
    for letters, shape in zip(inputs, shapes):
        for letter, dim in zip(letters, shape):
            if dim not in (None, 1) or letter not in sizes:
                sizes[letter] = dim
    return [(tuple(sizes[letter] for letter in output), dtype)]


@shape_of(*SPECTRAL)
def _spectral_types(node, attributes, shapes, dtype):
    return [(shapes[0], dtype), (shapes[0], dtype)]


@shape_of("TakeAlongAxis")
def _take_along_axis_types(node, attributes, shapes, dtype):
    if attributes.get("axis") is None or len(shapes) != 2:
        return None
    return [(take_along_axis_shape(shapes[0], shapes[1], attributes["axis"]), dtype)]


@shape_of("Shape")
def _shape_types(node, attributes, shapes, dtype):
    return [((len(shapes[0]),), dtype)]


@shape_of("Range")
def _range_types(node, attributes, shapes, dtype):
    return [((None,), dtype)]


def _product(shape):
    return None if None in shape else int(np.prod(shape, dtype=np.int64))


def tile_repeats(repeats, rank: int) -> list:
    """Tile's repeats padded with leading 1s to the input's rank (NumPy's rule)."""
    repeats = [repeats] if isinstance(repeats, int) else list(repeats)
    return [1] * (rank - len(repeats)) + repeats


def split_pieces(attributes: dict, dim) -> list:
    """The pieces of a split as ``(start, stop, size)``; ``start`` / ``stop`` count from
    the end when negative (``stop`` None: to the end), ``size`` None when unknown.
    Keras 3 ``indices_or_sections``: n equal sections, or the indices where pieces start;
    TF ``num_or_size_splits``: n equal sections, or the sizes (one of them may be -1)."""
    if "indices_or_sections" in attributes:
        spec, sizes_given = attributes["indices_or_sections"], False
    else:
        spec, sizes_given = attributes["num_or_size_splits"], True
    if isinstance(spec, int):
        if dim is None:
            return [(None, None, None)] * spec  # equal sections of an unknown size
        if dim % spec:
            raise ValueError(f"{dim} does not split into {spec} equal sections")
        spec, sizes_given = [dim // spec] * spec, True
    if not sizes_given:  # split points -> sizes, the last one open-ended
        points = [0] + list(spec)
        pieces = [(a, b, b - a) for a, b in zip(points, points[1:])]
        last = None if dim is None else dim - points[-1]
        return pieces + [(points[-1], None, last)]
    sizes = list(spec)
    if -1 in sizes:
        known = sum(s for s in sizes if s != -1)
        at = sizes.index(-1)
        if dim is not None:
            sizes[at] = dim - known
        else:  # pieces after the open one count from the end
            head = [sum(sizes[:i]) for i in range(at + 1)]
            tail = [-sum(sizes[i:]) for i in range(at + 1, len(sizes))]
            starts, stops = head + tail, head[1:] + tail + [None]
            return [(a, b, None if s == -1 else s) for a, b, s in zip(starts, stops, sizes)]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [(a, a + s, s) for a, s in zip(starts, sizes)]


def parse_einsum(subscripts: str, ranks: list) -> tuple:
    """``"bqhd,bkhd->bhqk"`` as ([input letters], output letters), with ``...`` replaced by
    fresh upper-case letters (as many as the operand has dims left) and an implicit output
    (letters that appear once, sorted) made explicit."""
    equation = subscripts.replace(" ", "")
    left, arrow, output = equation.partition("->")
    inputs = left.split(",")
    if len(inputs) != len(ranks):
        raise ValueError(f"{len(inputs)} operand specs for {len(ranks)} operands")
    ellipsis_rank = max([r - len(s.replace("...", "")) for s, r in zip(inputs, ranks)
                         if "..." in s], default=0)
    fresh = "".join(chr(ord("Z") - i) for i in range(ellipsis_rank))
    expanded = [s.replace("...", fresh[ellipsis_rank - (r - len(s.replace("...", ""))):])
                for s, r in zip(inputs, ranks)]
    if arrow:
        output = output.replace("...", fresh)
    else:
        letters = "".join(expanded)
        output = fresh + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                        and c not in fresh))
    return expanded, output


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
                   | REDUCTIONS | STRUCTURAL | INDEXING | JOINING | OTHER_OPS
                   | SPECTRAL)
_OPERATION = {"signature": (), "mask_roles": {}, "output_mask": no_mask}
layer_kind(*(n for n in KERAS_OPS if n != "GetItem"), matches=_is_keras_op,
           **_OPERATION)(operation_output_types)
layer_kind("GetItem", matches=_is_keras_op, bind_roles=bind_index_roles,
           **_OPERATION)(operation_output_types)
layer_kind("TFOpLambda", matches=_is_known_tf_function, **_OPERATION)(operation_output_types)
layer_kind("SlicingOpLambda", matches=_is_known_tf_function, bind_roles=bind_index_roles,
           **_OPERATION)(operation_output_types)
