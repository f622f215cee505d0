"""Keras activation functions as ONNX ops, shared by every emitter that applies one
(Dense, Conv1D, Activation, ReLU, ...): ``apply_activation(b, x, activation, base, dialect)``.

``activation`` is what a layer config stores: a name (``"relu"``), a serialized function
(``{"class_name": "function", "config": "relu"}``) or a serialized activation layer
(``{"class_name": "LeakyReLU", "config": {"negative_slope": 0.1}}``, which Keras 3 writes for
``Dense(activation=LeakyReLU(0.1))`` and which the activation layers' emitters pass too).
Keyword options reach the functions that take them (``gelu`` ``approximate``, ``relu``
``max_value``, ...), for emitters of Keras operations that carry them.

Where Keras 2 and Keras 3 compute differently the dialect decides (``hard_sigmoid``:
``clip(0.2 x + 0.5, 0, 1)`` in Keras 2, ``relu6(x + 3) / 6`` in Keras 3). Ops that came late
to ONNX are written as formulas below their opset (``Gelu`` 20, ``Mish`` 18).
"""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from ..errors import ConversionError
from .builder import Builder

GELU_OPSET = 20
MISH_OPSET = 18
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
HARD_SIGMOID_SLOPE = {"keras2": 0.2, "keras3": 1 / 6}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu", "softmax_v2": "softmax"}


def activation_name(activation) -> str:
    """The Keras name of an activation as configs store it: ``"relu"``, a serialized
    function ``{"class_name": "function", "config": "relu"}``, or the class of a serialized
    object (``"PReLU"``)."""
    if activation is None:
        return "linear"
    if isinstance(activation, dict):  # a function's name, else an object's class
        config = activation.get("config")
        activation = config if isinstance(config, str) else activation.get("class_name")
    return ALIASES.get(str(activation), str(activation))


def apply_activation(b: Builder, x: str, activation, base: str, dialect: str, /,
                     **options) -> str:
    """x after the Keras activation ``activation`` (as stored in a layer config)."""
    name, options = _resolve(activation, options)
    if name == "linear":
        return x
    if name not in ACTIVATIONS:
        raise ConversionError(f"layer {base!r}: activation {name!r} cannot be converted yet")
    return ACTIVATIONS[name](_Context(b, f"{base}/{name}", dialect), x, **options)


def _resolve(activation, options: dict) -> tuple:
    """(function name, options) of a stored activation."""
    if not isinstance(activation, dict):
        return activation_name(activation), options
    config = activation.get("config", {})
    if activation.get("class_name") == "Activation":
        return _resolve(config.get("activation"), options)
    package_function = (activation.get("module"), config) if isinstance(config, str) else None
    if package_function in PACKAGE_FUNCTIONS:
        name, package_options = PACKAGE_FUNCTIONS[package_function]
        return name, {**package_options, **options}
    if activation.get("class_name") in LAYER_ACTIVATIONS:
        name, layer_options = LAYER_ACTIVATIONS[activation["class_name"]](config)
        return name, {**layer_options, **options}
    return activation_name(activation), options


class _Context:
    """The builder, the base name of the values and the dialect, with float32 helpers."""

    def __init__(self, b: Builder, base: str, dialect: str):
        self.b, self.base, self.dialect = b, base, dialect

    def op(self, op_type: str, inputs: list, suffix: str = "", **attributes) -> str:
        return self.b.op(op_type, inputs, f"{self.base}{suffix}", **attributes)

    def scalar(self, value: float, suffix: str) -> str:
        return self.b.constant(f"{self.base}/{suffix}", np.float32(value))

    def clip(self, x: str, low: float, high: float, suffix: str = "") -> str:
        return self.op("Clip", [x, self.scalar(low, "min"), self.scalar(high, "max")], suffix)

    @property
    def opset(self) -> int:
        return self.b.opset


# ---------------------------------------------------------------------- the functions


def _unary(op_type: str):
    """An activation that is one ONNX op."""
    def apply(c: _Context, x: str) -> str:
        return c.op(op_type, [x])
    return apply


