"""Emitters for keras-self-attention (``keras_self_attention``, tf_keras only):
SeqSelfAttention, SeqWeightedAttention, ScaledDotProductAttention (see
converter/layers/keras_self_attention.py). The package masks by subtracting 10000 from
logits and normalizes with exp(e - max e) / Σ; kerasonnx subtracts in the same order."""
from __future__ import annotations

import numpy as np

from ..ir import Node
from ..model import named_weights
from .activations import apply_activation
from .attention import causal_mask, positions, project, unsqueeze
from .builder import Builder
from .registry import emits

# What keras_self_attention subtracts from masked logits.
MASK_PENALTY = 10000.0
# K.epsilon(), under SeqWeightedAttention's softmax denominator.
KERAS_EPSILON = 1e-7


def penalize(b: Builder, logits: str, allowed: str, base: str) -> str:
    """logits - 10000 where ``allowed`` (bool, broadcast) is False."""
    penalty = b.op("Where", [allowed, b.constant(f"{base}/zero", np.float32(0)),
                             b.constant(f"{base}/penalty", np.float32(MASK_PENALTY))],
                   f"{base}/penalty")
    return b.op("Sub", [logits, penalty], base)


def attend(b: Builder, q: str, key_t: str, v: str, divisor, allowed: list, base: str) -> tuple:
    """softmax(q key_t / divisor, penalized where each ``allowed`` mask is False, in
    order) v on (..., T, F) tensors (``key_t`` already (..., F, S)); returns the context
    and the attention weights."""
    logits = b.op("MatMul", [q, key_t], f"{base}/dot")
    if divisor is not None:
        logits = b.op("Div", [logits, b.constant(f"{base}/sqrt_dim", np.float32(divisor))],
                      f"{base}/logits")
    for i, mask in enumerate(allowed):
        logits = penalize(b, logits, mask, f"{base}/masked{i}")
    probabilities = b.op("Softmax", [logits], f"{base}/probabilities", axis=-1)
    return b.op("MatMul", [probabilities, v], f"{base}/context"), probabilities


def _weights(node: Node) -> dict:
    """The layer's weights by the suffix after its name: ``Add_Wt``, ``W``, ..."""
    prefix = node.config["name"] + "_"
    return {name.removeprefix(prefix): np.asarray(value, np.float32)
            for name, value in named_weights(node).items()}


def _outputs(node: Node, output: str, attention: str) -> list:
    return [output, attention] if node.config.get("return_attention") else [output]


@emits("SeqSelfAttention")
def seq_self_attention(node: Node, b: Builder) -> list:
    """e_tt' = Wa·tanh(x_t Wt + x_t' Wx + bh) + ba (additive) or x_t Wa x_t'ᵀ + ba
    (multiplicative), then attention_activation; minus 10000 where t' is outside t's
    window of attention_width (the last ``width`` steps with history_only, else centred),
    minus 10000 where both t and t' are masked (only then: the package's rule);
    a = softmax(e), y = a x."""
    config, base = node.config, node.name
    tensor = node.input("inputs")
    x, weights = b.value(tensor), _weights(node)
    if config.get("attention_type", "additive") == "additive":
        query = unsqueeze(b, project(b, x, weights["Add_Wt"], None, f"{base}/query"), [2],
                          f"{base}/query4")
        key = unsqueeze(b, project(b, x, weights["Add_Wx"], None, f"{base}/key"), [1],
                        f"{base}/key4")
        hidden = b.op("Add", [query, key], f"{base}/pairs")
        if "Add_bh" in weights:
            hidden = b.op("Add", [hidden, b.constant(f"{base}/bh", weights["Add_bh"])],
                          f"{base}/pairs_biased")
        hidden = b.op("Tanh", [hidden], f"{base}/hidden")
        e = project(b, hidden, weights["Add_Wa"], weights.get("Add_ba"), f"{base}/emission")
        e = b.op("Squeeze", [e, b.ints(f"{base}/last", [-1])], f"{base}/e")
    else:
        x_t = b.op("Transpose", [x], f"{base}/x_t", perm=[0, 2, 1])
        e = b.op("MatMul", [project(b, x, weights["Mul_Wa"], None, f"{base}/query"), x_t],
                 f"{base}/e")
        if "Mul_ba" in weights:
            e = b.op("Add", [e, b.constant(f"{base}/ba", weights["Mul_ba"][0])],
                     f"{base}/e_biased")
    e = apply_activation(b, e, config.get("attention_activation"), f"{base}/attention",
                         node.layer.dialect)
    width = config.get("attention_width")
    if width is not None:
        e = penalize(b, e, _window(b, x, tensor.shape[1], int(width),
                                   bool(config.get("history_only")), f"{base}/window"),
                     f"{base}/local")
    mask = node.input("mask")
    if mask is not None:
        m = b.value(mask)
        either = b.op("Or", [unsqueeze(b, m, [2], f"{base}/query_mask"),
                             unsqueeze(b, m, [1], f"{base}/key_mask")], f"{base}/either")
        e = penalize(b, e, either, f"{base}/masked")
    attention = b.op("Softmax", [e], f"{base}/attention_weights", axis=-1)
    return _outputs(node, b.op("MatMul", [attention, x], base), attention)


