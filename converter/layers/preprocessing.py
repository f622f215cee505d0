"""Preprocessing layers that stay in an exported model: Rescaling, Normalization, and the
Random* image augmentation layers, which only act in training (Keras 2's RandomCrop
center-crops and resizes at inference)."""
from __future__ import annotations

import numpy as np

from .registry import (WeightSpec, compute_dtype, first_input, first_mask,
                       keras3_propagates_mask, layer_kind, no_mask, same_as_input)

# The augmentation layers that return their input's values unchanged at inference (in the
# dtype ``inference_dtype`` says). RandomCrop is apart.
RANDOM_IDENTITIES = (
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness",
    # Keras 3 only
    "RandomGrayscale", "RandomHue", "RandomSaturation", "RandomSharpness",
    "RandomPerspective", "RandomColorJitter", "RandomColorDegeneration", "RandomPosterization",
    "RandomErasing", "RandomGaussianBlur", "RandomInvert", "RandomElasticTransform", "AugMix",
    "CutMix", "MixUp", "RandAugment")


def config_array(value) -> np.ndarray:
    """A number, list or Keras 3 serialized NumPy array (``__numpy__``) from a config."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("value")
    return np.asarray(value, dtype=np.float64)


# The Keras 3 (3.15) augmentation layers that cast their input to the compute dtype even at
# inference; the others return an integer image as it is (whatever dtype they declare).
KERAS3_CASTING = {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                  "RandomSharpness", "RandomPerspective", "RandomErasing", "RandomGaussianBlur",
                  "RandomElasticTransform", "AugMix", "CutMix", "RandAugment"}


def inference_dtype(node) -> str:
    """The dtype an augmentation layer returns at inference: tf_keras' always cast to the
    compute dtype, Keras 3's as ``KERAS3_CASTING`` says."""
    if node.layer.dialect == "keras2" or node.class_name in KERAS3_CASTING:
        return compute_dtype(node)
    return first_input(node).dtype


def _augmentation_mask(node):
    """No augmentation layer supports masking. Keras 3 drops the mask; tf_keras returns
    the very input tensor at inference when no cast is needed, and it keeps its mask."""
    if node.layer.dialect == "keras2" and first_input(node).dtype == inference_dtype(node):
        return first_mask(node)
    return None


@layer_kind(*RANDOM_IDENTITIES, output_mask=_augmentation_mask)
def random_identity(node):
    """y = x at inference."""
    return [(first_input(node).shape, inference_dtype(node))]


@layer_kind("RandomCrop", output_mask=no_mask)
def random_crop(node):
    """Keras 3 at inference: y = x, whatever size it declares. Keras 2: the largest centered
    window with the aspect ratio of (height, width), bilinearly resized to it."""
    shape = first_input(node).shape
    if node.layer.dialect == "keras3":
        return [(shape, inference_dtype(node))]
    return [(shape[:-3] + (node.config["height"], node.config["width"]) + shape[-1:],
             compute_dtype(node))]


# Rescaling: y = float(x) * scale + offset (scale and offset numbers or per-channel lists).
# Rescaling and Normalization pass the mask on in Keras 3 only.
layer_kind("Rescaling", output_mask=keras3_propagates_mask)(same_as_input)


def normalization_axes(node) -> tuple:
    """The kept axes of a Normalization layer (its ``axis``), sorted and non-negative."""
    axis = node.config.get("axis", -1)
    rank = len(first_input(node).shape)
    axes = () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a + rank if a < 0 else a for a in axes))


def _normalization_weights(node):
    """mean, variance (the input's sizes on the kept axes) and count, when adapted; none
    when the config gives ``mean`` and ``variance``."""
    if node.config.get("mean") is not None:
        return []
    shape = first_input(node).shape
    kept = tuple(shape[a] for a in normalization_axes(node))
    return [WeightSpec("mean", "vars/0", kept), WeightSpec("variance", "vars/1", kept),
            WeightSpec("count", "vars/2", ())]


# Normalization: y = (x - mean) / max(sqrt(variance), 1e-7); with ``invert``
# y = mean + x * max(sqrt(variance), 1e-7). Statistics per position of the kept axes.
layer_kind("Normalization", weights=_normalization_weights,
           output_mask=keras3_propagates_mask)(same_as_input)