def relu(c: _Context, x: str, negative_slope=0.0, max_value=None, threshold=0.0,
         alpha=None) -> str:
    """x where x > threshold (else 0), clipped to [0, max_value], minus
    negative_slope * relu(threshold - x) (Keras 2 calls negative_slope ``alpha``)."""
    slope = float(alpha if alpha is not None else negative_slope)
    threshold = float(threshold)
    if slope and max_value is None and not threshold:
        return c.op("LeakyRelu", [x], alpha=slope)
    if threshold:
        above = c.op("Greater", [x, c.scalar(threshold, "threshold")], "/above")
        y = c.op("Where", [above, x, c.scalar(0, "zero")], "/thresholded")
        if max_value is not None:
            y = c.clip(y, 0, max_value, "/clipped")
    elif max_value is not None:
        y = c.clip(x, 0, max_value, "/clipped")
    else:
        y = c.op("Relu", [x], "/positive")
    if not slope:
        return y
    below = (c.op("Sub", [c.scalar(threshold, "threshold"), x], "/below") if threshold
             else c.op("Neg", [x], "/below"))
    negative_part = c.op("Relu", [below], "/negative")
    return c.op("Sub", [y, c.op("Mul", [c.scalar(slope, "slope"), negative_part],
                                "/leak")])


def leaky_relu(c: _Context, x: str, negative_slope=0.2, alpha=None) -> str:
    """x if x > 0 else negative_slope * x."""
    return c.op("LeakyRelu", [x], alpha=float(alpha if alpha is not None else negative_slope))


def elu(c: _Context, x: str, alpha=1.0) -> str:
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return c.op("Elu", [x], alpha=float(alpha))


