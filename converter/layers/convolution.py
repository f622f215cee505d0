"""Convolution layers: Conv1D/2D, Conv1DTranspose/2DTranspose, DepthwiseConv1D/2D,
SeparableConv1D/2D (channels_last, or channels_first as configured)."""
from __future__ import annotations

from .registry import WeightSpec, compute_dtype, first_input, layer_kind, no_mask


def window_output_size(size, window, stride, padding, dilation=1):
    """Output length of a sliding window: Keras' conv_output_length."""
    if size is None:
        return None
    span = (window - 1) * dilation + 1
    if padding in ("same", "causal"):
        return (size + stride - 1) // stride
    return (size - span + stride) // stride


def channels_first(node) -> bool:
    return node.config.get("data_format") == "channels_first"


def split_channels(node, shape) -> tuple:
    """(spatial dims, channels) of a conv / pooling input or output shape."""
    if channels_first(node):
        return tuple(shape[2:]), shape[1]
    return tuple(shape[1:-1]), shape[-1]


def join_channels(node, batch, spatial: tuple, channels) -> tuple:
    if channels_first(node):
        return (batch, channels) + spatial
    return (batch,) + spatial + (channels,)


def conv_settings(node) -> tuple:
    """(kernel_size, strides, dilation_rate), each a tuple with one entry per spatial axis."""
    spatial = len(first_input(node).shape) - 2

    def as_tuple(value):
        return (value,) * spatial if isinstance(value, int) else tuple(value)

    return (as_tuple(node.config["kernel_size"]), as_tuple(node.config.get("strides", 1)),
            as_tuple(node.config.get("dilation_rate", 1)))


def with_bias(node, specs: list, size) -> list:
    """``specs`` and, unless ``use_bias`` is off, the bias (size,) stored after them."""
    if node.config.get("use_bias", True):
        specs = specs + [WeightSpec("bias", f"vars/{len(specs)}", (size,))]
    return specs


def conv_weights(node):
    kernel, _, _ = conv_settings(node)
    _, channels = split_channels(node, first_input(node).shape)
    filters, groups = node.config["filters"], node.config.get("groups", 1)
    specs = [WeightSpec("kernel", "vars/0", kernel + (channels // groups, filters))]
    return with_bias(node, specs, filters)


def _windowed(node, channels) -> list:
    """The output type of a windowed convolution with ``channels`` output channels."""
    shape = first_input(node).shape
    kernel, strides, dilation = conv_settings(node)
    padding = node.config.get("padding", "valid")
    sizes, _ = split_channels(node, shape)
    dims = tuple(window_output_size(size, k, s, padding, d)
                 for size, k, s, d in zip(sizes, kernel, strides, dilation))
    return [(join_channels(node, shape[0], dims, channels), compute_dtype(node))]


@layer_kind("Conv1D", "Conv2D", weights=conv_weights, output_mask=no_mask)
def convolution(node):
    """y = activation(conv(x, kernel) + bias), windows of ``kernel_size`` moved by
    ``strides``, spaced by ``dilation_rate``; ``groups`` split the channels."""
    return _windowed(node, node.config["filters"])


def input_channels(node) -> int:
    return split_channels(node, first_input(node).shape)[1]


def _depthwise_weights(node):
    """The kernel (k..., channels, depth_multiplier) (Keras 2 calls it depthwise_kernel)
    and the bias (channels * depth_multiplier,)."""
    kernel, _, _ = conv_settings(node)
    channels, multiplier = input_channels(node), node.config.get("depth_multiplier", 1)
    name = "depthwise_kernel" if node.layer.dialect == "keras2" else "kernel"
    specs = [WeightSpec(name, "vars/0", kernel + (channels, multiplier))]
    return with_bias(node, specs, channels * multiplier)


@layer_kind("DepthwiseConv1D", "DepthwiseConv2D", weights=_depthwise_weights,
            output_mask=no_mask)
def depthwise_convolution(node):
    """Each input channel c convolved with its own ``depth_multiplier`` kernels: output
    channel c * depth_multiplier + m; + bias, activation."""
    return _windowed(node, input_channels(node) * node.config.get("depth_multiplier", 1))


def _separable_weights(node):
    """depthwise_kernel (k..., channels, depth_multiplier), pointwise_kernel
    (1..., channels * depth_multiplier, filters), bias (filters,)."""
    kernel, _, _ = conv_settings(node)
    channels, multiplier = input_channels(node), node.config.get("depth_multiplier", 1)
    filters = node.config["filters"]
    specs = [WeightSpec("depthwise_kernel", "vars/0", kernel + (channels, multiplier)),
             WeightSpec("pointwise_kernel", "vars/1",
                        (1,) * len(kernel) + (channels * multiplier, filters))]
    return with_bias(node, specs, filters)


@layer_kind("SeparableConv1D", "SeparableConv2D", weights=_separable_weights,
            output_mask=no_mask)
def separable_convolution(node):
    """A depthwise convolution (strides, padding, dilation) then a 1x1 convolution to
    ``filters``; + bias, activation."""
    return _windowed(node, node.config["filters"])


def transpose_output_size(size, window, stride, padding, output_padding, dilation=1):
    """Output length of a transposed convolution: Keras' deconv_output_length."""
    if size is None:
        return None
    span = (window - 1) * dilation + 1
    if output_padding is None:
        return size * stride + (max(span - stride, 0) if padding == "valid" else 0)
    pad = span // 2 if padding == "same" else 0
    return (size - 1) * stride + span - 2 * pad + output_padding


def output_paddings(node) -> tuple:
    """``output_padding`` with one entry per spatial axis, or Nones."""
    kernel, _, _ = conv_settings(node)
    value = node.config.get("output_padding")
    if value is None:
        return (None,) * len(kernel)
    return (value,) * len(kernel) if isinstance(value, int) else tuple(value)


def _transpose_weights(node):
    kernel, _, _ = conv_settings(node)
    filters = node.config["filters"]
    specs = [WeightSpec("kernel", "vars/0", kernel + (filters, input_channels(node)))]
    return with_bias(node, specs, filters)


@layer_kind("Conv1DTranspose", "Conv2DTranspose", weights=_transpose_weights,
            output_mask=no_mask)
def transposed_convolution(node):
    """The gradient of a convolution (kernel (k..., filters, channels)): every input step
    spreads the kernel over the output, ``strides`` apart; ``output_padding`` fixes the
    output length; + bias, activation."""
    shape = first_input(node).shape
    kernel, strides, dilation = conv_settings(node)
    padding = node.config.get("padding", "valid")
    sizes, _ = split_channels(node, shape)
    dims = tuple(transpose_output_size(size, k, s, padding, p, d) for size, k, s, p, d
                 in zip(sizes, kernel, strides, output_paddings(node), dilation))
    return [(join_channels(node, shape[0], dims, node.config["filters"]), compute_dtype(node))]
