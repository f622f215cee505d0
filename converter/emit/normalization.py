"""Emitters for the normalization family: LayerNormalization, BatchNormalization,
UnitNormalization (see converter/layers/normalization.py)."""
from __future__ import annotations

import numpy as np

from ..ir import Node
from ..layers.normalization import normalized_axes
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