def selu(c: _Context, x: str) -> str:
    """scale * (x if x > 0 else alpha * (exp(x) - 1)), Klambauer et al.'s constants."""
    return c.op("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_SCALE)


def celu(c: _Context, x: str, alpha=1.0) -> str:
    """max(x, 0) + alpha * (exp(min(x, 0) / alpha) - 1)."""
    return c.op("Celu", [x], alpha=float(alpha))


def silu(c: _Context, x: str) -> str:
    """x * sigmoid(x)."""
    return c.op("Mul", [x, c.op("Sigmoid", [x], "/sigmoid")])


def gelu(c: _Context, x: str, approximate=False) -> str:
    """0.5 x (1 + erf(x / √2)); approximate: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""
    if c.opset >= GELU_OPSET:
        return c.op("Gelu", [x], approximate="tanh" if approximate else "none")
    if approximate:
        cube = c.op("Mul", [c.op("Mul", [x, x], "/square"), x], "/cube")
        inner = c.op("Add", [x, c.op("Mul", [c.scalar(0.044715, "cubic"), cube], "/cubic")],
                     "/inner")
        scaled = c.op("Mul", [c.scalar(math.sqrt(2 / math.pi), "scale"), inner], "/scaled")
        curve = c.op("Tanh", [scaled], "/curve")
    else:
        curve = c.op("Erf", [c.op("Div", [x, c.scalar(math.sqrt(2), "sqrt2")], "/scaled")],
                     "/curve")
    half_x = c.op("Mul", [c.scalar(0.5, "half"), x], "/half_x")
    return c.op("Mul", [half_x, c.op("Add", [c.scalar(1, "one"), curve], "/one_plus")])


def hard_sigmoid(c: _Context, x: str) -> str:
    """clip(slope * x + 0.5, 0, 1): slope 0.2 in Keras 2, 1/6 in Keras 3."""
    return c.op("HardSigmoid", [x], alpha=HARD_SIGMOID_SLOPE[c.dialect], beta=0.5)


def mish(c: _Context, x: str) -> str:
    """x * tanh(softplus(x))."""
    if c.opset >= MISH_OPSET:
        return c.op("Mish", [x])
    softplus = c.op("Softplus", [x], "/softplus")
    return c.op("Mul", [x, c.op("Tanh", [softplus], "/tanh")])


def softmax(c: _Context, x: str, axis=-1) -> str:
    """exp(x) / sum(exp(x)) along ``axis``; over several axes exp(x - logsumexp(x))."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if len(axes) == 1:
        return c.op("Softmax", [x], axis=int(axes[0]))
    log_sum = c.b.reduce("ReduceLogSumExp", x, [int(a) for a in axes], f"{c.base}/logsumexp")
    return c.op("Exp", [c.op("Sub", [x, log_sum], "/shifted")])


def log_softmax(c: _Context, x: str, axis=-1) -> str:
    """x - logsumexp(x) along ``axis``."""
    return c.op("LogSoftmax", [x], axis=int(axis))


def glu(c: _Context, x: str, axis=-1) -> str:
    """a * sigmoid(b) for the two halves a, b of x along ``axis``."""
    axis_input = c.b.ints(f"{c.base}/axis", [axis])
    size = c.op("Gather", [c.op("Shape", [x], "/shape"), axis_input], "/size")
    half = c.op("Div", [size, c.b.ints(f"{c.base}/two", [2])], "/half")
    first = c.op("Slice", [x, c.b.ints(f"{c.base}/start", [0]), half, axis_input], "/a")
    second = c.op("Slice", [x, half, c.b.ints(f"{c.base}/end", [np.iinfo(np.int64).max]),
                            axis_input], "/b")
    return c.op("Mul", [first, c.op("Sigmoid", [second], "/gate")])


def tanh_shrink(c: _Context, x: str) -> str:
    """x - tanh(x)."""
    return c.op("Sub", [x, c.op("Tanh", [x], "/tanh")])


def hard_shrink(c: _Context, x: str, threshold=0.5) -> str:
    """x if |x| > threshold else 0."""
    return c.op("Shrink", [x], lambd=float(threshold), bias=0.0)


def soft_shrink(c: _Context, x: str, threshold=0.5) -> str:
    """x - threshold above threshold, x + threshold below -threshold, else 0."""
    return c.op("Shrink", [x], lambd=float(threshold), bias=float(threshold))


def threshold(c: _Context, x: str, threshold, default_value) -> str:
    """x if x > threshold else default_value."""
    above = c.op("Greater", [x, c.scalar(threshold, "threshold")], "/above")
    return c.op("Where", [above, x, c.scalar(default_value, "default")])


def sparse_plus(c: _Context, x: str) -> str:
    """0 for x <= -1, (x + 1)² / 4 for -1 < x < 1, x from 1 on."""
    shifted = c.op("Add", [x, c.scalar(1, "one")], "/shifted")
    quadratic = c.op("Mul", [c.scalar(0.25, "quarter"),
                             c.op("Mul", [shifted, shifted], "/square")], "/quadratic")
    middle = c.op("Where", [c.op("Less", [x, c.scalar(1, "one")], "/below_one"), quadratic,
                            x], "/upper")
    low = c.op("LessOrEqual", [x, c.scalar(-1, "minus_one")], "/low")
    return c.op("Where", [low, c.scalar(0, "zero"), middle])


def sparse_sigmoid(c: _Context, x: str) -> str:
    """clip((x + 1) / 2, 0, 1)."""
    half = c.op("Mul", [c.scalar(0.5, "half"), c.op("Add", [x, c.scalar(1, "one")],
                                                     "/shifted")], "/linear")
    return c.clip(half, 0, 1)


def squareplus(c: _Context, x: str, b=4) -> str:
    """(x + sqrt(x² + b)) / 2."""
    root = c.op("Sqrt", [c.op("Add", [c.op("Mul", [x, x], "/square"), c.scalar(b, "b")],
                              "/plus_b")], "/root")
    return c.op("Div", [c.op("Add", [x, root], "/sum"), c.scalar(2, "two")])


def log_sigmoid(c: _Context, x: str) -> str:
    """-softplus(-x)."""
    softplus = c.op("Softplus", [c.op("Neg", [x], "/negated")], "/softplus")
    return c.op("Neg", [softplus])


def sparsemax(c: _Context, x: str, axis=-1) -> str:
    """max(x - tau, 0), tau chosen so the result sums to 1 (Martins et al., 2016):
    on x sorted descending, the support is where 1 + k z_k > cumsum_k."""
    if axis != -1:
        raise ConversionError(f"layer {c.base!r}: sparsemax over axis {axis} not supported "
                              f"yet (only the last axis)")
    size = c.op("Shape", [x], "/size", start=-1)
    ordered, _ = c.op("TopK", [x, size], "/sorted", outputs=2, axis=-1, largest=1, sorted=1)
    cumsum = c.op("CumSum", [ordered, c.b.ints(f"{c.base}/last_axis", -1)], "/cumsum")
    one_int = c.b.ints(f"{c.base}/one_int", 1)
    ranks = c.op("Range", [one_int, c.op("Add", [c.op("Squeeze", [size], "/n"), one_int],
                                         "/n_plus_one"), one_int], "/ranks")
    ranks = c.op("Cast", [ranks], "/ranks_float", to=TensorProto.FLOAT)
    one, zero = c.scalar(1, "one"), c.scalar(0, "zero")
    average = c.op("Div", [c.op("Sub", [cumsum, one], "/cumsum_minus_one"), ranks],
                   "/average")
    support = c.op("Greater", [c.op("Sub", [ordered, average], "/margin"), zero], "/support")
    count = c.b.reduce("ReduceSum", c.op("Cast", [support], "/support_float",
                                         to=TensorProto.FLOAT), [-1], f"{c.base}/count")
    kept = c.op("Where", [support, cumsum, zero], "/kept")
    total = c.b.reduce("ReduceSum", kept, [-1], f"{c.base}/total")
    tau = c.op("Div", [c.op("Sub", [total, one], "/total_minus_one"), count], "/tau")
    return c.op("Max", [c.op("Sub", [x, tau], "/shifted"), zero])


# Keras name -> emitter of the function: (context, x, **options) -> ONNX name
ACTIVATIONS = {
    "relu": relu, "leaky_relu": leaky_relu, "elu": elu, "selu": selu, "celu": celu,
    "gelu": gelu, "silu": silu, "mish": mish, "hard_sigmoid": hard_sigmoid,
    "softmax": softmax, "log_softmax": log_softmax, "glu": glu, "threshold": threshold,
    "tanh_shrink": tanh_shrink, "hard_shrink": hard_shrink, "soft_shrink": soft_shrink,
    "sparse_plus": sparse_plus, "sparse_sigmoid": sparse_sigmoid, "squareplus": squareplus,
    "log_sigmoid": log_sigmoid, "sparsemax": sparsemax,
    "relu6": lambda c, x: c.clip(x, 0, 6),
    "hard_tanh": lambda c, x: c.clip(x, -1, 1),
    "sigmoid": _unary("Sigmoid"), "tanh": _unary("Tanh"), "exponential": _unary("Exp"),
    "softplus": _unary("Softplus"), "softsign": _unary("Softsign"),
    "hard_silu": _unary("HardSwish"),
}

# Third-party activation functions, by the (module, name) a config spells them with ->
# (function name, options): keras_transformer's (and keras_bert's) gelu is the tanh one, as
# is KerasHub's gelu_approximate (``keras_hub.src.utils.keras_utils``).
PACKAGE_FUNCTIONS = {("keras_transformer.gelu", "gelu"): ("gelu", {"approximate": True}),
                     ("builtins", "keras_hub>gelu_approximate"): ("gelu",
                                                                  {"approximate": True})}

# Activation layers (as layer configs store them) -> (function name, options)
LAYER_ACTIVATIONS = {
    "ReLU": lambda config: ("relu", {"negative_slope": config.get("negative_slope", 0.0),
                                     "max_value": config.get("max_value"),
                                     "threshold": config.get("threshold", 0.0)}),
    "LeakyReLU": lambda config: ("leaky_relu", {
        "negative_slope": config.get("negative_slope", config.get("alpha", 0.3))}),
    "ELU": lambda config: ("elu", {"alpha": config.get("alpha", 1.0)}),
    "ThresholdedReLU": lambda config: ("threshold", {"threshold": config.get("theta", 1.0),
                                                     "default_value": 0.0}),
    "Softmax": lambda config: ("softmax", {"axis": config.get("axis", -1)}),
}
