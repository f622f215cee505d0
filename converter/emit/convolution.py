"""Emitters for the convolution family: Conv, transposed, depthwise and separable
convolutions (see converter/layers/convolution.py), and the channels-last <->
channels-first and padding helpers the pooling emitters share.

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
from ..layers.convolution import (channels_first, conv_settings, output_paddings,
                                  split_channels, transpose_output_size)
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


def _conv(node: Node, b: Builder, x: str, kernel: np.ndarray, bias, base: str,
          group: int = 1) -> str:
    """ONNX Conv of the channels-first ``x`` with the layer's window settings and padding;
    ``kernel`` already in ONNX's (out, in / group, k...) layout, ``bias`` an array or None."""
    kernel_size, strides, dilations = conv_settings(node)
    inputs = [x, b.constant(f"{base}/kernel", np.ascontiguousarray(kernel, np.float32))]
    if bias is not None:
        inputs.append(b.constant(f"{base}/bias", np.asarray(bias, np.float32)))
    sizes, _ = split_channels(node, node.input("inputs").shape)
    padding = padding_attributes(node.config.get("padding", "valid"), sizes, kernel_size,
                                 strides, dilations)
    return b.op("Conv", inputs, base, kernel_shape=list(kernel_size), strides=list(strides),
                dilations=list(dilations), group=group, **padding)


def _finish(node: Node, b: Builder, y: str) -> list:
    """A channels-first result back in the layer's layout, through its activation."""
    y = to_keras_layout(node, b, y, len(node.input("inputs").shape), f"{node.name}/convolved")
    return [apply_activation(b, y, node.config.get("activation"), node.name,
                             node.layer.dialect)]


def _onnx_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras' (k..., a, b) kernel as ONNX's (b, a, k...)."""
    rank = kernel.ndim
    return np.transpose(kernel, (rank - 1, rank - 2, *range(rank - 2)))


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras' (k..., channels, multiplier) as ONNX's grouped (channels * multiplier, 1, k...):
    output channel c * multiplier + m."""
    flat = kernel.reshape(kernel.shape[:-2] + (-1,))
    return np.moveaxis(flat, -1, 0)[:, None]


@emits("Conv1D", "Conv2D")
def convolution(node: Node, b: Builder) -> list:
    """y = activation(conv(x, kernel) + bias) with strides, dilation_rate, groups and
    valid / same / causal padding; the kernel (k..., in / groups, filters) is transposed
    to ONNX's (filters, in / groups, k...) at conversion time."""
    weights = named_weights(node)
    x = to_channels_first(node, b, node.input("inputs"))
    return _finish(node, b, _conv(node, b, x, _onnx_kernel(weights["kernel"]),
                                  weights.get("bias"), f"{node.name}/conv",
                                  node.config.get("groups", 1)))


@emits("DepthwiseConv1D", "DepthwiseConv2D")
def depthwise_convolution(node: Node, b: Builder) -> list:
    """A Conv with one group per input channel: y = activation(depthwise(x) + bias)."""
    weights = named_weights(node)
    kernel = weights.get("kernel", weights.get("depthwise_kernel"))
    x = to_channels_first(node, b, node.input("inputs"))
    return _finish(node, b, _conv(node, b, x, _depthwise_kernel(kernel), weights.get("bias"),
                                  f"{node.name}/depthwise", group=kernel.shape[-2]))


@emits("SeparableConv1D", "SeparableConv2D")
def separable_convolution(node: Node, b: Builder) -> list:
    """y = activation(pointwise(depthwise(x)) + bias): the grouped Conv with the layer's
    window settings, then a 1x1 Conv to ``filters``."""
    weights = named_weights(node)
    depthwise = weights["depthwise_kernel"]
    x = to_channels_first(node, b, node.input("inputs"))
    y = _conv(node, b, x, _depthwise_kernel(depthwise), None, f"{node.name}/depthwise",
              group=depthwise.shape[-2])
    pointwise = _onnx_kernel(weights["pointwise_kernel"])
    inputs = [y, b.constant(f"{node.name}/pointwise_kernel", np.ascontiguousarray(pointwise))]
    if "bias" in weights:
        inputs.append(b.constant(f"{node.name}/bias", weights["bias"]))
    return _finish(node, b, b.op("Conv", inputs, f"{node.name}/pointwise",
                                 kernel_shape=list(pointwise.shape[2:])))


@emits("Conv1DTranspose", "Conv2DTranspose")
def transposed_convolution(node: Node, b: Builder) -> list:
    """y = activation(conv_transpose(x, kernel) + bias), as TensorFlow's conv_transpose
    computes it for Keras' output length O: the full result (I - 1) * s + span is cropped
    by pad = max(full - O, 0) // 2 at the start (SAME; 0 for VALID) and to O at the end, or
    grown with zeros (ONNX output_padding). full - O does not depend on I, so the pads are
    fixed whatever the input size. The kernel (k..., filters, in) becomes (in, filters, k...)."""
    weights = named_weights(node)
    kernel_size, strides, dilations = conv_settings(node)
    padding = node.config.get("padding", "valid")
    begin, end, extra = [], [], []
    for k, s, p, d in zip(kernel_size, strides, output_paddings(node), dilations):
        full = (k - 1) * d + 1  # the full length for one input step (I = 1)
        excess = full - transpose_output_size(1, k, s, padding, p, d)
        start = max(excess, 0) // 2 if padding == "same" else 0
        begin.append(start)
        end.append(max(excess - start, 0))
        extra.append(max(start - excess, 0))
    inputs = [to_channels_first(node, b, node.input("inputs")),
              b.constant(f"{node.name}/kernel",
                         np.ascontiguousarray(_onnx_kernel(weights["kernel"]), np.float32))]
    if "bias" in weights:
        inputs.append(b.constant(f"{node.name}/bias", weights["bias"]))
    y = b.op("ConvTranspose", inputs, f"{node.name}/conv_transpose",
             kernel_shape=list(kernel_size), strides=list(strides), dilations=list(dilations),
             pads=begin + end, output_padding=extra if any(extra) else None)
    return _finish(node, b, y)
