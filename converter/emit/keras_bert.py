"""Emitters for keras-bert's own layers (``keras_bert``; see converter/layers/keras_bert.py).
TokenEmbedding and EmbeddingSimilarity are keras-embed-sim's EmbeddingRet and EmbeddingSim
under other names."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from onnx import TensorProto

from ..ir import Node, Tensor
from ..layers.keras_bert import masked_conv_cut
from ..model import named_weights
from .builder import Builder
from .convolution import convolution
from .keras_transformer import embedding_ret, embedding_sim
from .registry import emits

emits("TokenEmbedding")(embedding_ret)
emits("EmbeddingSimilarity")(embedding_sim)


@emits("Masked")
def masked(node: Node, b: Builder) -> list:
    """``[x, positions]`` -> x, with the mask positions != 0 AND x's mask (and that mask as
    floats, with ``return_masked``)."""
    base = node.name
    x, where = node.input("inputs")
    chosen = b.op("Not", [b.op("Equal", [b.value(where), b.constant(
        f"{base}/zero", np.zeros((), where.dtype))], f"{base}/unchosen")], f"{base}/chosen")
    mask = (chosen if x.mask is None
            else b.op("And", [chosen, b.value(x.mask)], f"{base}/mask"))
    outputs = [b.op("Identity", [b.value(x)], base)]
    if node.config.get("return_masked"):
        outputs.append(b.op("Cast", [mask], f"{base}/masked", to=TensorProto.FLOAT))
    return outputs + [mask]


@emits("Extract")
def extract(node: Node, b: Builder) -> list:
    """x[:, index]."""
    index = b.ints(f"{node.name}/index", node.config["index"])
    return [b.op("Gather", [b.value(node.input("inputs")), index], node.name, axis=1)]


@emits("TaskEmbedding")
def task_embedding(node: Node, b: Builder) -> list:
    """x + embeddings[int(task)] for ``[x, task]``, zero for task 0 with ``mask_zero``."""
    base = node.name
    x, task = node.input("inputs")
    ids = b.value(task)
    if task.dtype != "int32":
        ids = b.op("Cast", [ids], f"{base}/ids", to=TensorProto.INT32)
    table = np.asarray(named_weights(node)["embeddings"], np.float32)
    embedded = b.op("Gather", [b.constant(f"{base}/embeddings", table), ids],
                    f"{base}/embedded", axis=0)
    if node.config.get("mask_zero"):
        chosen = b.op("Cast", [b.op("Not", [b.op("Equal", [ids, b.constant(
            f"{base}/zero", np.int32(0))], f"{base}/zero_task")], f"{base}/task")],
            f"{base}/task_float", to=TensorProto.FLOAT)
        embedded = b.op("Mul", [embedded, b.op("Unsqueeze", [chosen, b.ints(
            f"{base}/last", [-1])], f"{base}/task3")], f"{base}/masked")
    return [b.op("Add", [b.value(x), embedded], base)]


# What MaskedGlobalMaxPool1D subtracts from masked steps.
MASKED_STEP_PENALTY = 1e6


@emits("MaskedGlobalMaxPool1D")
def masked_global_max_pool_1d(node: Node, b: Builder) -> list:
    """max over the steps of x - (1 - mask) * 1e6."""
    base, x = node.name, b.value(node.input("inputs"))
    mask = node.input("mask")
    if mask is not None:
        dropped = b.op("Sub", [b.constant(f"{base}/one", np.float32(1)),
                               b.op("Cast", [b.value(mask)], f"{base}/mask_float",
                                    to=TensorProto.FLOAT)], f"{base}/dropped")
        penalty = b.op("Mul", [dropped, b.constant(f"{base}/penalty",
                                                   np.float32(MASKED_STEP_PENALTY))],
                       f"{base}/penalty")
        x = b.op("Sub", [x, b.op("Unsqueeze", [penalty, b.ints(f"{base}/last", [-1])],
                                 f"{base}/penalty3")], f"{base}/masked")
    return [b.reduce("ReduceMax", x, [-2], base, keepdims=0)]


@emits("MaskedConv1D")
def masked_conv_1d(node: Node, b: Builder) -> list:
    """Conv1D on x * mask[..., None]; the mask loses its first (k // 2) * d * 2 steps with
    ``valid`` padding."""
    base, tensor, mask = node.name, node.input("inputs"), node.input("mask")
    if mask is None:
        return convolution(node, b)
    keep = b.op("Unsqueeze", [b.op("Cast", [b.value(mask)], f"{base}/mask_float",
                                   to=TensorProto.FLOAT), b.ints(f"{base}/last", [-1])],
                f"{base}/keep")
    masked_input = Tensor(f"{base}/masked_input", tensor.shape, tensor.dtype)
    b.bind(masked_input, b.op("Mul", [b.value(tensor), keep], f"{base}/masked_input"))
    outputs = convolution(replace(node, inputs={"inputs": masked_input}), b)
    if node.mask_outputs:
        outputs.append(b.op("Slice", [b.value(mask), b.ints(f"{base}/cut", [masked_conv_cut(node)]),
                                      b.ints(f"{base}/end", [np.iinfo(np.int64).max]),
                                      b.ints(f"{base}/axis", [1])], f"{base}/mask"))
    return outputs
