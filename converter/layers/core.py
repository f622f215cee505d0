"""Core layers: Dense, EinsumDense, Embedding, Masking, activations, inference identities."""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Optional

from .registry import (NEW_MASK, WeightSpec, compute_dtype, first_input, layer_kind, no_mask,
                       same_as_input, with_last_dim)


def lora_specs(node, merged: str, shape: tuple, first_index: int) -> list:
    """Keras 3's LoRA factors ``lora_<merged>_a`` (n, rank) and ``lora_<merged>_b``
    (rank, m) of a (n, m) weight: a legacy .h5 keeps them apart (Keras then uses
    merged + lora_alpha / lora_rank * a @ b); a .keras file stores the weight merged."""
    rank = node.config.get("lora_rank")
    weights = node.layer.weights
    if not rank or weights is None or weights.layout == "saving_lib":
        return []
    return [WeightSpec(f"lora_{merged}_a", f"vars/{first_index}", (shape[0], rank)),
            WeightSpec(f"lora_{merged}_b", f"vars/{first_index + 1}", (rank, shape[1]))]


def _dense_weights(node):
    units = node.config["units"]
    fan_in = first_input(node).shape[-1]
    specs = [WeightSpec("kernel", "vars/0", (fan_in, units))]
    if node.config.get("use_bias", True):
        specs.append(WeightSpec("bias", "vars/1", (units,)))
    return specs + lora_specs(node, "kernel", (fan_in, units), len(specs))


@layer_kind("Dense", weights=_dense_weights)
def dense(node):
    """y = activation(x @ kernel + bias) on the last axis."""
    return [(with_last_dim(first_input(node).shape, node.config["units"]), compute_dtype(node))]


@dataclass(frozen=True)
class EinsumLayout:
    """An EinsumDense equation with its ellipsis spelled out as letters of its own, and the
    shapes Keras derives from it (``_analyze_einsum_string``): the output (batch included,
    None where unknown), the kernel, and the bias (None without ``bias_axes``), which spans
    the output from its first bias letter to the end (1 on the other letters)."""

    input: str
    kernel: str
    output: str
    output_shape: tuple
    kernel_shape: tuple
    bias_shape: Optional[tuple]


def einsum_layout(node) -> EinsumLayout:
    equation = node.config["equation"].replace(" ", "")
    match = re.fullmatch(r"([a-zA-Z.]+),([a-zA-Z]+)->([a-zA-Z.]+)", equation)
    if match is None:
        raise ValueError(f"unsupported EinsumDense equation {equation!r}")
    input_spec, kernel, output_spec = match.groups()
    in_shape = tuple(first_input(node).shape)
    spare = [c for c in string.ascii_letters if c not in equation]
    elided = "".join(spare[:len(in_shape) - len(input_spec.replace("...", ""))])
    input_letters = input_spec.replace("...", elided)
    output = output_spec.replace("...", elided)
    # ``output_shape`` covers the output's own letters but the first (the batch) unless
    # the output starts with the ellipsis.
    named = output_spec.replace("...", "")
    declared = node.config.get("output_shape")
    declared = [declared] if isinstance(declared, int) else list(declared or [])
    if not output_spec.startswith("..."):
        named = named[1:]
    sizes = dict(zip(named, declared))
    sizes.update({letter: in_shape[i] for i, letter in enumerate(input_letters)})
    output_shape = tuple(sizes.get(letter) for letter in output)
    kernel_shape = tuple(sizes.get(letter) for letter in kernel)
    bias_axes = node.config.get("bias_axes")
    bias_shape = None
    if bias_axes:
        first = min(output.index(letter) for letter in bias_axes)
        bias_shape = tuple(sizes[letter] if letter in bias_axes else 1
                           for letter in output[first:])
    return EinsumLayout(input_letters, kernel, output, output_shape, kernel_shape, bias_shape)


def _einsum_dense_weights(node):
    layout = einsum_layout(node)
    specs = [WeightSpec("kernel", "vars/0", layout.kernel_shape)]
    if layout.bias_shape is not None:
        specs.append(WeightSpec("bias", "vars/1", layout.bias_shape))
    return specs


@layer_kind("EinsumDense", weights=_einsum_dense_weights, output_mask=no_mask)
def einsum_dense(node):
    """y = activation(einsum(equation, x, kernel) + bias); output dims come from the input
    where the equation shares a letter with it, else from ``output_shape``. It does not
    support masking: Keras (both) drops its input's mask."""
    if first_input(node).shape is None:
        return [(None, compute_dtype(node))]
    return [(einsum_layout(node).output_shape, compute_dtype(node))]


def _embedding_mask(node):
    return NEW_MASK if node.config.get("mask_zero") else None


def _embedding_weights(node):
    shape = (node.config["input_dim"], node.config["output_dim"])
    return [WeightSpec("embeddings", "vars/0", shape)] + lora_specs(node, "embeddings", shape, 1)


@layer_kind("Embedding", output_mask=_embedding_mask, weights=_embedding_weights)
def embedding(node):
    """y = embeddings[x]; with ``mask_zero`` the mask is x != 0. Keras 2's ``input_length``
    only declares the length; constraints and regularizers only act in training."""
    shape = first_input(node).shape
    out = None if shape is None else tuple(shape) + (node.config["output_dim"],)
    return [(out, compute_dtype(node))]


@layer_kind("Masking", output_mask=lambda node: NEW_MASK)
def masking(node):
    """y = x * mask[..., None], mask = any(x != mask_value, axis=-1)."""
    return same_as_input(node)


# Activations as layers, and the layers that are the identity at inference.
layer_kind("Softmax", mask_roles={"inputs": "mask"})(same_as_input)
layer_kind("Activation", "ReLU", "LeakyReLU", "ELU", "Identity",
           "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
           "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
           "ThresholdedReLU")(same_as_input)


def _prelu_weights(node):
    shape = list(first_input(node).shape[1:])
    for axis in node.config.get("shared_axes") or []:
        shape[axis - 1] = 1
    return [WeightSpec("alpha", "vars/0", tuple(shape))]


layer_kind("PReLU", weights=_prelu_weights)(same_as_input)


@layer_kind("Lambda", output_mask=no_mask)
def lambda_layer(node):
    """Arbitrary Python code: never run. The shape is only known when Keras 3 recorded it."""
    return None

