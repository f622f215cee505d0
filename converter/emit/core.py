"""Emitters for core layers that produce masks: Embedding and Masking."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..ir import Node
from ..model import named_weights
from .builder import Builder
from .registry import emits


@emits("Embedding")
def embedding(node: Node, b: Builder) -> list:
    """y = embeddings[ids]; with mask_zero the mask is ids != 0."""
    ids_tensor = node.data_inputs()[0]
    ids = b.value(ids_tensor)
    if ids_tensor.dtype not in ("int32", "int64"):
        ids = b.op("Cast", [ids], f"{node.name}/ids", to=TensorProto.INT32)
    table = b.constant(f"{node.name}/embeddings", named_weights(node)["embeddings"])
    outputs = [b.op("Gather", [table, ids], node.name, axis=0)]
    if node.mask_outputs:
        zero = b.constant(f"{node.name}/zero", np.zeros((), dtype=_numpy_int(ids_tensor)))
        equal = b.op("Equal", [ids, zero], f"{node.name}/padding")
        outputs.append(b.op("Not", [equal], f"{node.name}/mask"))
    return outputs


def _numpy_int(tensor) -> type:
    return np.int64 if tensor.dtype == "int64" else np.int32


@emits("Masking")
def masking(node: Node, b: Builder) -> list:
    """mask = any(x != mask_value, axis=-1); y = where(mask[..., None], x, 0)."""
    x = b.value(node.data_inputs()[0])
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
