"""keras-self-attention (``keras_self_attention``, tf_keras only): SeqSelfAttention,
SeqWeightedAttention and ScaledDotProductAttention (which keras-multi-head's
MultiHeadAttention runs per head)."""
from __future__ import annotations

from .registry import WeightSpec, compute_dtype, first_input, layer_kind, no_mask


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


def _self_attention_weights(node) -> list:
    """Additive: Wt, Wx (F, units), bh (units,) with ``use_additive_bias``, Wa (units, 1),
    ba (1,) with ``use_attention_bias``; multiplicative: Wa (F, F), ba (1,)."""
    config, features = node.config, first_input(node).shape[-1]
    name, units = config["name"], config.get("units", 32)
    if config.get("attention_type", "additive") == "additive":
        specs = [("Add_Wt", (features, units)), ("Add_Wx", (features, units))]
        if config.get("use_additive_bias", True):
            specs.append(("Add_bh", (units,)))
        specs.append(("Add_Wa", (units, 1)))
        if config.get("use_attention_bias", True):
            specs.append(("Add_ba", (1,)))
    else:
        specs = [("Mul_Wa", (features, features))]
        if config.get("use_attention_bias", True):
            specs.append(("Mul_ba", (1,)))
    return [WeightSpec(f"{name}_{suffix}", f"vars/{i}", shape)
            for i, (suffix, shape) in enumerate(specs)]


def _with_attention(node, output: tuple, attention: tuple) -> list:
    """The output, and with ``return_attention`` the attention weights (float)."""
    dtype = compute_dtype(node)
    return [(output, dtype)] + ([(attention, dtype)] if node.config.get("return_attention")
                                else [])


@layer_kind("SeqSelfAttention", mask_roles={"inputs": "mask"}, weights=_self_attention_weights)
def seq_self_attention(node):
    """a = softmax(e) over t', y_t = Σ a_tt' x_t' (attention (B, T, T)), with additive
    e_tt' = Wa·tanh(x_t Wt + x_t' Wx + bh) + ba or multiplicative e_tt' = x_t Wa x_t'ᵀ + ba,
    then ``attention_activation``, minus 10000 outside the local window and where query and
    key are both masked."""
    shape = first_input(node).shape
    return _with_attention(node, shape, shape[:2] + shape[1:2])


def _weighted_attention_weights(node) -> list:
    name = node.config["name"]
    specs = [WeightSpec(f"{name}_W", "vars/0", (first_input(node).shape[-1], 1))]
    if node.config.get("use_bias", True):
        specs.append(WeightSpec(f"{name}_b", "vars/1", (1,)))
    return specs


@layer_kind("SeqWeightedAttention", mask_roles={"inputs": "mask"}, output_mask=no_mask,
            weights=_weighted_attention_weights)
def seq_weighted_attention(node):
    """a = exp(l - max l) / (Σ exp(l - max l) + 1e-7) with l = x W + b (minus 10000 where
    masked); y = Σ_t a_t x_t: (B, F), attention (B, T)."""
    shape = first_input(node).shape
    return _with_attention(node, shape[:1] + shape[2:], shape[:2])


@layer_kind("ScaledDotProductAttention", bind_roles=bind_query_key_value,
            mask_roles={"query": "query_mask", "key": "key_mask", "value": "value_mask"},
            output_mask=lambda node: node.input("query").mask)
def scaled_dot_product_attention(node):
    """softmax(q kᵀ / sqrt(F) - 10000 [key later than query, with ``history_only``]
    - 10000 [key masked]) v; attention (B, Tq, Tk)."""
    query, key, value = (node.input(role).shape for role in ("query", "key", "value"))
    return _with_attention(node, query[:-1] + value[-1:], query[:2] + key[1:2])
