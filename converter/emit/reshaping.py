"""Emitters for the reshaping family (see converter/layers/reshaping.py). The batch axis
stays dynamic: reshapes copy it with 0 and infer one axis with -1."""
from __future__ import annotations

import numpy as np

from ..errors import ConversionError
from ..ir import Node
from ..layers.convolution import channels_first
from ..layers.reshaping import pair, spatial_pairs, steps_axis
from .builder import Builder
from .registry import emits

# Keras' interpolations (TensorFlow's resize, half-pixel centers, no antialiasing) as ONNX
# Resize attributes. Nearest with integer factors repeats pixels: floor(out / factor).
# TensorFlow's bicubic reads its kernel from a 1024-entry table: no ONNX mode matches it
# (1e-3 off at best), so bicubic, like the lanczos and area kernels, is refused.
RESIZE_MODES = {
    "nearest": dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor"),
    "bilinear": dict(mode="linear", coordinate_transformation_mode="half_pixel"),
}

SLICE_TO_END = np.iinfo(np.int64).max


def _reshape(b: Builder, x: str, shape: list, base: str) -> str:
    return b.op("Reshape", [x, b.ints(f"{base}/shape", shape)], base)


@emits("Reshape")
def reshape(node: Node, b: Builder) -> list:
    """y = reshape(x, (batch, *target_shape)); a -1 in target_shape is inferred."""
    x = b.value(node.input("inputs"))
    return [_reshape(b, x, [0, *node.config["target_shape"]], node.name)]


@emits("Flatten")
def flatten(node: Node, b: Builder) -> list:
    """y = reshape(x, (batch, -1)), channels moved last first with ``channels_first``."""
    tensor = node.input("inputs")
    x, rank = b.value(tensor), len(tensor.shape)
    if node.config.get("data_format") == "channels_first" and rank > 2:
        x = b.op("Transpose", [x], f"{node.name}/channels_last",
                 perm=[0, *range(2, rank), 1])
    return [_reshape(b, x, [0, -1], node.name)]


@emits("Permute")
def permute(node: Node, b: Builder) -> list:
    """y = transpose(x, (0, *dims)); ``dims`` count from 1 (the batch stays first)."""
    x = b.value(node.input("inputs"))
    return [b.op("Transpose", [x], node.name, perm=[0, *node.config["dims"]])]


@emits("RepeatVector")
def repeat_vector(node: Node, b: Builder) -> list:
    """(B, D) -> (B, n, D): every row repeated n times."""
    x = b.value(node.input("inputs"))
    row = b.op("Unsqueeze", [x, b.ints(f"{node.name}/axis", [1])], f"{node.name}/row")
    return [b.op("Expand", [row, b.ints(f"{node.name}/shape", [1, node.config["n"], 1])],
                 node.name)]


@emits("Cropping1D")
def cropping_1d(node: Node, b: Builder) -> list:
    """y = x[:, start:steps - end, :]."""
    start, end = pair(node.config["cropping"])
    x = b.value(node.input("inputs"))
    return [b.op("Slice", [x, b.ints(f"{node.name}/starts", [start]),
                           b.ints(f"{node.name}/ends", [-end if end else SLICE_TO_END]),
                           b.ints(f"{node.name}/axes", [1])], node.name)]


@emits("ZeroPadding1D")
def zero_padding_1d(node: Node, b: Builder) -> list:
    """``padding`` zero steps added before and after the time axis."""
    start, end = pair(node.config["padding"])
    tensor = node.input("inputs")
    before = [0] * len(tensor.shape)
    after = [0] * len(tensor.shape)
    before[steps_axis(node)], after[steps_axis(node)] = start, end
    return [b.op("Pad", [b.value(tensor), b.ints(f"{node.name}/pads", before + after)],
                 node.name, mode="constant")]


