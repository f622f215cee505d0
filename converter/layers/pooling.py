"""Pooling layers: global and windowed average / max pooling (channels_last, or
channels_first as configured)."""
from __future__ import annotations

from .convolution import join_channels, split_channels, window_output_size
from .registry import compute_dtype, first_input, layer_kind, no_mask


def global_pooling(node):
    """Mean / max over every axis between batch and channels (a masked mean ignores
    padded steps); ``keepdims`` keeps those axes as 1."""
    shape = first_input(node).shape
    if node.config.get("data_format") == "channels_first":
        kept = shape[:2]
        pooled = len(shape) - 2
        out = kept + (1,) * pooled if node.config.get("keepdims") else kept
    else:
        out = ((shape[0],) + (1,) * (len(shape) - 2) + shape[-1:]
               if node.config.get("keepdims") else (shape[0], shape[-1]))
    return [(out, compute_dtype(node))]


# Only GlobalAveragePooling1D uses a mask (both dialects); the others ignore it.
layer_kind("GlobalAveragePooling1D", output_mask=no_mask,
           mask_roles={"inputs": "mask"})(global_pooling)
layer_kind("GlobalMaxPooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
           output_mask=no_mask)(global_pooling)


@layer_kind("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D",
            output_mask=no_mask)
def window_pooling(node):
    """Max / mean over ``pool_size`` windows moved by ``strides``."""
    shape = first_input(node).shape
    sizes, channels = split_channels(node, shape)
    pool = _tuple(node.config["pool_size"], len(sizes))
    strides = _tuple(node.config.get("strides") or node.config["pool_size"], len(sizes))
    dims = tuple(window_output_size(size, window, stride, node.config.get("padding", "valid"))
                 for size, window, stride in zip(sizes, pool, strides))
    return [(join_channels(node, shape[0], dims, channels), compute_dtype(node))]


def _tuple(value, length):
    return (value,) * length if isinstance(value, int) else tuple(value)
