"""Emitters for keras-multi-head (``keras_multi_head``, tf_keras only): its
MultiHeadAttention (see converter/layers/keras_multi_head.py). The MultiHead wrapper is a
composite layer: its copies are emitted by their own classes' emitters."""
from __future__ import annotations

import numpy as np

from ..ir import Node
from ..model import named_weights
from .activations import apply_activation
from .attention import FUSED_ATTENTION_OPSET, causal_mask, fused_attention, unsqueeze
from .builder import Builder
from .keras_self_attention import attend
from .registry import emits


@emits("MultiHeadAttention")
def keras_multi_head_attention(node: Node, b: Builder) -> list:
    """q = act(query Wq + bq), k and v alike; per head h (F / heads features each)
    e = q_h k_hᵀ / sqrt(F / heads), minus 10000 where the key is later than the query
    (``history_only``), minus 10000 where the key mask is False; y = act(concat_h
    softmax(e) v_h Wo + bo). Only the key mask masks (keras_self_attention reads mask[1]).

    Without a key mask the ONNX Attention operator computes the same at opset 23+ (a causal
    penalty of 10000 and is_causal both zero those probabilities); with one, the two
    subtractions are reproduced in Keras' order, which decides fully masked rows. A
    ``history_only`` call with a key/value cache (with_past.py) attends past and new keys."""
    config, base = node.config, node.name
    heads = config["head_num"]
    weights = named_weights(node)
    name = config["name"]

    def project(role: str, letter: str) -> str:
        x = b.op("MatMul", [b.value(node.input(role)),
                            b.constant(f"{base}/W{letter}", weights[f"{name}_W{letter}"])],
                 f"{base}/{role}_matmul")
        return _bias_and_activation(node, b, x, weights.get(f"{name}_b{letter}"), role)

    q, k, v = project("query", "q"), project("key", "k"), project("value", "v")
    features = node.input("value").shape[-1]
    head_dim = features // heads
    history_only = bool(config.get("history_only"))
    key_mask = node.input("key_mask")
    past = b.cached_past(node)

    if b.opset >= FUSED_ATTENTION_OPSET and key_mask is None:
        context, _, present = fused_attention(b, q, k, v, heads, None, "add", history_only,
                                              False, 1.0 / float(np.sqrt(np.float32(head_dim))),
                                              f"{base}/attention", past=past)
    else:
        context, present = _matmul_attention(node, b, q, k, v, heads, head_dim, history_only,
                                             None if key_mask is None else b.value(key_mask),
                                             past)
    b.bind_present(node, present)
    y = b.op("MatMul", [context, b.constant(f"{base}/Wo", weights[f"{name}_Wo"])],
             f"{base}/output_matmul")
    return [_bias_and_activation(node, b, y, weights.get(f"{name}_bo"), "output")]


def _bias_and_activation(node: Node, b: Builder, x: str, bias, role: str) -> str:
    base = f"{node.name}/{role}"
    if bias is not None:
        x = b.op("Add", [x, b.constant(f"{base}_bias", bias)], f"{base}_biased")
    return apply_activation(b, x, node.config.get("activation"), base, node.layer.dialect)


def _matmul_attention(node: Node, b: Builder, q: str, k: str, v: str, heads: int,
                      head_dim: int, history_only: bool, key_mask, past: tuple = None) -> tuple:
    """The attention core as MatMul / Softmax in keras_self_attention's order of
    operations; returns the heads' contexts concatenated, (B, T, F), and given the cached
    ``past`` (key, value) heads (B, heads, P, head_dim), the present ones (past and new)."""
    base = f"{node.name}/attention"

    def split(x: str, perm: list, role: str) -> str:
        x = b.op("Reshape", [x, b.ints(f"{base}/{role}_shape", [0, 0, heads, head_dim])],
                 f"{base}/{role}_heads")
        return b.op("Transpose", [x], f"{base}/{role}_t", perm=perm)

    allowed = []
    if history_only:
        query, key = node.input("query"), node.input("key")
        allowed.append(unsqueeze(b, causal_mask(b, b.value(query), b.value(key), query.shape,
                                                key.shape, base,
                                                past=None if past is None else past[0]),
                                 [1], f"{base}/causal4"))
    if key_mask is not None:
        allowed.append(unsqueeze(b, key_mask, [1, 2], f"{base}/key_mask4"))
    value, present = split(v, [0, 2, 1, 3], "value"), None
    if past is None:
        key_t = split(k, [0, 2, 3, 1], "key")
    else:
        present = (b.op("Concat", [past[0], split(k, [0, 2, 1, 3], "key")],
                        f"{base}/present_key", axis=2),
                   b.op("Concat", [past[1], value], f"{base}/present_value", axis=2))
        key_t = b.op("Transpose", [present[0]], f"{base}/key_all_t", perm=[0, 1, 3, 2])
        value = present[1]
    context, _ = attend(b, split(q, [0, 2, 1, 3], "query"), key_t, value,
                        np.sqrt(np.float32(head_dim)), allowed, base)
    context = b.op("Transpose", [context], f"{base}/context_t", perm=[0, 2, 1, 3])
    return b.op("Reshape", [context, b.ints(f"{base}/merge_heads", [0, 0, -1])],
                f"{base}/context"), present