@emits("UpSampling1D")
def up_sampling_1d(node: Node, b: Builder) -> list:
    """Every step repeated ``size`` times in place: (B, T, D) -> (B, T * size, D)."""
    tensor = node.input("inputs")
    size = node.config["size"]
    steps = b.op("Unsqueeze", [b.value(tensor), b.ints(f"{node.name}/axis", [2])],
                 f"{node.name}/steps")
    repeated = b.op("Expand", [steps, b.ints(f"{node.name}/repeats", [1, 1, size, 1])],
                    f"{node.name}/repeated")
    features = tensor.shape[-1]
    if features is not None:
        return [_reshape(b, repeated, [0, -1, features], node.name)]
    shape = b.op("Concat", [b.ints(f"{node.name}/leading", [0, -1]),
                            b.op("Shape", [b.value(tensor)], f"{node.name}/features",
                                 start=2)], f"{node.name}/shape", axis=0)
    return [b.op("Reshape", [repeated, shape], node.name)]


def spatial_axes(node: Node, rank: int) -> list:
    """The axes of a 2D layer's rows and columns."""
    return list(range(2, rank)) if channels_first(node) else list(range(1, rank - 1))


@emits("Cropping2D")
def cropping_2d(node: Node, b: Builder) -> list:
    """y = x[:, top:rows - bottom, left:cols - right] (channels last)."""
    tensor = node.input("inputs")
    crops = spatial_pairs(node.config["cropping"])
    return [b.op("Slice", [b.value(tensor),
                           b.ints(f"{node.name}/starts", [start for start, _ in crops]),
                           b.ints(f"{node.name}/ends",
                                  [-end if end else SLICE_TO_END for _, end in crops]),
                           b.ints(f"{node.name}/axes", spatial_axes(node, len(tensor.shape)))],
                 node.name)]


@emits("ZeroPadding2D")
def zero_padding_2d(node: Node, b: Builder) -> list:
    """``padding`` zero rows above and below, zero columns left and right."""
    tensor = node.input("inputs")
    rank = len(tensor.shape)
    before, after = [0] * rank, [0] * rank
    for axis, (start, end) in zip(spatial_axes(node, rank), spatial_pairs(node.config["padding"])):
        before[axis], after[axis] = start, end
    return [b.op("Pad", [b.value(tensor), b.ints(f"{node.name}/pads", before + after)],
                 node.name, mode="constant")]


def resize(b: Builder, x: str, base: str, interpolation: str, rank: int, axes: list, *,
           scales=None, sizes=None, where: str = "") -> str:
    """ONNX Resize of ``axes`` by float ``scales`` or to the int64 value ``sizes``, with
    Keras' (TensorFlow's) ``interpolation``."""
    if interpolation not in RESIZE_MODES:
        raise ConversionError(f"{where}: interpolation {interpolation!r} is not supported; "
                              f"use one of {', '.join(RESIZE_MODES)}")
    attributes = RESIZE_MODES[interpolation]
    if scales is not None:
        full = np.ones(rank, np.float32)
        full[axes] = scales
        return b.op("Resize", [x, None, b.constant(f"{base}/scales", full)], base, **attributes)
    if b.opset >= 18:
        return b.op("Resize", [x, None, None, sizes], base, axes=list(axes), **attributes)
    full = b.op("Concat", [b.op("Shape", [x], f"{base}/leading", end=axes[0]), sizes,
                           b.op("Shape", [x], f"{base}/trailing", start=axes[-1] + 1)],
                f"{base}/sizes", axis=0)
    return b.op("Resize", [x, None, None, full], base, **attributes)


@emits("UpSampling2D")
def up_sampling_2d(node: Node, b: Builder) -> list:
    """Rows and columns scaled by ``size``: nearest repeats each pixel, bilinear
    interpolates with half-pixel centers as TensorFlow does."""
    tensor = node.input("inputs")
    rank = len(tensor.shape)
    return [resize(b, b.value(tensor), node.name, node.config.get("interpolation", "nearest"),
                   rank, spatial_axes(node, rank), scales=list(pair(node.config["size"])),
                   where=f"layer {node.name!r} (UpSampling2D)")]