def _window(b: Builder, x: str, length, width: int, history_only: bool, base: str) -> str:
    """(T, T) bool: key t' within query t's window, lower <= t' < lower + width with
    lower = t - (width - 1) (history_only) or t - width // 2."""
    low = -(width - 1) if history_only else -(width // 2)
    if length is not None:
        offsets = np.arange(length)[None, :] - np.arange(length)[:, None]
        return b.constant(f"{base}/allowed", (offsets >= low) & (offsets < low + width))
    steps = positions(b, x, f"{base}/steps")
    offsets = b.op("Sub", [unsqueeze(b, steps, [0], f"{base}/keys"),
                           unsqueeze(b, steps, [1], f"{base}/queries")], f"{base}/offsets")
    return b.op("And", [
        b.op("GreaterOrEqual", [offsets, b.constant(f"{base}/low", np.int64(low))],
             f"{base}/after_low"),
        b.op("Less", [offsets, b.constant(f"{base}/high", np.int64(low + width))],
             f"{base}/before_high")], f"{base}/allowed")


@emits("SeqWeightedAttention")
def seq_weighted_attention(node: Node, b: Builder) -> list:
    """l = x W + b (minus 10000 where masked), a = exp(l - max l) / (Σ exp(l - max l)
    + 1e-7), y = Σ_t a_t x_t."""
    base, weights = node.name, _weights(node)
    x = b.value(node.input("inputs"))
    logits = project(b, x, weights["W"], weights.get("b"), f"{base}/logits")
    logits = b.op("Squeeze", [logits, b.ints(f"{base}/last", [-1])], f"{base}/logits_2d")
    mask = node.input("mask")
    if mask is not None:
        logits = penalize(b, logits, b.value(mask), f"{base}/masked")
    shifted = b.op("Sub", [logits, b.reduce("ReduceMax", logits, [-1], f"{base}/max")],
                   f"{base}/shifted")
    exp = b.op("Exp", [shifted], f"{base}/exp")
    total = b.op("Add", [b.reduce("ReduceSum", exp, [1], f"{base}/sum"),
                         b.constant(f"{base}/epsilon", np.float32(KERAS_EPSILON))],
                 f"{base}/denominator")
    attention = b.op("Div", [exp, total], f"{base}/attention")
    weighted = b.op("Mul", [x, unsqueeze(b, attention, [-1], f"{base}/attention3")],
                    f"{base}/weighted")
    return _outputs(node, b.reduce("ReduceSum", weighted, [1], base, keepdims=0), attention)


@emits("ScaledDotProductAttention")
def scaled_dot_product_attention(node: Node, b: Builder) -> list:
    """softmax(q kᵀ / sqrt(F) - 10000 [key after query, history_only] - 10000 [key mask
    False]) v, F the query's features; only the key's mask masks (the package reads
    mask[1])."""
    base = node.name
    query, key = node.input("query"), node.input("key")
    q, k, v = (b.value(node.input(role)) for role in ("query", "key", "value"))
    allowed = []
    if node.config.get("history_only"):
        allowed.append(causal_mask(b, q, k, query.shape, key.shape, f"{base}/causal"))
    key_mask = node.input("key_mask")
    if key_mask is not None:
        allowed.append(unsqueeze(b, b.value(key_mask), [1], f"{base}/key_mask3"))
    context, attention = attend(b, q, b.op("Transpose", [k], f"{base}/key_t", perm=[0, 2, 1]),
                                v, np.sqrt(np.float32(query.shape[-1])), allowed, base)
    return _outputs(node, context, attention)
