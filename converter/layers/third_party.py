"""keras-multi-head (``keras_multi_head``): the MultiHead wrapper and its own
MultiHeadAttention, which shares its class name with Keras' layer."""
from __future__ import annotations

from typing import Optional

from ..ir import Layer, Node, Tensor
from .keras_self_attention import bind_query_key_value
from .registry import (WeightSpec, compute_dtype, first_input, from_package, kind_for,
                       layer_kind)


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


def copy_nodes(node) -> Optional[list]:
    """One call per copy of the layer a MultiHead wraps, as the wrapper makes it (its
    ``call`` on the input, or on the input projected to ``hidden_dim``, with the input's
    mask); each copy's layer reads its weights from the wrapper's. None when a copy's
    class is unknown."""
    data = first_input(node)
    hidden = node.config.get("hidden_dim")
    shape = data.shape if hidden is None else data.shape[:-1] + (hidden,)
    copies = []
    for i, (copy, prefixes) in enumerate(zip(node.config["layers"], _copy_prefixes(node))):
        config = copy.get("config", {})
        kind = kind_for(copy["class_name"], copy.get("module"), config)
        if kind is None:
            return None
        weights = None if node.layer.weights is None else node.layer.weights.view(prefixes)
        name = f"{node.name}/sub_{i}"
        layer = Layer(name, copy["class_name"], copy.get("module"), config, weights, kind,
                      node.layer.dialect)
        source = data if hidden is None else Tensor(f"{name}/input", shape, data.dtype,
                                                    mask=data.mask)
        call = Node(name, layer, 0, inputs={kind.signature[0]: source})
        for data_role, mask_role in kind.mask_roles.items():
            if data_role in call.inputs and source.mask is not None:
                call.inputs[mask_role] = source.mask
        types = kind.output_types(call)
        if types is None:
            return None
        call.outputs = [Tensor(name if j == 0 else f"{name}:{j}", out_shape, dtype, call, j)
                        for j, (out_shape, dtype) in enumerate(types)]
        copies.append(call)
    return copies


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


def _multi_head_weights(node) -> list:
    """The projection ``<name>_W`` (in, hidden*copies) and ``<name>_b`` when ``hidden_dim``
    is set, then each copy's weights under ``sub_<i>/``."""
    specs = []
    hidden = node.config.get("hidden_dim")
    if hidden is not None:
        name, width = node.config["name"], hidden * len(node.config["layers"])
        specs.append(WeightSpec(f"{name}_W", "vars/0", (first_input(node).shape[-1], width)))
        if node.config.get("use_bias", True):
            specs.append(WeightSpec(f"{name}_b", "vars/1", (width,)))
    for call, (legacy, saving) in zip(copy_nodes(node) or [], _copy_prefixes(node)):
        kind = call.layer.kind
        specs += [WeightSpec(legacy + spec.name, saving + spec.saving_path, spec.shape)
                  for spec in (kind.weights(call) if kind.weights else [])]
    return specs


def _multi_head_mask(node):
    """The mask of the first copy's output (``compute_mask`` of the wrapped layer)."""
    copies = copy_nodes(node)
    if not copies:
        return None
    mask = copies[0].layer.kind.output_mask(copies[0])
    return mask if isinstance(mask, Tensor) else None


@layer_kind("MultiHead", output_mask=_multi_head_mask, mask_roles={"inputs": "mask"},
            weights=_multi_head_weights)
def multi_head(node):
    """Stack ``len(layers)`` copies of a layer on a new last axis: y[..., i] = layer_i(x)
    (each copy sees x @ W[:, i*hidden:(i+1)*hidden] + b when ``hidden_dim`` is set)."""
    copies = copy_nodes(node)
    if copies is None:
        return None
    output = copies[0].outputs[0]
    return [(output.shape + (len(copies),), output.dtype)]
