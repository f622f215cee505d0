"""The layers keras-transformer (``keras_transformer``, tf_keras only) builds its models
from, one small package each: keras-pos-embd (PositionEmbedding, TrigPosEmbedding),
keras-layer-normalization (LayerNormalization), keras-position-wise-feed-forward
(FeedForward) and keras-embed-sim (EmbeddingRet, EmbeddingSim). keras-transformer has no
layer of its own, only its ``gelu``; keras-bert builds on the same packages."""
from __future__ import annotations

from .normalization import layer_norm_weights
from .registry import (NEW_MASK, WeightSpec, compute_dtype, first_input, first_mask,
                       from_package, layer_kind, same_as_input, with_last_dim)

# Where these packages' layers are, a config's "gelu" is keras_transformer.gelu, the tanh
# approximation: keras_transformer.get_custom_objects() and keras_bert's register it under
# the name "gelu", which is all a saved file keeps of it (Keras' own gelu is the exact one).
TANH_GELU = {"module": "keras_transformer.gelu", "class_name": "function", "config": "gelu"}
PACKAGE_FAMILIES = ("keras_transformer", "keras_bert")


def name_package_gelu(graph) -> None:
    """In a Keras 2 model holding keras-transformer's or keras-bert's layers, spell every
    ``"gelu"`` activation as keras_transformer.gelu (see TANH_GELU)."""
    layers = graph.layers.values()
    if graph.dialect != "keras2" or not any(
            layer.kind is not None and layer.kind.family in PACKAGE_FAMILIES
            for layer in layers):
        return
    for layer in layers:
        if layer.config.get("activation") == "gelu":
            layer.config["activation"] = dict(TANH_GELU)


# ---------------------------------------------------------------------- keras-pos-embd


def _position_embedding_weights(node) -> list:
    """``embeddings``: (2 input_dim + 1, output_dim) in expand mode (relative positions
    -input_dim..input_dim), else (input_dim, output_dim)."""
    rows, width = node.config["input_dim"], node.config["output_dim"]
    if node.config.get("mode", "expand") == "expand":
        rows = 2 * rows + 1
    return [WeightSpec("embeddings", "vars/0", (rows, width))]


def _position_embedding_mask(node):
    """Expand mode: positions != mask_zero with ``mask_zero``, else none; add and concat
    pass the input's mask on."""
    if node.config.get("mode", "expand") == "expand":
        return NEW_MASK if node.config.get("mask_zero") else None
    return first_mask(node)


MODES = ("expand", "add", "concat")


def _embedded_shape(node, width: int):
    """Expand mode appends ``width``, concat widens the last axis by it, add keeps it."""
    shape, mode = first_input(node).shape, node.config.get("mode")
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is none of {', '.join(MODES)}")
    if mode == "expand":
        return shape + (width,)
    if mode == "concat":
        return with_last_dim(shape, shape[-1] + width)
    return shape


@layer_kind("PositionEmbedding", output_mask=_position_embedding_mask,
            weights=_position_embedding_weights,
            matches=from_package("keras_pos_embd",
                                 lambda config: "mode" in config and "input_dim" in config))
def position_embedding(node):
    """expand: embeddings[clip(p, -input_dim, input_dim) + input_dim] for positions p;
    add: x + embeddings[:T, :F]; concat: [x, embeddings[:T]] on the last axis."""
    return [(_embedded_shape(node, node.config["output_dim"]), compute_dtype(node))]


@layer_kind("TrigPosEmbedding")
def trig_pos_embedding(node):
    """Sinusoids of positions p (the input in expand mode, 0..T-1 otherwise): feature 2i is
    sin(p / 10000^(2i/d)), feature 2i+1 cos of the same; added (add), appended (concat) or
    returned (expand)."""
    if node.config.get("mode", "add") == "add":
        return same_as_input(node)
    return [(_embedded_shape(node, node.config["output_dim"]), compute_dtype(node))]


# ---------------------------------------------------------- keras-layer-normalization

# (x - mean) / sqrt(var + epsilon) * gamma + beta over the last axis: Keras'
# LayerNormalization with its default axis, and the same weights.
layer_kind("LayerNormalization", weights=layer_norm_weights,
           matches=from_package("keras_layer_normalization",
                                lambda config: "axis" not in config))(same_as_input)


# --------------------------------------------------- keras-position-wise-feed-forward


def _feed_forward_weights(node) -> list:
    """W1 (F, units), b1 (units,), W2 (units, F), b2 (F,); no biases without use_bias."""
    name, units = node.config["name"], node.config["units"]
    features = first_input(node).shape[-1]
    specs = [("W1", (features, units)), ("b1", (units,)), ("W2", (units, features)),
             ("b2", (features,))]
    if not node.config.get("use_bias", True):
        specs = [s for s in specs if s[0].startswith("W")]
    return [WeightSpec(f"{name}_{suffix}", f"vars/{i}", shape)
            for i, (suffix, shape) in enumerate(specs)]


# y = activation(x W1 + b1) W2 + b2 (``dropout_rate`` acts in training only).
layer_kind("FeedForward", weights=_feed_forward_weights)(same_as_input)


# ------------------------------------------------------------------- keras-embed-sim


def _embedding_mask(node):
    return NEW_MASK if node.config.get("mask_zero") else None


EMBEDDING_RET = {"output_mask": _embedding_mask,
                 "weights": lambda node: [WeightSpec("embeddings", "vars/0",
                                                     (node.config["input_dim"],
                                                      node.config["output_dim"]))]}


@layer_kind("EmbeddingRet", **EMBEDDING_RET)
def embedding_ret(node):
    """An Embedding that also returns its table: [embeddings[ids], embeddings]."""
    dtype = compute_dtype(node)
    return [(first_input(node).shape + (node.config["output_dim"],), dtype),
            ((node.config["input_dim"], node.config["output_dim"]), dtype)]


def _similarity_weights(node) -> list:
    tokens = node.input("inputs")[1].shape[0]
    return ([WeightSpec("bias", "vars/0", (tokens,))] if node.config.get("use_bias", True)
            else [])


SIMILARITY = {"weights": _similarity_weights}


@layer_kind("EmbeddingSim", **SIMILARITY)
def embedding_sim(node):
    """softmax(x Eᵀ + bias) for ``[x, E]``, E a token table (tokens, F): (..., tokens)."""
    features, table = node.input("inputs")
    return [(with_last_dim(features.shape, table.shape[0]), compute_dtype(node))]
