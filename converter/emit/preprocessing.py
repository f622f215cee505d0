"""Emitters for the preprocessing family: Rescaling, Normalization and the Random*
augmentation layers (see converter/layers/preprocessing.py)."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..ir import Node
from ..layers.preprocessing import (RANDOM_IDENTITIES, config_array, inference_dtype,
                                    normalization_axes)
from ..model import named_weights
from .builder import Builder, onnx_dtype
from .registry import emits
from .reshaping import resize

# Keras' backend.epsilon(), the floor under Normalization's standard deviation
KERAS_EPSILON = np.float32(1e-7)


def _as_float(node: Node, b: Builder, base: str) -> str:
    """The input cast to float32 unless it is float32 already (integer images)."""
    tensor = node.input("inputs")
    if tensor.dtype == "float32":
        return b.value(tensor)
    return b.op("Cast", [b.value(tensor)], base, to=TensorProto.FLOAT)


@emits("Rescaling")
def rescaling(node: Node, b: Builder) -> list:
    """y = float(x) * scale + offset, a number or one value per channel (last axis: Keras'
    default image_data_format, which the saved config does not record)."""
    base = node.name
    x = _as_float(node, b, f"{base}/float")
    scale = config_array(node.config["scale"]).astype(np.float32)
    offset = config_array(node.config.get("offset", 0.0)).astype(np.float32)
    y = b.op("Mul", [x, b.constant(f"{base}/scale", scale)], f"{base}/scaled")
    return [b.op("Add", [y, b.constant(f"{base}/offset", offset)], base)]


@emits("Normalization")
def normalization(node: Node, b: Builder) -> list:
    """y = (x - mean) / max(sqrt(variance), 1e-7), or with ``invert``
    y = mean + x * max(sqrt(variance), 1e-7); mean and variance (adapted weights, or the
    config's values broadcast over the kept axes) vary along ``axis`` only. The
    denominator is folded in float32 as Keras computes it."""
    tensor, base = node.input("inputs"), node.name
    shape, kept = tensor.shape, normalization_axes(node)
    kept_shape = tuple(shape[a] for a in kept)
    if node.config.get("mean") is not None:
        mean = np.broadcast_to(config_array(node.config["mean"]), kept_shape)
        variance = np.broadcast_to(config_array(node.config["variance"]), kept_shape)
    else:
        weights = named_weights(node)
        mean, variance = weights["mean"], weights["variance"]
    broadcast = [shape[a] if a in kept else 1 for a in range(len(shape))]
    mean = np.asarray(mean, np.float32).reshape(broadcast)
    deviation = np.maximum(np.sqrt(np.asarray(variance, np.float32)), KERAS_EPSILON)
    deviation = b.constant(f"{base}/deviation", deviation.reshape(broadcast))
    x, mean = _as_float(node, b, f"{base}/float"), b.constant(f"{base}/mean", mean)
    if node.config.get("invert"):
        return [b.op("Add", [mean, b.op("Mul", [x, deviation], f"{base}/scaled")], base)]
    return [b.op("Div", [b.op("Sub", [x, mean], f"{base}/centered"), deviation], base)]


@emits(*RANDOM_IDENTITIES)
def random_identity(node: Node, b: Builder) -> list:
    """y = x: augmentation only happens in training (tf_keras casts to its dtype)."""
    tensor = node.input("inputs")
    dtype = inference_dtype(node)
    if dtype == tensor.dtype:
        return [b.op("Identity", [b.value(tensor)], node.name)]
    return [b.op("Cast", [b.value(tensor)], node.name, to=onnx_dtype(dtype))]


@emits("RandomCrop")
def random_crop(node: Node, b: Builder) -> list:
    """Keras 3: y = x at inference. Keras 2 (smart_resize): the centered window of the
    largest size with the aspect ratio of (height, width), crop = min(size,
    int(float32(other size * target) / other target)), starting at int((size - crop) / 2),
    bilinearly resized (half-pixel centers) to (height, width)."""
    if node.layer.dialect == "keras3":
        return random_identity(node, b)
    tensor, base = node.input("inputs"), node.name
    rank = len(tensor.shape)
    axes = [rank - 3, rank - 2]
    target = [node.config["height"], node.config["width"]]
    x = _as_float(node, b, f"{base}/float")
    sizes = tensor.shape[rank - 3:rank - 1]
    if None not in sizes:
        crop = [min(sizes[i], int(np.float32(sizes[1 - i] * target[i])
                                  / np.float32(target[1 - i]))) for i in (0, 1)]
        start = [int(np.float32(size - c) / np.float32(2)) for size, c in zip(sizes, crop)]
        start, end = b.ints(f"{base}/starts", start), b.ints(
            f"{base}/ends", [s + c for s, c in zip(start, crop)])
    else:
        start, end = _centered_window(b, x, base, rank, target)
        crop = None
    x = b.op("Slice", [x, start, end, b.ints(f"{base}/axes", axes)], f"{base}/cropped")
    if crop == target:
        return [b.op("Identity", [x], base)]
    return [resize(b, x, base, "bilinear", rank, axes, sizes=b.ints(f"{base}/sizes", target))]


def _centered_window(b: Builder, x: str, base: str, rank: int, target: list) -> tuple:
    """RandomCrop's window over unknown sizes, computed at run time as Keras 2 does in
    float32: (start, end) of rows and columns."""
    size = b.op("Cast", [b.op("Shape", [x], f"{base}/size", start=rank - 3, end=rank - 1)],
                f"{base}/size_float", to=TensorProto.FLOAT)
    other = b.op("Gather", [size, b.ints(f"{base}/swap", [1, 0])], f"{base}/other_size")
    scaled = b.op("Mul", [other, b.constant(f"{base}/target", np.float32(target))],
                  f"{base}/other_times_target")
    ratio = b.op("Div", [scaled, b.constant(f"{base}/other_target", np.float32(target[::-1]))],
                 f"{base}/ratio")
    crop = b.op("Min", [size, b.op("Floor", [ratio], f"{base}/ratio_floor")], f"{base}/crop")
    slack = b.op("Sub", [size, crop], f"{base}/slack")
    start = b.op("Floor", [b.op("Div", [slack, b.constant(f"{base}/two", np.float32(2))],
                                f"{base}/half_slack")], f"{base}/start_float")
    start = b.op("Cast", [start], f"{base}/start", to=TensorProto.INT64)
    end = b.op("Add", [start, b.op("Cast", [crop], f"{base}/crop_int", to=TensorProto.INT64)],
               f"{base}/end")
    return start, end
