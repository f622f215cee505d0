"""Emitters for the core family: Dense, EinsumDense, Embedding, Masking, the activation
layers (their functions live in ``activations.py``) and the layers that are the identity at
inference."""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from ..errors import ConversionError
from ..ir import Node
from ..layers.core import einsum_layout
from ..model import named_weights
from .activations import apply_activation
from .builder import Builder
from .registry import emits

# Keras' large negative number for masked softmax logits (float32)
MASKED_LOGIT = -1e9


def _weights(node: Node) -> dict:
    """The layer's float32 weights, LoRA factors merged in (``merge_lora``); refuses what
    the file cannot give us exactly."""
    policy = node.config.get("dtype")
    if isinstance(policy, dict) and "Quantized" in policy.get("class_name", ""):
        raise ConversionError(f"layer {node.name!r}: quantized {node.class_name} "
                              f"({policy.get('config', {}).get('name')}) not supported yet")
    weights = {name: np.asarray(value, dtype=np.float32)
               for name, value in named_weights(node).items()}
    if node.config.get("lora_rank") and node.layer.weights.layout != "saving_lib":
        if node.class_name not in LORA_WEIGHTS:
            raise ConversionError(f"layer {node.name!r}: a LoRA-enabled {node.class_name} "
                                  f"saved in the legacy .h5 layout keeps its LoRA factors "
                                  f"apart; not supported yet (save it as .keras, which "
                                  f"merges them)")
        merge_lora(node, weights, LORA_WEIGHTS[node.class_name])
    return weights


# The weight a legacy file's LoRA factors belong to
LORA_WEIGHTS = {"Dense": "kernel", "Embedding": "embeddings"}


def merge_lora(node: Node, weights: dict, name: str) -> None:
    """weights[name] += lora_alpha / lora_rank * lora_<name>_a @ lora_<name>_b, as Keras
    computes the weight it uses (lora_alpha defaults to lora_rank)."""
    rank = node.config["lora_rank"]
    alpha = node.config.get("lora_alpha") or rank
    a, b = weights.pop(f"lora_{name}_a"), weights.pop(f"lora_{name}_b")
    weights[name] = weights[name] + np.float32(alpha / rank) * (a @ b)


def _activation(node: Node, b: Builder, x: str) -> str:
    return apply_activation(b, x, node.config.get("activation"), node.name, node.layer.dialect)


@emits("Dense")
def dense(node: Node, b: Builder) -> list:
    """y = activation(x @ kernel + bias) on the last axis."""
    weights = _weights(node)
    y = b.op("MatMul", [b.value(node.input("inputs")),
                        b.constant(f"{node.name}/kernel", weights["kernel"])],
             f"{node.name}/matmul")
    if "bias" in weights:
        y = b.op("Add", [y, b.constant(f"{node.name}/bias", weights["bias"])],
                 f"{node.name}/biased")
    return [_activation(node, b, y)]


@emits("EinsumDense")
def einsum_dense(node: Node, b: Builder) -> list:
    """y = activation(einsum(equation, x, kernel) + bias) as one MatMul. The equation's
    letters are ``free`` (input and output: batch, time), ``shared`` (all three: a batched
    matmul), ``contracted`` (input and kernel), ``produced`` (kernel and output), or only in
    the input (summed away first; Keras refuses kernel-only letters). The input is
    transposed to (free, shared, contracted) and flattened to (free, shared, [1,] C), the
    kernel folded to (shared, C, P) in NumPy; the product (free, shared, [1,] P) is
    unflattened and transposed to the output's order."""
    layout = einsum_layout(node)
    base = node.name
    for spec in (layout.input, layout.kernel, layout.output):
        if len(set(spec)) != len(spec):
            raise ConversionError(f"layer {base!r}: EinsumDense equation "
                                  f"{node.config['equation']!r} repeats a letter; not "
                                  f"supported yet")
    weights = _weights(node)
    x_letters, kernel_letters, out = layout.input, layout.kernel, layout.output
    x = b.value(node.input("inputs"))

    summed = [i for i, c in enumerate(x_letters) if c not in kernel_letters + out]
    if summed:
        x = b.reduce("ReduceSum", x, summed, f"{base}/input_sum", keepdims=0)
        x_letters = "".join(c for c in x_letters if c in kernel_letters + out)

    free = [c for c in x_letters if c not in kernel_letters]
    shared = [c for c in x_letters if c in kernel_letters and c in out]
    contracted = [c for c in x_letters if c in kernel_letters and c not in out]
    produced = [c for c in kernel_letters if c not in x_letters]
    sizes = dict(zip(layout.kernel, layout.kernel_shape))

    x = _transpose(b, x, x_letters, free + shared + contracted, f"{base}/input_order")
    contracted_size = math.prod(sizes[c] for c in contracted)
    produced_size = math.prod(sizes[c] for c in produced)
    kernel = np.transpose(weights["kernel"],
                          [kernel_letters.index(c) for c in shared + contracted + produced])
    kernel = kernel.reshape([sizes[c] for c in shared] + [contracted_size, produced_size])
    kept = [0] * (len(free) + len(shared))  # Reshape's 0: keep that dim as it is
    if shared or len(contracted) != 1:
        x = b.op("Reshape", [x, b.ints(f"{base}/flat_shape",
                                        kept + ([1] if shared else []) + [contracted_size])],
                 f"{base}/flat_input")
    y = b.op("MatMul", [x, b.constant(f"{base}/kernel", kernel)], f"{base}/matmul")
    if shared or len(produced) != 1:
        y = b.op("Reshape", [y, b.ints(f"{base}/unflat_shape",
                                        kept + [sizes[c] for c in produced])],
                 f"{base}/unflat")
    y = _transpose(b, y, "".join(free + shared + produced), list(out), f"{base}/output_order")
    if "bias" in weights:
        y = b.op("Add", [y, b.constant(f"{base}/bias", weights["bias"])], f"{base}/biased")
    return [_activation(node, b, y)]


