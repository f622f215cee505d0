"""Core layers: Dense, EinsumDense, Embedding, Masking, activations, inference identities."""
from __future__ import annotations

from .registry import (NEW_MASK, WeightSpec, compute_dtype, first_input, layer_kind, no_mask,
                       same_as_input, with_last_dim)


def _dense_weights(node):
    units = node.config["units"]
    fan_in = first_input(node).shape[-1]
    specs = [WeightSpec("kernel", "vars/0", (fan_in, units))]
    if node.config.get("use_bias", True):
        specs.append(WeightSpec("bias", "vars/1", (units,)))
    return specs


@layer_kind("Dense", weights=_dense_weights)
def dense(node):
    """y = activation(x @ kernel + bias) on the last axis."""
    return [(with_last_dim(first_input(node).shape, node.config["units"]), compute_dtype(node))]


@layer_kind("EinsumDense")
def einsum_dense(node):
    """y = einsum(equation, x, kernel) + bias; output dims come from the input where the
    equation shares a letter with it, else from ``output_shape`` (aligned at the end)."""
    equation = node.config["equation"].replace(" ", "")
    inputs_spec, output_spec = equation.split("->")
    input_spec = inputs_spec.split(",")[0]
    in_shape = first_input(node).shape
    declared = node.config.get("output_shape")
    declared = [declared] if isinstance(declared, int) else list(declared or [])
    if in_shape is None:
        return [(None, compute_dtype(node))]
    ellipsis = len(in_shape) - len(input_spec.replace("...", ""))
    leading = tuple(in_shape[:ellipsis]) if output_spec.startswith("...") else ()
    letters = output_spec.replace("...", "")
    dims = [None] * (len(letters) - len(declared)) + declared
    for i, letter in enumerate(letters):
        at = input_spec.replace("...", "").find(letter)
        if at >= 0:
            dims[i] = in_shape[ellipsis + at] if input_spec.startswith("...") else in_shape[at]
    return [(leading + tuple(dims), compute_dtype(node))]


def _embedding_mask(node):
    return NEW_MASK if node.config.get("mask_zero") else None


@layer_kind("Embedding", output_mask=_embedding_mask,
            weights=lambda node: [WeightSpec("embeddings", "vars/0",
                                             (node.config["input_dim"],
                                              node.config["output_dim"]))])
def embedding(node):
    """y = embeddings[x]; with ``mask_zero`` the mask is x != 0."""
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

