"""Emitters for the normalization family: LayerNormalization, BatchNormalization,
UnitNormalization, RMSNormalization, GroupNormalization (see
converter/layers/normalization.py)."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConversionError
from ..ir import Node
from ..layers.normalization import group_axis, normalized_axes
from ..model import named_weights
from .builder import Builder
from .registry import emits

# Keras' floor under the L2 norm of UnitNormalization
UNIT_NORM_EPSILON = 1e-12


def _broadcast(array, axes: list, input_shape: tuple) -> np.ndarray:
    """A parameter over ``axes`` reshaped to broadcast against the input."""
    shape = [input_shape[a] if a in axes else 1 for a in range(len(input_shape))]
    return np.asarray(array, dtype=np.float32).reshape(shape)


@emits("LayerNormalization")
def layer_normalization(node: Node, b: Builder) -> list:
    """(x - mean) / sqrt(var + epsilon) * gamma + beta, statistics over ``axis``. ONNX's
    LayerNormalization when the axes run to the last one, else the formula. Keras 3's
    ``rms_scaling``: x / sqrt(var + epsilon) * gamma (the variance, not the mean square,
    as Keras computes it)."""
    tensor = node.input("inputs")
    x, base, rank = b.value(tensor), node.name, len(tensor.shape)
    axes = normalized_axes(node)
    weights = named_weights(node)
    epsilon = float(node.config.get("epsilon", 1e-3))
    rms = node.layer.dialect == "keras3" and node.config.get("rms_scaling")
    if not rms and axes == list(range(axes[0], rank)):
        gamma = weights.get("gamma", np.ones([tensor.shape[a] for a in axes], np.float32))
        inputs = [x, b.constant(f"{base}/gamma", np.asarray(gamma, np.float32))]
        if "beta" in weights:
            inputs.append(b.constant(f"{base}/beta", np.asarray(weights["beta"], np.float32)))
        return [b.op("LayerNormalization", inputs, base, axis=axes[0], epsilon=epsilon)]

    mean = b.reduce("ReduceMean", x, axes, f"{base}/mean")
    centered = b.op("Sub", [x, mean], f"{base}/centered")
    variance = b.reduce("ReduceMean", b.op("Mul", [centered, centered], f"{base}/squared"),
                        axes, f"{base}/variance")
    deviation = b.op("Sqrt", [b.op("Add", [variance, b.constant(f"{base}/epsilon",
                                                                 np.float32(epsilon))],
                                   f"{base}/variance_eps")], f"{base}/deviation")
    y = b.op("Div", [x if rms else centered, deviation], f"{base}/normalized")
    if "gamma" in weights:
        y = b.op("Mul", [y, b.constant(f"{base}/gamma", _broadcast(weights["gamma"], axes,
                                                                    tensor.shape))], f"{base}/scaled")
    if "beta" in weights:
        y = b.op("Add", [y, b.constant(f"{base}/beta", _broadcast(weights["beta"], axes,
                                                                   tensor.shape))], f"{base}/centered_out")
    return [y]


@emits("BatchNormalization")
def batch_normalization(node: Node, b: Builder) -> list:
    """x * a + c with the inference statistics folded in NumPy:
    a = gamma / sqrt(moving_variance + epsilon), c = beta - moving_mean * a."""
    tensor = node.input("inputs")
    weights = {k: np.asarray(v, np.float64) for k, v in named_weights(node).items()}
    epsilon = float(node.config.get("epsilon", 1e-3))
    scale = weights.get("gamma", 1.0) / np.sqrt(weights["moving_variance"] + epsilon)
    shift = weights.get("beta", 0.0) - weights["moving_mean"] * scale
    scale, shift = (_broadcast(v, normalized_axes(node), tensor.shape) for v in (scale, shift))
    y = b.op("Mul", [b.value(tensor), b.constant(f"{node.name}/scale", scale)],
             f"{node.name}/scaled")
    return [b.op("Add", [y, b.constant(f"{node.name}/shift", shift)], node.name)]


@emits("UnitNormalization")
def unit_normalization(node: Node, b: Builder) -> list:
    """x / ||x||₂ over ``axis``: Keras 3 x * min(1 / sqrt(Σx²), 1e12), Keras 2 (l2_normalize)
    x * 1 / sqrt(max(Σx², 1e-12))."""
    tensor = node.input("inputs")
    x, base = b.value(tensor), node.name
    square_sum = b.reduce("ReduceSumSquare", x, normalized_axes(node), f"{base}/square_sum")
    if node.layer.dialect == "keras2":
        floor = b.constant(f"{base}/epsilon", np.float32(UNIT_NORM_EPSILON))
        square_sum = b.op("Max", [square_sum, floor], f"{base}/floored")
    inverse = b.op("Reciprocal", [b.op("Sqrt", [square_sum], f"{base}/norm")],
                   f"{base}/inverse_norm")
    if node.layer.dialect == "keras3":
        ceiling = b.constant(f"{base}/ceiling", np.float32(1 / UNIT_NORM_EPSILON))
        inverse = b.op("Min", [inverse, ceiling], f"{base}/capped")
    return [b.op("Mul", [x, inverse], base)]


@emits("RMSNormalization")
def rms_normalization(node: Node, b: Builder) -> list:
    """y = x * rsqrt(mean(x², axis) + epsilon) * scale (scale broadcast as Keras does).
    ONNX's RMSNormalization (opset 23+) when the axes run to the last one, else the
    formula."""
    tensor = node.input("inputs")
    x, base, rank = b.value(tensor), node.name, len(tensor.shape)
    axes = normalized_axes(node)
    epsilon = float(node.config.get("epsilon", 1e-6))
    scale = np.asarray(named_weights(node)["scale"], np.float32)
    trailing = tensor.shape[rank - scale.ndim:]
    if any(d not in (None, s) for d, s in zip(trailing, scale.shape)):
        raise ConversionError(f"layer {base!r}: RMSNormalization's scale {scale.shape} does "
                              f"not broadcast against its input {tensor.shape}; Keras "
                              f"cannot run this layer either")
    scale = b.constant(f"{base}/scale", scale)
    if b.opset >= 23 and axes == list(range(axes[0], rank)):
        return [b.op("RMSNormalization", [x, scale], base, axis=axes[0], epsilon=epsilon)]
    return [b.op("Mul", [root_mean_square_normalized(b, x, axes, epsilon, base), scale],
                 base)]


def root_mean_square_normalized(b: Builder, x: str, axes: list, epsilon: float,
                                base: str) -> str:
    """x · 1 / sqrt(mean(x², ``axes``) + epsilon) in float32, the RMS norm's arithmetic
    (Keras' RMSNormalization, KerasHub's, Qwen 3.5's gated norm), before its scale."""
    mean_square = b.reduce("ReduceMean", b.op("Mul", [x, x], f"{base}/squared"), axes,
                           f"{base}/mean_square")
    shifted = b.op("Add", [mean_square, b.constant(f"{base}/epsilon", np.float32(epsilon))],
                   f"{base}/mean_square_eps")
    inverse = b.op("Reciprocal", [b.op("Sqrt", [shifted], f"{base}/rms")], f"{base}/inverse")
    return b.op("Mul", [x, inverse], f"{base}/normalized")


@emits("GroupNormalization")
def group_normalization(node: Node, b: Builder) -> list:
    """The channels of ``axis`` split into ``groups``: x viewed as (B, P, groups, M), P the
    axes before the channels, M the channels of a group times the axes after them;
    (x - mean) / sqrt(var + epsilon) over (P, M), back to x's shape, * gamma + beta per
    channel. The view keeps one unknown size: the axes on one side must be known."""
    tensor = node.input("inputs")
    x, base, shape = b.value(tensor), node.name, tensor.shape
    if node.layer.dialect == "keras2" and node.input("mask") is not None:
        raise ConversionError(f"layer {base!r}: a Keras 2 GroupNormalization given a mask "
                              f"(weighted moments) is not supported; drop the mask before it")
    axis = group_axis(node)
    groups = node.config.get("groups", 32)
    groups = shape[axis] if groups == -1 else groups
    before, after = shape[1:axis], shape[axis + 1:]
    if None not in after:
        view = [0, -1, groups, shape[axis] // groups * math.prod(after)]
    elif None not in before:
        view = [0, math.prod(before), groups, -1]
    else:
        raise ConversionError(f"layer {base!r}: GroupNormalization over an input with unknown "
                              f"sizes on both sides of axis {axis} {shape} is not supported; "
                              f"give the model fixed sizes on one side")
    grouped = b.op("Reshape", [x, b.ints(f"{base}/group_shape", view)], f"{base}/grouped")
    mean = b.reduce("ReduceMean", grouped, [1, 3], f"{base}/mean")
    centered = b.op("Sub", [grouped, mean], f"{base}/centered")
    variance = b.reduce("ReduceMean", b.op("Mul", [centered, centered], f"{base}/squared"),
                        [1, 3], f"{base}/variance")
    epsilon = b.constant(f"{base}/epsilon", np.float32(node.config.get("epsilon", 1e-3)))
    deviation = b.op("Sqrt", [b.op("Add", [variance, epsilon], f"{base}/variance_eps")],
                     f"{base}/deviation")
    y = b.op("Div", [centered, deviation], f"{base}/normalized_groups")
    y = b.op("Reshape", [y, b.op("Shape", [x], f"{base}/shape")], f"{base}/normalized")
    weights = named_weights(node)
    for name, op, out in (("gamma", "Mul", "scaled"), ("beta", "Add", "shifted")):
        if name in weights:
            y = b.op(op, [y, b.constant(f"{base}/{name}",
                                        _broadcast(weights[name], [axis], shape))],
                     f"{base}/{out}")
    return [y]
