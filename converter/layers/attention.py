"""Keras' attention layers: MultiHeadAttention, GroupQueryAttention, Attention,
AdditiveAttention."""
from __future__ import annotations

from .registry import WeightSpec, compute_dtype, layer_kind, split_tensors

MHA_SIGNATURE = ("query", "value", "key", "query_mask", "value_mask", "key_mask",
                 "attention_mask", "return_attention_scores", "training", "use_causal_mask")
QKV_MASK_ROLES = {"query": "query_mask", "value": "value_mask", "key": "key_mask"}


def _is_keras_mha(module: str, config: dict) -> bool:
    return "num_heads" in config


def keras3_fused_path(node) -> bool:
    """Whether Keras 3's MultiHeadAttention / GroupQueryAttention call takes
    ``ops.dot_product_attention`` (its fused path): no scores returned, no dropout, and 3-D
    inputs (projected to 4-D; attention over axes of N-D inputs takes the explicit path)."""
    return not (node.arguments.get("return_attention_scores")
                or node.config.get("dropout", 0) > 0 or node.input("query").rank != 3)


def mha_masking(node) -> str:
    """How MultiHeadAttention / GroupQueryAttention mask the logits (see emit/attention.py):
    "add" (Keras 2: + -1e9) and "replace" (Keras 3's fused path) give a fully masked row
    the average over every key; "zero" (Keras 3's explicit path) gives it zeros."""
    if node.layer.dialect == "keras2":
        return "add"
    return "replace" if keras3_fused_path(node) else "zero"


def attention_axes(node) -> tuple:
    """The axes attention runs over (input axes, batch excluded); Keras' default is every
    axis between batch and features."""
    rank = len(node.input("query").shape)
    axes = node.config.get("attention_axes")
    if axes is None:
        return tuple(range(1, rank - 1))
    axes = [axes] if isinstance(axes, int) else axes
    axes = tuple(sorted(a + rank if a < 0 else a for a in axes))
    if not all(0 < a < rank - 1 for a in axes):
        raise ValueError(f"attention_axes {node.config['attention_axes']} are not axes "
                         f"between batch and features of a rank-{rank} query")
    return axes


def mha_output_dims(node) -> tuple:
    declared = node.config.get("output_shape")
    if declared is None:
        return (node.input("query").shape[-1],)
    return (declared,) if isinstance(declared, int) else tuple(declared)


# Each projection's sub-layer as saving_lib stores it (``_gate_dense`` loses its "_").
PROJECTION_PATHS = {"query": "query_dense", "key": "key_dense", "value": "value_dense",
                    "gate": "gate_dense", "attention_output": "output_dense"}


def _projection_weights(node, heads: int, kv_heads: int, key_dim: int, value_dim: int,
                        out: tuple) -> list:
    """query/key kernels (D, heads|kv_heads, key_dim), gate (D, heads, value_dim), value
    (Dv, kv_heads, value_dim), output (heads, value_dim, *out); biases drop the input dim."""
    value, key = node.input("value"), node.input("key")
    projections = [("query", node.input("query").shape[-1], heads, key_dim),
                   ("key", key.shape[-1], kv_heads, key_dim),
                   ("value", value.shape[-1], kv_heads, value_dim)]
    if node.config.get("use_gate"):
        projections.append(("gate", node.input("query").shape[-1], heads, value_dim))
    kernels = [(name, (dim, n, size), (n, size)) for name, dim, n, size in projections]
    kernels.append(("attention_output", (heads, value_dim) + out, out))
    use_bias = node.config.get("use_bias", True)
    specs = []
    for name, kernel_shape, bias_shape in kernels:
        specs.append(WeightSpec(f"{name}/kernel", f"{PROJECTION_PATHS[name]}/vars/0", kernel_shape))
        if use_bias:
            specs.append(WeightSpec(f"{name}/bias", f"{PROJECTION_PATHS[name]}/vars/1", bias_shape))
    return specs


def _mha_weights(node):
    heads, key_dim = node.config["num_heads"], node.config["key_dim"]
    return _projection_weights(node, heads, heads, key_dim,
                               node.config.get("value_dim") or key_dim, mha_output_dims(node))


def bind_mha_roles(arguments: dict) -> tuple:
    """Tensor arguments become roles by name; ``key`` defaults to ``value``."""
    roles, arguments = split_tensors(arguments)
    if roles.get("key") is None and roles.get("value") is not None:
        roles["key"] = roles["value"]
    return roles, arguments


def _keras3_deletes_input_masks(node) -> tuple:
    """Keras 3's call does ``set_keras_mask(query/value/key, None)``: a residual
    ``Add([query, attention])`` built after it sees an unmasked query."""
    return ("query", "value", "key") if node.layer.dialect == "keras3" else ()


@layer_kind("MultiHeadAttention", signature=MHA_SIGNATURE, mask_roles=QKV_MASK_ROLES,
            bind_roles=bind_mha_roles, weights=_mha_weights, matches=_is_keras_mha,
            clears_masks_of=_keras3_deletes_input_masks)
