"""Reshaping layers: Reshape, Flatten, Permute, RepeatVector, Cropping1D/2D,
ZeroPadding1D/2D, UpSampling1D/2D. None of them carries a mask on."""
from __future__ import annotations

import math

from .convolution import join_channels, split_channels
from .registry import compute_dtype, first_input, layer_kind, no_mask


def pair(value) -> tuple:
    return (value, value) if isinstance(value, int) else tuple(value)


@layer_kind("Reshape", output_mask=no_mask)
def reshape(node):
    """Reshape every sample to ``target_shape`` (one -1 is inferred)."""
    shape = first_input(node).shape
    target = list(node.config["target_shape"])
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        total = None if shape is None or None in shape[1:] else math.prod(shape[1:])
        target[target.index(-1)] = None if total is None else total // known
    return [((shape[0] if shape else None,) + tuple(target), compute_dtype(node))]


@layer_kind("Flatten", output_mask=no_mask)
def flatten(node):
    """(B, d1, d2, ...) -> (B, d1 * d2 * ...)."""
    shape = first_input(node).shape
    rest = None if None in shape[1:] else math.prod(shape[1:])
    return [((shape[0], rest), compute_dtype(node))]


@layer_kind("Permute", output_mask=no_mask)
def permute(node):
    """Permute the non-batch axes by ``dims`` (1-based)."""
    shape = first_input(node).shape
    return [((shape[0],) + tuple(shape[d] for d in node.config["dims"]), compute_dtype(node))]


@layer_kind("RepeatVector", output_mask=no_mask)
def repeat_vector(node):
    """(B, D) -> (B, n, D)."""
    batch, features = first_input(node).shape
    return [((batch, node.config["n"], features), compute_dtype(node))]


def steps_axis(node) -> int:
    """The time axis of a 1D reshaping layer: 2 with ``channels_first`` (Keras 3's
    ZeroPadding1D), else 1."""
    return 2 if node.config.get("data_format") == "channels_first" else 1


def _resize_steps(node, change):
    shape = list(first_input(node).shape)
    axis = steps_axis(node)
    shape[axis] = None if shape[axis] is None else change(shape[axis])
    return [(tuple(shape), compute_dtype(node))]


@layer_kind("Cropping1D", output_mask=no_mask)
def cropping_1d(node):
    """Drop ``cropping`` steps at the start and end of the time axis."""
    start, end = pair(node.config["cropping"])
    return _resize_steps(node, lambda steps: steps - start - end)


@layer_kind("ZeroPadding1D", output_mask=no_mask)
def zero_padding_1d(node):
    """Add ``padding`` zero steps at the start and end of the time axis."""
    start, end = pair(node.config["padding"])
    return _resize_steps(node, lambda steps: steps + start + end)


@layer_kind("UpSampling1D", output_mask=no_mask)
def up_sampling_1d(node):
    """Repeat every step ``size`` times."""
    return _resize_steps(node, lambda steps: steps * node.config["size"])


def spatial_pairs(value) -> tuple:
    """A 2D layer's ``padding`` / ``cropping``: an int, (rows, cols) or ((top, bottom),
    (left, right)), as ((top, bottom), (left, right))."""
    if isinstance(value, int):
        return ((value, value), (value, value))
    return tuple(pair(v) for v in value)


def _resize_spatial(node, change):
    """The output type of a 2D layer that maps each spatial size ``n`` of axis ``i`` to
    ``change(i, n)``."""
    shape = first_input(node).shape
    sizes, channels = split_channels(node, shape)
    sizes = tuple(None if n is None else change(i, n) for i, n in enumerate(sizes))
    return [(join_channels(node, shape[0], sizes, channels), compute_dtype(node))]


@layer_kind("Cropping2D", output_mask=no_mask)
def cropping_2d(node):
    """Drop ``cropping`` rows at the top and bottom and columns at the left and right."""
    crops = spatial_pairs(node.config["cropping"])
    return _resize_spatial(node, lambda i, n: n - sum(crops[i]))


@layer_kind("ZeroPadding2D", output_mask=no_mask)
def zero_padding_2d(node):
    """Add ``padding`` zero rows at the top and bottom and columns at the left and right."""
    pads = spatial_pairs(node.config["padding"])
    return _resize_spatial(node, lambda i, n: n + sum(pads[i]))


@layer_kind("UpSampling2D", output_mask=no_mask)
def up_sampling_2d(node):
    """Rows and columns scaled by ``size``, by ``interpolation`` (nearest: repeated)."""
    size = pair(node.config["size"])
    return _resize_spatial(node, lambda i, n: n * size[i])
