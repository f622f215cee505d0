"""Convolution layers: Conv1D, Conv2D (channels_last, or channels_first as configured)."""
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


def conv_weights(node):
    kernel, _, _ = conv_settings(node)
    _, channels = split_channels(node, first_input(node).shape)
    filters, groups = node.config["filters"], node.config.get("groups", 1)
    specs = [WeightSpec("kernel", "vars/0", kernel + (channels // groups, filters))]
    if node.config.get("use_bias", True):
        specs.append(WeightSpec("bias", "vars/1", (filters,)))
    return specs


@layer_kind("Conv1D", "Conv2D", weights=conv_weights, output_mask=no_mask)
def convolution(node):
    """y = activation(conv(x, kernel) + bias), windows of ``kernel_size`` moved by
    ``strides``, spaced by ``dilation_rate``; ``groups`` split the channels."""
    shape = first_input(node).shape
    kernel, strides, dilation = conv_settings(node)
    padding = node.config.get("padding", "valid")
    sizes, _ = split_channels(node, shape)
    dims = tuple(window_output_size(size, k, s, padding, d)
                 for size, k, s, d in zip(sizes, kernel, strides, dilation))
    return [(join_channels(node, shape[0], dims, node.config["filters"]), compute_dtype(node))]
