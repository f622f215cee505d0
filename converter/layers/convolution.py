"""Convolution layers (channels_last): Conv1D, Conv2D."""
from __future__ import annotations

from .registry import WeightSpec, compute_dtype, first_input, layer_kind


def window_output_size(size, window, stride, padding, dilation=1):
    """Output length of a sliding window: Keras' conv_output_length."""
    if size is None:
        return None
    span = (window - 1) * dilation + 1
    if padding in ("same", "causal"):
        return (size + stride - 1) // stride
    return (size - span + stride) // stride


def _conv_settings(node):
    spatial = len(first_input(node).shape) - 2

    def as_tuple(value):
        return (value,) * spatial if isinstance(value, int) else tuple(value)

    return (as_tuple(node.config["kernel_size"]), as_tuple(node.config.get("strides", 1)),
            as_tuple(node.config.get("dilation_rate", 1)))


def _conv_weights(node):
    kernel, _, _ = _conv_settings(node)
    channels = first_input(node).shape[-1]
    filters, groups = node.config["filters"], node.config.get("groups", 1)
    specs = [WeightSpec("kernel", "vars/0", kernel + (channels // groups, filters))]
    if node.config.get("use_bias", True):
        specs.append(WeightSpec("bias", "vars/1", (filters,)))
    return specs


@layer_kind("Conv1D", "Conv2D", weights=_conv_weights)
def convolution(node):
    """y = activation(conv(x, kernel) + bias), windows of ``kernel_size`` moved by
    ``strides``, spaced by ``dilation_rate``; ``groups`` split the channels."""
    shape = first_input(node).shape
    kernel, strides, dilation = _conv_settings(node)
    padding = node.config.get("padding", "valid")
    dims = tuple(window_output_size(size, k, s, padding, d)
                 for size, k, s, d in zip(shape[1:-1], kernel, strides, dilation))
    return [((shape[0],) + dims + (node.config["filters"],), compute_dtype(node))]
