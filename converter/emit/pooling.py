"""Emitters for the pooling family (see converter/layers/pooling.py).

A masked GlobalAveragePooling1D averages the kept steps only: sum(x · mask) / sum(mask),
so a row with every step masked gives 0 / 0 = NaN in both dialects, as in Keras. Keras 3
zeroes masked steps with ``where`` (any non-zero mask value keeps a step); Keras 2
multiplies by the mask cast to float.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..ir import Node
from ..layers.convolution import channels_first, split_channels
from .builder import Builder, onnx_dtype
from .convolution import padding_attributes, to_channels_first, to_keras_layout
from .registry import emits


def _spatial_axes(node: Node, rank: int) -> list:
    if channels_first(node):
        return list(range(2, rank))
    return list(range(1, rank - 1))


@emits("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
       "GlobalMaxPooling2D")
def global_pooling(node: Node, b: Builder) -> list:
    """Mean / max over every spatial axis (``keepdims`` keeps them as size 1); the
    masked mean of GlobalAveragePooling1D when a mask comes with the input."""
    tensor = node.input("inputs")
    axes = _spatial_axes(node, len(tensor.shape))
    keepdims = int(bool(node.config.get("keepdims")))
    if node.input("mask") is not None:
        return [_masked_mean(node, b, axes, keepdims)]
    op_type = "ReduceMax" if "Max" in node.class_name else "ReduceMean"
    return [b.reduce(op_type, b.value(tensor), axes, node.name, keepdims)]


def _masked_mean(node: Node, b: Builder, axes: list, keepdims: int) -> str:
    """sum over steps of the kept x / number of kept steps."""
    base = node.name
    tensor, mask = node.input("inputs"), node.input("mask")
    channel_axis = 1 if channels_first(node) else 2
    float_type = onnx_dtype(tensor.dtype)
    x, kept = b.value(tensor), b.value(mask)
    if node.layer.dialect == "keras3":
        if mask.dtype != "bool":
            kept = b.op("Cast", [kept], f"{base}/mask_bool", to=TensorProto.BOOL)
        kept = b.op("Unsqueeze", [kept, b.ints(f"{base}/channel_axis", [channel_axis])],
                    f"{base}/kept")
        x = b.op("Where", [kept, x, b.constant(f"{base}/zero", np.float32(0))],
                 f"{base}/masked")
        weights = b.op("Cast", [kept], f"{base}/weights", to=float_type)
    else:
        weights = b.op("Cast", [kept], f"{base}/mask_float", to=float_type)
        weights = b.op("Unsqueeze", [weights, b.ints(f"{base}/channel_axis",
                                                     [channel_axis])], f"{base}/weights")
        x = b.op("Mul", [x, weights], f"{base}/masked")
    total = b.reduce("ReduceSum", x, axes, f"{base}/sum", keepdims)
    count = b.reduce("ReduceSum", weights, axes, f"{base}/count", keepdims)
    return b.op("Div", [total, count], base)


@emits("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")
def window_pooling(node: Node, b: Builder) -> list:
    """Max / mean over ``pool_size`` windows moved by ``strides`` (default: pool_size).
    "same" padding never counts the padded positions (count_include_pad=0)."""
    tensor = node.input("inputs")
    sizes, _ = split_channels(node, tensor.shape)
    pool = _per_axis(node.config["pool_size"], len(sizes))
    strides = _per_axis(node.config.get("strides") or pool, len(sizes))
    padding = padding_attributes(node.config.get("padding", "valid"), sizes, pool, strides,
                                 (1,) * len(pool))
    op_type, counting = (("MaxPool", {}) if "Max" in node.class_name
                         else ("AveragePool", {"count_include_pad": 0}))
    pooled = b.op(op_type, [to_channels_first(node, b, tensor)], f"{node.name}/pool",
                  kernel_shape=list(pool), strides=list(strides), **counting, **padding)
    return [to_keras_layout(node, b, pooled, len(tensor.shape), node.name)]


def _per_axis(value, count: int) -> tuple:
    return (value,) * count if isinstance(value, int) else tuple(value)
