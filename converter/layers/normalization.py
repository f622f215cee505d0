"""Normalization layers: LayerNormalization, BatchNormalization, UnitNormalization."""
from __future__ import annotations

from .registry import (WeightSpec, first_input, layer_kind, normalize_axis, same_as_input)


def _axes(node) -> list:
    axis = node.config.get("axis", -1)
    rank = len(first_input(node).shape)
    return [normalize_axis(a, rank) for a in (axis if isinstance(axis, list) else [axis])]


def _layer_norm_weights(node):
    shape = first_input(node).shape
    axes = _axes(node)
    param_shape = tuple(shape[a] for a in axes)
    names = [name for name, on in (("gamma", node.config.get("scale", True)),
                                   ("beta", node.config.get("center", True)
                                    and not node.config.get("rms_scaling"))) if on]
    return [WeightSpec(name, f"vars/{i}", param_shape) for i, name in enumerate(names)]


# LayerNormalization: (x - mean) / sqrt(var + epsilon) * gamma + beta over ``axis``
# (x / sqrt(mean(x²) + epsilon) * gamma with Keras 3's rms_scaling).
layer_kind("LayerNormalization", weights=_layer_norm_weights)(same_as_input)


def _batch_norm_weights(node):
    dim = (first_input(node).shape[_axes(node)[0]],)
    names = [n for n, on in (("gamma", node.config.get("scale", True)),
                             ("beta", node.config.get("center", True))) if on]
    names += ["moving_mean", "moving_variance"]
    return [WeightSpec(name, f"vars/{i}", dim) for i, name in enumerate(names)]


# BatchNormalization at inference: (x - moving_mean) / sqrt(moving_variance + epsilon)
# * gamma + beta; UnitNormalization: x / ||x||₂ over ``axis``.
layer_kind("BatchNormalization", weights=_batch_norm_weights)(same_as_input)
layer_kind("UnitNormalization")(same_as_input)
