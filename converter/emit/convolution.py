"""Emitters for the convolution family (see converter/layers/convolution.py), and the
channels-last <-> channels-first and padding helpers the pooling emitters share.

ONNX Conv / pooling work channels_first: a channels_last layer's input is transposed in and
its output out. Keras' "same" padding (TensorFlow's SAME) pads ``total`` =
max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0) with the extra step at the END: the
pads are written out whenever they are known at conversion time (always with stride 1),
else ONNX's ``auto_pad=SAME_UPPER`` computes the same pads at run time.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Node, Tensor
from ..layers.convolution import channels_first, conv_settings, split_channels
from ..model import named_weights
from .activations import apply_activation
from .builder import Builder
from .registry import emits


def to_channels_first(node: Node, b: Builder, tensor: Tensor) -> str:
    """The input in ONNX's (batch, channels, spatial...) layout."""
    if channels_first(node):
        return b.value(tensor)
    rank = len(tensor.shape)
    return b.op("Transpose", [b.value(tensor)], f"{node.name}/channels_first",
                perm=[0, rank - 1, *range(1, rank - 1)])


def to_keras_layout(node: Node, b: Builder, x: str, rank: int, base: str) -> str:
    """An ONNX (batch, channels, spatial...) result in the layer's data_format."""
    if channels_first(node):
        return x
    return b.op("Transpose", [x], base, perm=[0, *range(2, rank), 1])


def padding_attributes(padding: str, sizes: tuple, kernel: tuple, strides: tuple,
                       dilations: tuple) -> dict:
    """ONNX ``pads`` (or ``auto_pad``) for Keras' padding over spatial ``sizes``."""
    if padding == "valid":
        return {}
    if padding == "causal":  # Conv1D: (k - 1) * d steps before, none after
        return {"pads": [(kernel[0] - 1) * dilations[0], 0]}
    before, after = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        span = (k - 1) * d + 1
        if s == 1:
            total = span - 1
        elif size is None:
            return {"auto_pad": "SAME_UPPER"}
        else:
            total = max((math.ceil(size / s) - 1) * s + span - size, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return {"pads": before + after}


@emits("Conv1D", "Conv2D")
def convolution(node: Node, b: Builder) -> list:
    """y = activation(conv(x, kernel) + bias) with strides, dilation_rate, groups and
    valid / same / causal padding; the kernel (k..., in / groups, filters) is transposed
    to ONNX's (filters, in / groups, k...) at conversion time."""
    tensor = node.input("inputs")
    rank = len(tensor.shape)
    kernel_size, strides, dilations = conv_settings(node)
    weights = named_weights(node)
    kernel = np.transpose(weights["kernel"], (rank - 1, rank - 2, *range(rank - 2)))
    inputs = [to_channels_first(node, b, tensor),
              b.constant(f"{node.name}/kernel", np.ascontiguousarray(kernel))]
    if "bias" in weights:
        inputs.append(b.constant(f"{node.name}/bias", weights["bias"]))
    sizes, _ = split_channels(node, tensor.shape)
    padding = padding_attributes(node.config.get("padding", "valid"), sizes, kernel_size,
                                 strides, dilations)
    output = b.op("Conv", inputs, f"{node.name}/conv", kernel_shape=list(kernel_size),
                  strides=list(strides), dilations=list(dilations),
                  group=node.config.get("groups", 1), **padding)
    output = to_keras_layout(node, b, output, rank, f"{node.name}/convolved")
    return [apply_activation(b, output, node.config.get("activation"), node.name,
                             node.layer.dialect)]
