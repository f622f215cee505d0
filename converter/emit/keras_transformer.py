"""Emitters for the layers keras-transformer builds from (``keras_pos_embd``,
``keras_layer_normalization``, ``keras_position_wise_feed_forward``, ``keras_embed_sim``;
see converter/layers/keras_transformer.py). Where a layer is one Keras already has
(LayerNormalization, Embedding, Dense) its emitter's pieces do the work."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..ir import Node
from ..model import named_weights
from . import normalization
from .activations import apply_activation
from .attention import positions, project, unsqueeze
from .builder import Builder
from .core import embedding_lookup
from .registry import emits

# Keras' LayerNormalization over the last axis computes the same.
emits("LayerNormalization")(normalization.layer_normalization)


def _float_weights(node: Node) -> dict:
    return {name: np.asarray(value, np.float32) for name, value in named_weights(node).items()}


def _first_steps(b: Builder, x: str, table: str, base: str) -> str:
    """table[:T], T the (run-time) length of x's axis 1."""
    return b.op("Slice", [table, b.ints(f"{base}/start", [0]),
                          b.op("Shape", [x], f"{base}/length", start=1, end=2),
                          b.ints(f"{base}/axis", [0])], f"{base}/steps")


def _concat_batch(b: Builder, x: str, rows: str, width: int, base: str) -> str:
    """[x, rows broadcast over the batch] on the last axis; rows (T, width)."""
    shape = b.op("Concat", [b.op("Shape", [x], f"{base}/batch_steps", start=0, end=2),
                            b.ints(f"{base}/width", [width])], f"{base}/shape", axis=0)
    tiled = b.op("Expand", [rows, shape], f"{base}/tiled")
    return b.op("Concat", [x, tiled], base, axis=-1)


@emits("PositionEmbedding")
def position_embedding(node: Node, b: Builder) -> list:
    """expand: embeddings[clip(int(p), -D, D) + D] (D = input_dim; mask p != mask_zero);
    add: x + embeddings[:T, :F]; concat: [x, embeddings[:T]] on the last axis."""
    config, base = node.config, node.name
    tensor = node.input("inputs")
    x, table = b.value(tensor), _float_weights(node)["embeddings"]
    mode, width = config.get("mode", "expand"), config["output_dim"]
    if mode == "expand":
        limit = int(config["input_dim"])
        ids = x if tensor.dtype == "int32" else b.op("Cast", [x], f"{base}/ids",
                                                      to=TensorProto.INT32)
        clipped = b.op("Clip", [ids, b.constant(f"{base}/low", np.int32(-limit)),
                                b.constant(f"{base}/high", np.int32(limit))],
                       f"{base}/clipped")
        rows = b.op("Add", [clipped, b.constant(f"{base}/offset", np.int32(limit))],
                    f"{base}/rows")
        outputs = [b.op("Gather", [b.constant(f"{base}/embeddings", table), rows], base,
                        axis=0)]
        if node.mask_outputs:
            padding = b.constant(f"{base}/mask_zero",
                                 np.asarray(int(config["mask_zero"]), tensor.dtype))
            outputs.append(b.op("Not", [b.op("Equal", [x, padding], f"{base}/padding")],
                                f"{base}/mask"))
        return outputs
    length = tensor.shape[1]
    if mode == "add":
        table = table[:, :tensor.shape[-1]]
    if length is not None:
        rows = b.constant(f"{base}/positions", table[:length])
    else:
        rows = _first_steps(b, x, b.constant(f"{base}/embeddings", table), base)
    if mode == "add":
        return [b.op("Add", [x, rows], base)]
    return [_concat_batch(b, x, rows, width, base)]


@emits("TrigPosEmbedding")
def trig_pos_embedding(node: Node, b: Builder) -> list:
    """angle_i = p * (1 / 10000^(2i / d)) for positions p (float: the input in expand mode,
    0..T-1 otherwise); features (sin angle_i, cos angle_i) interleaved, d of them; added to
    x (add, d = F), appended to it (concat) or returned (expand)."""
    config, base = node.config, node.name
    tensor = node.input("inputs")
    x, mode = b.value(tensor), config.get("mode", "add")
    width = tensor.shape[-1] if mode == "add" else config["output_dim"]
    if mode == "expand":
        p = x if tensor.dtype == "float32" else b.op("Cast", [x], f"{base}/positions",
                                                      to=TensorProto.FLOAT)
    else:
        p = b.op("Cast", [positions(b, x, f"{base}/steps")], f"{base}/positions",
                 to=TensorProto.FLOAT)
    evens = np.arange(0, width // 2, dtype=np.float32) * np.float32(2)
    frequencies = np.float32(1) / np.power(np.float32(10000), evens / np.float32(width))
    angles = b.op("Mul", [unsqueeze(b, p, [-1], f"{base}/positions_last"),
                          b.constant(f"{base}/frequencies", frequencies)], f"{base}/angles")
    pairs = b.op("Concat", [unsqueeze(b, b.op(op, [angles], f"{base}/{op.lower()}"), [-1],
                                      f"{base}/{op.lower()}_last") for op in ("Sin", "Cos")],
                 f"{base}/pairs", axis=-1)
    shape = [0, 0, width] if mode == "expand" else [-1, width]
    embedded = b.op("Reshape", [pairs, b.ints(f"{base}/shape", shape)], f"{base}/embedded")
    if mode == "add":
        return [b.op("Add", [embedded, x], base)]
    if mode == "concat":
        return [_concat_batch(b, x, embedded, width, base)]
    return [b.op("Identity", [embedded], base)]


@emits("FeedForward")
def feed_forward(node: Node, b: Builder) -> list:
    """activation(x W1 + b1) W2 + b2: two Dense projections around the activation (its
    dropout acts in training only)."""
    base, prefix = node.name, node.config["name"] + "_"
    weights = {k.removeprefix(prefix): v for k, v in _float_weights(node).items()}
    hidden = project(b, b.value(node.input("inputs")), weights["W1"], weights.get("b1"),
                     f"{base}/hidden")
    hidden = apply_activation(b, hidden, node.config.get("activation"), f"{base}/hidden",
                              node.layer.dialect)
    return [project(b, hidden, weights["W2"], weights.get("b2"), base)]


@emits("EmbeddingRet")
def embedding_ret(node: Node, b: Builder) -> list:
    """[embeddings[ids], embeddings] (and the Embedding's mask ids != 0)."""
    table = b.constant(f"{node.name}/embeddings", _float_weights(node)["embeddings"])
    looked_up, *mask = embedding_lookup(node, b, table)
    return [looked_up, table, *mask]


@emits("EmbeddingSim")
def embedding_sim(node: Node, b: Builder) -> list:
    """softmax(x Eᵀ + bias) over the tokens, for ``[x, E]``."""
    base = node.name
    features, table = (b.value(t) for t in node.input("inputs"))
    logits = b.op("MatMul", [features, b.op("Transpose", [table], f"{base}/table_t",
                                            perm=[1, 0])], f"{base}/logits")
    weights = _float_weights(node)
    if "bias" in weights:
        logits = b.op("Add", [logits, b.constant(f"{base}/bias", weights["bias"])],
                      f"{base}/biased")
    return [apply_activation(b, logits, "softmax", base, node.layer.dialect)]