def _transpose(b: Builder, x: str, letters: str, order: list, base: str) -> str:
    perm = [letters.index(c) for c in order]
    return x if perm == sorted(perm) else b.op("Transpose", [x], base, perm=perm)


@emits("Embedding")
def embedding(node: Node, b: Builder) -> list:
    """y = embeddings[ids] (float ids truncated to int32); with mask_zero the mask is
    ids != 0, on the ids as given."""
    return embedding_lookup(node, b, b.constant(f"{node.name}/embeddings",
                                                _weights(node)["embeddings"]))


def embedding_lookup(node: Node, b: Builder, table: str) -> list:
    """[table[ids]] and, when the node computes one, its mask ids != 0 (Embedding and the
    layers that are an Embedding returning more)."""
    ids_tensor = node.input("inputs")
    ids = b.value(ids_tensor)
    indices = ids
    if ids_tensor.dtype not in ("int32", "int64"):
        indices = b.op("Cast", [ids], f"{node.name}/ids", to=TensorProto.INT32)
    outputs = [b.op("Gather", [table, indices], node.name, axis=0)]
    if node.mask_outputs:
        zero = b.constant(f"{node.name}/zero", np.zeros((), dtype=ids_tensor.dtype))
        equal = b.op("Equal", [ids, zero], f"{node.name}/padding")
        outputs.append(b.op("Not", [equal], f"{node.name}/mask"))
    return outputs


@emits("Masking")
def masking(node: Node, b: Builder) -> list:
    """mask = any(x != mask_value, axis=-1); y = where(mask[..., None], x, 0)."""
    x = b.value(node.input("inputs"))
    value = b.constant(f"{node.name}/mask_value", np.float32(node.config.get("mask_value", 0.0)))
    differs = b.op("Not", [b.op("Equal", [x, value], f"{node.name}/equal")],
                   f"{node.name}/differs")
    as_float = b.op("Cast", [differs], f"{node.name}/differs_float", to=TensorProto.FLOAT)
    any_step = b.reduce("ReduceMax", as_float, [-1], f"{node.name}/any")
    keep = b.op("Cast", [any_step], f"{node.name}/keep", to=TensorProto.BOOL)
    output = b.op("Where", [keep, x, b.constant(f"{node.name}/zero", np.float32(0))],
                  node.name)
    mask = b.op("Squeeze", [keep, b.ints(f"{node.name}/squeeze_axis", [-1])],
                f"{node.name}/mask")
    return [output, mask]


# ---------------------------------------------------------------------- activation layers


@emits("Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU")
def activation_layer(node: Node, b: Builder) -> list:
    """The layer's activation function, with its config as the function's options."""
    x = b.value(node.input("inputs"))
    y = apply_activation(b, x, {"class_name": node.class_name, "config": node.config},
                         node.name, node.layer.dialect)
    return [b.op("Identity", [x], node.name) if y == x else y]


@emits("Softmax")
def softmax(node: Node, b: Builder) -> list:
    """softmax(x) along ``axis`` (several axes: exp(x - logsumexp(x))). A mask (bool, or
    values > 0.5) masks logits: Keras 3 replaces them with -1e9 and zeroes the masked
    outputs; Keras 2 adds (1 - mask) * -1e9 (replaces with robust_masking), no zeroing."""
    x = b.value(node.input("inputs"))
    layer = {"class_name": "Softmax", "config": node.config}
    mask_tensor = node.input("mask")
    if mask_tensor is None:
        return [apply_activation(b, x, layer, node.name, node.layer.dialect)]
    base, mask = node.name, b.value(mask_tensor)
    negative = b.constant(f"{base}/masked_logit", np.float32(MASKED_LOGIT))
    if node.layer.dialect == "keras2" and not node.config.get("robust_masking"):
        as_float = b.op("Cast", [mask], f"{base}/mask_float", to=TensorProto.FLOAT)
        dropped = b.op("Sub", [b.constant(f"{base}/one", np.float32(1)), as_float],
                       f"{base}/dropped")
        adder = b.op("Mul", [dropped, negative], f"{base}/adder")
        return [apply_activation(b, b.op("Add", [x, adder], f"{base}/masked"), layer, base,
                                 "keras2")]
    if mask_tensor.dtype != "bool":
        half = b.constant(f"{base}/half", np.asarray(0.5).astype(mask_tensor.dtype))
        mask = b.op("Greater", [mask, half], f"{base}/mask_bool")
    masked = b.op("Where", [mask, x, negative], f"{base}/masked")
    y = apply_activation(b, masked, layer, base, node.layer.dialect)
    if node.layer.dialect == "keras2":
        return [y]
    return [b.op("Where", [mask, y, b.constant(f"{base}/zero", np.float32(0))], base)]


@emits("PReLU")
def prelu(node: Node, b: Builder) -> list:
    """x if x > 0 else alpha * x, alpha learned per position (1 on ``shared_axes``)."""
    alpha = b.constant(f"{node.name}/alpha", _weights(node)["alpha"])
    return [b.op("PRelu", [b.value(node.input("inputs")), alpha], node.name)]


@emits("Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
       "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization")
def identity(node: Node, b: Builder) -> list:
    """y = x: these layers only act in training."""
    return [b.op("Identity", [b.value(node.input("inputs"))], node.name)]