def multi_head_attention(node):
    """softmax(q kᵀ / sqrt(key_dim) + mask) v per head, projected back; q, k, v are
    einsum projections of query, key (default: value), value. Scores: (B, N, T, S)."""
    query = node.input("query").shape
    key = node.input("key").shape
    dtype = compute_dtype(node)
    outputs = [(query[:-1] + mha_output_dims(node), dtype)]
    if node.arguments.get("return_attention_scores"):
        axes = attention_axes(node)
        batch_dims = tuple(query[i] for i in range(len(query) - 1) if i not in axes)
        scores = (batch_dims + (node.config["num_heads"],) + tuple(query[a] for a in axes)
                  + tuple(key[a] for a in axes))
        outputs.append((scores, dtype))
    return outputs


# The module of kerasonnx's own inner layers (composite.Expansion.sublayer's ``module``).
INTERNAL_MODULE = "kerasonnx"


@layer_kind("AttentionCore", signature=("query", "key", "value", "attention_mask",
                                        "use_causal_mask"),
            matches=lambda module, config: module == INTERNAL_MODULE, internal=True)
def attention_core(node):
    """The attention core of a KerasHub block that computes it from raw operations
    (Llama, Mistral, Qwen, Phi-3, Gemma): (B, T, heads, head_dim) query, (B, S, kv_heads,
    head_dim) key and value in, the (B, T, heads, head_dim) context out."""
    return [(node.input("query").shape, compute_dtype(node))]


def _gqa_weights(node):
    config = node.config
    return _projection_weights(node, config["num_query_heads"],
                               config["num_key_value_heads"], config["head_dim"],
                               config["head_dim"], (node.input("query").shape[-1],))


@layer_kind("GroupQueryAttention", signature=MHA_SIGNATURE, mask_roles=QKV_MASK_ROLES,
            bind_roles=bind_mha_roles, weights=_gqa_weights,
            python_name="GroupedQueryAttention")
def grouped_query_attention(node):
    """Keras 3 grouped-query attention: MultiHeadAttention whose num_key_value_heads key
    and value heads are each shared by num_query_heads / num_key_value_heads query heads
    (Keras repeats them); head_dim for every head; the output has the query's features.
    Scores: (B, num_query_heads, T, S)."""
    query, key = node.input("query").shape, node.input("key").shape
    dtype = compute_dtype(node)
    outputs = [(query, dtype)]
    if node.arguments.get("return_attention_scores"):
        outputs.append(((query[0], node.config["num_query_heads"], query[1], key[1]), dtype))
    return outputs


def bind_query_value_key(arguments: dict) -> tuple:
    """``inputs=[query, value(, key)]`` and ``mask=[query_mask, value_mask]`` to roles."""
    arguments = dict(arguments)
    inputs = arguments.pop("inputs")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    roles = dict(zip(("query", "value", "key"), inputs))
    mask = arguments.pop("mask", None)
    if isinstance(mask, list):
        roles.update((role, m) for role, m in zip(("query_mask", "value_mask"), mask)
                     if m is not None)
    more_roles, arguments = split_tensors(arguments)
    roles.update(more_roles)
    return roles, arguments


def _scores_outputs(node, value_role="value"):
    query = node.input("query").shape
    value = node.input(value_role).shape
    dtype = compute_dtype(node)
    outputs = [(query[:-1] + value[-1:], dtype)]
    if node.arguments.get("return_attention_scores"):
        outputs.append((query[:-1] + value[1:-1], dtype))
    return outputs


def _attention_weights(node):
    names = []
    if node.config.get("use_scale"):
        names.append("scale")
    if node.config.get("score_mode") == "concat":
        names.append("concat_score_weight")
    return [WeightSpec(name, f"vars/{i}", ()) for i, name in enumerate(names)]


ATTENTION_OPTIONS = dict(
    signature=("inputs", "mask", "training", "return_attention_scores", "use_causal_mask"),
    mask_roles={"query": "query_mask", "value": "value_mask"},
    bind_roles=bind_query_value_key,
    output_mask=lambda node: node.input("query").mask,
)


@layer_kind("Attention", weights=_attention_weights, **ATTENTION_OPTIONS)
def attention(node):
    """Luong attention: softmax(scores) v, scores = q kᵀ (times ``scale`` when use_scale),
    or with score_mode concat w * sum(tanh(scale * (q + k))); the output is (B, T, Dv)."""
    return _scores_outputs(node)


@layer_kind("AdditiveAttention",
            weights=lambda node: ([WeightSpec("scale", "vars/0", (node.input("query").shape[-1],))]
                                  if node.config.get("use_scale", True) else []),
            **ATTENTION_OPTIONS)
def additive_attention(node):
    """Bahdanau attention: softmax(sum(scale * tanh(q[:, :, None] + k[:, None]), -1)) v."""
    return _scores_outputs(node)
