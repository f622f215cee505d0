"""keras-multi-head (``keras_multi_head``): the MultiHead wrapper and its own
MultiHeadAttention, which shares its class name with Keras' layer."""
from __future__ import annotations

from .registry import (WeightSpec, compute_dtype, first_input, layer_kind, propagate_mask,
                       wrapped_output_types)


def _is_keras_multi_head(module: str, config: dict) -> bool:
    return "head_num" in config or module.startswith("keras_multi_head")


def _multi_head_weights(node):
    """Wq (Dq, F), Wk (Dk, F), Wv (Dv, F), Wo (F, F) and their biases (F,), F = Dv."""
    name = node.config["name"]
    query, key, value = (node.input(role).shape[-1] for role in ("query", "key", "value"))
    use_bias = node.config.get("use_bias", True)
    specs = []
    for letter, fan_in in (("q", query), ("k", key), ("v", value), ("o", value)):
        specs.append((f"{name}_W{letter}", (fan_in, value)))
        if use_bias:
            specs.append((f"{name}_b{letter}", (value,)))
    return [WeightSpec(n, f"vars/{i}", shape) for i, (n, shape) in enumerate(specs)]


def bind_query_key_value(arguments: dict) -> tuple:
    """``inputs`` is one tensor (self-attention) or ``[query, key, value]``; ``mask`` alike."""
    arguments = dict(arguments)
    inputs = arguments.pop("inputs")
    inputs = inputs if isinstance(inputs, list) else [inputs] * 3
    roles = dict(zip(("query", "key", "value"), inputs))
    mask = arguments.pop("mask", None)
    masks = mask if isinstance(mask, list) else [mask] * 3
    roles.update((f"{role}_mask", m) for role, m in zip(("query", "key", "value"), masks)
                 if m is not None)
    return roles, arguments


@layer_kind("MultiHeadAttention", matches=_is_keras_multi_head, bind_roles=bind_query_key_value,
            mask_roles={"query": "query_mask", "key": "key_mask", "value": "value_mask"},
            weights=_multi_head_weights,
            output_mask=lambda node: node.input("query").mask)
def keras_multi_head_attention(node):
    """Per head h: softmax(q_h k_hᵀ / sqrt(F / heads) + mask) v_h with q = act(query Wq + bq),
    k, v alike (causal when ``history_only``); heads concatenated, then act(. Wo + bo)."""
    return [(node.input("query").shape[:-1] + node.input("value").shape[-1:],
             compute_dtype(node))]


@layer_kind("MultiHead", output_mask=propagate_mask, mask_roles={"inputs": "mask"})
def multi_head(node):
    """Stack ``len(layers)`` copies of a layer on a new last axis: y[..., i] = layer_i(x)
    (each copy sees x @ W[:, i*hidden:(i+1)*hidden] + b when ``hidden_dim`` is set)."""
    shape = first_input(node).shape
    hidden = node.config.get("hidden_dim")
    if hidden is not None:
        shape = shape[:-1] + (hidden,)
    copies = node.config["layers"]
    inner = wrapped_output_types(node, copies[0], shape)
    if inner is None:
        return None
    return [(out_shape + (len(copies),), dtype) for out_shape, dtype in inner[:1]]
