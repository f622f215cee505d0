"""Pooling layers (channels_last): global and windowed average / max pooling."""
from __future__ import annotations

from .registry import compute_dtype, first_input, layer_kind, no_mask
from .convolution import window_output_size


@layer_kind("GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling2D",
            "GlobalMaxPooling2D", output_mask=no_mask, mask_roles={"inputs": "mask"})
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


@layer_kind("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D",
            output_mask=no_mask)
def window_pooling(node):
    """Max / mean over ``pool_size`` windows moved by ``strides``."""
    shape = first_input(node).shape
    spatial = len(shape) - 2
    pool = _tuple(node.config["pool_size"], spatial)
    strides = _tuple(node.config.get("strides") or node.config["pool_size"], spatial)
    dims = tuple(window_output_size(size, window, stride, node.config.get("padding", "valid"))
                 for size, window, stride in zip(shape[1:-1], pool, strides))
    return [((shape[0],) + dims + shape[-1:], compute_dtype(node))]


def _tuple(value, length):
    return (value,) * length if isinstance(value, int) else tuple(value)
