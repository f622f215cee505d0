"""keras-multi-head (``keras_multi_head``): the MultiHead wrapper and its own
MultiHeadAttention, which shares its class name with Keras' layer."""
from __future__ import annotations

from .keras_self_attention import bind_query_key_value
from .registry import (WeightSpec, compute_dtype, first_input, from_package, kind_for,
                       layer_kind, no_mask, wrapped_output_types)


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


@layer_kind("MultiHeadAttention", bind_roles=bind_query_key_value,
            matches=from_package("keras_multi_head", lambda config: "head_num" in config),
            mask_roles={"query": "query_mask", "key": "key_mask", "value": "value_mask"},
            weights=_multi_head_weights,
            output_mask=lambda node: node.input("query").mask)
def keras_multi_head_attention(node):
    """Per head h: softmax(q_h k_hᵀ / sqrt(F / heads) + mask) v_h with q = act(query Wq + bq),
    k, v alike (causal when ``history_only``); heads concatenated, then act(. Wo + bo)."""
    return [(node.input("query").shape[:-1] + node.input("value").shape[-1:],
             compute_dtype(node))]


def _copy_prefixes(node) -> list:
    """(legacy, saving_lib) prefix of each copy's weights: ``sub_<i>/`` as keras_multi_head
    names them, and ``layers/<snake_case(class)>[_n]/`` with a per-class counter over the
    copies (saving_lib's rule for a list of layers)."""
    from ..parse import snake_case  # parse imports this package

    prefixes, used = [], {}
    for i, copy in enumerate(node.config["layers"]):
        path = snake_case(copy["class_name"])
        count = used.get(path, 0)
        used[path] = count + 1
        prefixes.append((f"sub_{i}/", f"layers/{path}{f'_{count}' if count else ''}/"))
    return prefixes


def _projection_weights(node, expansion, i: int):
    """Copy ``i``'s slice of the input projection W (in, hidden*copies) and b, read as
    the kernel and bias of a Dense(hidden)."""
    weights = node.layer.weights
    if weights is None:
        return None
    name, hidden = node.config["name"], node.config["hidden_dim"]
    part = slice(i * hidden, (i + 1) * hidden)
    stored = ({"vars/0": "vars/0", "vars/1": "vars/1"} if weights.layout == "saving_lib"
              else {"kernel": f"{name}_W", "bias": f"{name}_b"})
    return expansion.derived_weights(weights.layout, {
        key: (weights, value, lambda array: array[..., part]) for key, value in stored.items()})


def _expand_multi_head(node, expansion) -> list:
    """Each copy called on the input (or on its slice of the input projection, a
    Dense(hidden_dim) when ``hidden_dim`` is set) with the input's mask, its output given a
    new last axis, the copies joined on it. The output mask is the first copy's."""
    copies = node.config["layers"]
    if any(kind_for(c["class_name"], c.get("module"), c.get("config", {})) is None
           for c in copies):
        return None  # left as one call, which cannot be converted
    data = first_input(node)
    hidden = node.config.get("hidden_dim")
    stacked = []
    for i, (copy, prefixes) in enumerate(zip(copies, _copy_prefixes(node))):
        source = data
        if hidden is not None:
            projection = expansion.sublayer(
                f"projection_{i}", "Dense",
                {"units": hidden, "use_bias": node.config.get("use_bias", True)},
                weights=_projection_weights(node, expansion, i))
            (source,) = expansion.call(projection, data)
        layer = expansion.sublayer(f"sub_{i}", copy["class_name"], copy.get("config", {}),
                                   module=copy.get("module"), prefixes=prefixes)
        outputs = expansion.call(layer, source)
        stacked.append(expansion.op("ExpandDims", outputs[0], axis=-1, label=f"sub_{i}/stacked"))
        if i == 0:
            first_mask = outputs[0].mask
    joined = expansion.op("Concatenate", stacked, axis=-1, label="stack")
    joined.mask = first_mask
    return [joined]


def _wrapper_weights(node) -> list:
    """The projection ``<name>_W`` (in, hidden*copies) and ``<name>_b`` when ``hidden_dim``
    is set (each copy's own weights are checked on its inner call)."""
    hidden = node.config.get("hidden_dim")
    if hidden is None:
        return []
    name, width = node.config["name"], hidden * len(node.config["layers"])
    specs = [WeightSpec(f"{name}_W", "vars/0", (first_input(node).shape[-1], width))]
    if node.config.get("use_bias", True):
        specs.append(WeightSpec(f"{name}_b", "vars/1", (width,)))
    return specs


def _multi_head_types(node):
    """The first copy's output with a new last axis of ``len(layers)``."""
    data = first_input(node)
    hidden = node.config.get("hidden_dim")
    shape = data.shape if hidden is None else data.shape[:-1] + (hidden,)
    types = wrapped_output_types(node, node.config["layers"][0], shape)
    if types is None:
        return None
    output_shape, dtype = types[0]
    return [(output_shape + (len(node.config["layers"]),), dtype)]


@layer_kind("MultiHead", output_mask=no_mask, mask_roles={"inputs": "mask"},
            weights=_wrapper_weights, expand=_expand_multi_head)
def multi_head(node):
    """Stack ``len(layers)`` copies of a layer on a new last axis: y[..., i] = layer_i(x)
    (each copy sees x @ W[:, i*hidden:(i+1)*hidden] + b when ``hidden_dim`` is set)."""
    return _multi_head_types(node)
