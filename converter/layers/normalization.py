"""Normalization layers: LayerNormalization, BatchNormalization, UnitNormalization."""
from __future__ import annotations

from .registry import (WeightSpec, first_input, from_package, layer_kind, no_mask,
                       normalize_axis, same_as_input)


def normalized_axes(node) -> list:
    """The layer's ``axis`` (an int or a list) as sorted non-negative axes. A Keras 2
    BatchNormalization with ``virtual_batch_size`` saves its axes shifted by one (they
    index its ghost-batch reshape; tf_keras cannot reload that file itself)."""
    axis = node.config.get("axis", -1)
    rank = len(first_input(node).shape)
    shift = 1 if node.config.get("virtual_batch_size") else 0
    return sorted(normalize_axis(a, rank) - shift
                  for a in (axis if isinstance(axis, list) else [axis]))


def layer_norm_weights(node):
    """gamma with ``scale`` (Keras 3: or ``rms_scaling``), beta with ``center`` (Keras 3:
    and not ``rms_scaling``), each of the input's sizes on the normalized axes."""
    shape = first_input(node).shape
    param_shape = tuple(shape[a] for a in normalized_axes(node))
    rms = node.layer.dialect == "keras3" and node.config.get("rms_scaling")
    names = [name for name, on in (("gamma", node.config.get("scale", True) or rms),
                                   ("beta", node.config.get("center", True) and not rms))
             if on]
    return [WeightSpec(name, f"vars/{i}", param_shape) for i, name in enumerate(names)]


# LayerNormalization: (x - mean) / sqrt(var + epsilon) * gamma + beta over ``axis``
# (x / sqrt(var + epsilon) * gamma with Keras 3's rms_scaling).
layer_kind("LayerNormalization", weights=layer_norm_weights)(same_as_input)


def _batch_norm_weights(node):
    """gamma, beta (with ``scale`` / ``center``), moving_mean, moving_variance: (size,) on
    one axis; Keras 2 with several axes or a virtual batch keeps them at the input's rank
    (1 off the axes, one more leading 1 with ``virtual_batch_size``)."""
    shape, axes = first_input(node).shape, normalized_axes(node)
    if len(axes) == 1 and not node.config.get("virtual_batch_size"):
        param_shape = (shape[axes[0]],)
    else:
        param_shape = tuple(shape[a] if a in axes else 1 for a in range(len(shape)))
        if node.config.get("virtual_batch_size"):
            param_shape = param_shape[:1] + (1,) + param_shape[1:]
    names = [n for n, on in (("gamma", node.config.get("scale", True)),
                             ("beta", node.config.get("center", True))) if on]
    names += ["moving_mean", "moving_variance"]
    return [WeightSpec(name, f"vars/{i}", param_shape) for i, name in enumerate(names)]


# BatchNormalization at inference: (x - moving_mean) / sqrt(moving_variance + epsilon)
# * gamma + beta; UnitNormalization: x / ||x||₂ over ``axis``.
layer_kind("BatchNormalization", weights=_batch_norm_weights)(same_as_input)
layer_kind("UnitNormalization")(same_as_input)


def _rms_weights(node):
    """scale, of the input's sizes on the normalized axes."""
    shape = first_input(node).shape
    return [WeightSpec("scale", "vars/0", tuple(shape[a] for a in normalized_axes(node)))]


# RMSNormalization (Keras 3): x * rsqrt(mean(x², axis) + epsilon) * scale. It does not
# support masking: Keras drops its input's mask (a masked Embedding's padding is no longer
# masked in the attention after a pre-norm). Keras' class, by its module (or, where none
# is recorded, by the ``axis`` only it writes): keras_hub's classes of the name are others.
layer_kind("RMSNormalization", weights=_rms_weights, output_mask=no_mask,
           matches=from_package("keras", lambda config: "axis" in config))(same_as_input)


def group_axis(node) -> int:
    return normalize_axis(node.config.get("axis", -1), len(first_input(node).shape))


def _group_norm_weights(node):
    """gamma with ``scale``, beta with ``center``: one per channel of ``axis``."""
    channels = first_input(node).shape[group_axis(node)]
    names = [n for n, on in (("gamma", node.config.get("scale", True)),
                             ("beta", node.config.get("center", True))) if on]
    return [WeightSpec(name, f"vars/{i}", (channels,)) for i, name in enumerate(names)]


# GroupNormalization: the channels of ``axis`` split into ``groups``; each sample's group
# normalized over its channels and every non-batch axis, then * gamma + beta per channel.
# tf_keras' call takes a mask (weighted moments): handed in so the emitter can refuse it.
layer_kind("GroupNormalization", weights=_group_norm_weights,
           mask_roles={"inputs": "mask"})(same_as_input)
