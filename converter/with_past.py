"""Causal decoders with a key/value cache (``convert(..., with_past=True)``).

Incremental decoding feeds only the NEW positions of the token inputs; every causal
self-attention layer takes the keys and values of the earlier positions from the cache and
returns them with the new ones appended, in the names Hugging Face Optimum uses:

    past_key_values.{i}.key / .value   (batch, kv_heads, past_length, head_dim)   inputs
    present.{i}.key / .value           (batch, kv_heads, past_length + new, head_dim) outputs

for the i-th cached layer in graph order. An empty cache (past_length 0) runs the prompt.

Where it lives. ``plan_cache`` runs on the parsed graph, before emission: it finds the
cached calls (``CACHED_CLASSES`` with ``use_causal_mask``, keras-multi-head's
MultiHeadAttention with ``history_only``), the
DECODER inputs (the graph inputs their queries derive from) and the STREAM (every tensor
derived from them, whose axis 1 is the sequence axis, now dynamic), and proves the model
computes each new position from earlier ones only: every other call on the stream must act
on each position alone (``POSITION_WISE``), or be cross attention whose keys and values do
not come from the stream (recomputed from the encoder input each step). Anything else is a
``NotCausalDecoderError`` naming the layer. It adds the cache tensors to the graph's inputs
and outputs and hands the emitters ``{node: CacheSlot}`` through ``Builder.cache``; the
attention emitters (emit/attention.py, emit/keras_multi_head.py) then append the new keys and values to the past and
offsets the causal mask by past_length: at opset 23+ the ``Attention`` operator's own
past_key / past_value inputs (its ``is_causal`` is bottom-right aligned once a past is
given: query i attends key j iff j <= i + past_length, as the ONNX spec and onnxruntime
do), at 17-22 a Concat along the sequence axis and an explicit offset causal mask.

Positions: inputs that carry positions (a ``positions`` input feeding a learned position
Embedding) are decoder inputs like the tokens; the caller feeds past_length ... for them.
KerasHub's position layers on the stream (learned, sine, rotary) count from past_length
(``Builder.position_offsets``); Phi-3's su-scaled rotary embedding picks its factors by
past + new positions as keras_hub's cached call does (its cached keys keep theirs).
Masks: a per-key ``attention_mask`` (batch, 1, keys) made from model inputs outside the
stream (KerasHub's ``padding_mask``) covers past and new positions: the caller feeds it
up to the last new position. Keras masks on the stream (``Embedding(mask_zero=True)``)
reaching a cached MultiHeadAttention or GroupQueryAttention are cached with its keys:

    past_key_values.{i}.mask   (batch, past_length) bool                   input
    present.{i}.mask           (batch, past_length + new) bool              output

the AND of its value and key masks (Keras computes them on the stream, position by
position, so a past position's mask is the one computed at its step); the query mask
covers the new positions only. A loop that feeds every ``present.*`` back as
``past_key_values.*`` (an empty one, (batch, 0), for the prompt) needs nothing else.
Not Optimum's ``attention_mask`` (batch, past_length + new): Keras derives the mask from
the token ids, a mask fed beside them could disagree with it, and a Keras model may
have an input of that name. Fully masked rows (a padded query) come out as Keras computes
them, but with "add" (Keras 2) and "replace" (Keras 3's fused path) masking they average
over every key of the prefix, later ones included: such a layer is refused when its
output reaches another cached layer's keys or values (cached, they would not follow the
prefix as Keras' do); "zero" masking (Keras 3's explicit path, dropout > 0) gives zeros.
Other Keras masks on a cached layer (an ``attention_mask`` computed on the stream,
KerasHub's and keras-multi-head's layers) are refused: they cover only the new positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import NotCausalDecoderError
from .ir import MASK_ROLES, Graph, Node, Tensor
from .layers.attention import mha_masking
from .layers.operations import (ARITHMETIC, COMPARISONS, FLOAT_UNARY, LOGICAL,
                                SAME_DTYPE_UNARY, operation)
from .layers.registry import normalize_axis

PAST_PREFIX, PRESENT_PREFIX = "past_key_values.", "present."
# Keras' attention layers, KerasHub's (CachedMultiHeadAttention in TransformerDecoder;
# AttentionCore: the core of its Llama, Mistral, Qwen, Phi-3 and Gemma blocks, see
# layers/keras_hub.py).
CACHED_CLASSES = ("MultiHeadAttention", "GroupQueryAttention", "CachedMultiHeadAttention",
                  "AttentionCore")
ATTENTION_FAMILIES = ("attention", "keras_hub")  # Keras' own, KerasHub's (not keras-multi-head)
# Layers that compute each position from that position alone (when their axis is the last).
POSITION_WISE = {"Dense", "Embedding", "Dropout", "Activation", "ReLU", "LeakyReLU", "ELU",
                 "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
                 "LayerNormalization", "RMSNormalization", "Softmax", "Concatenate",
                 "ReversibleEmbedding", "MixtralSparseMoeBlock", "Qwen3SparseMoeBlock"}
# (the sparse mixtures of experts route each token by its own hidden state: their
# softmax and top-k run over the experts)
# KerasHub layers computed from the position index along axis 1: offset by past_length.
# rotary embeddings (Phi-3's su-scaled one picks its factors by past + new positions, as
# keras_hub's cached call does)
ROTARY = {"RotaryEmbedding", "LlamaRotaryEmbedding", "Phi3SuScaledRotaryEmbedding"}
POSITION_INDEXED = {"PositionEmbedding", "SinePositionEncoding"} | ROTARY
# Keras operations that do (elementwise, broadcasting a constant at most).
POSITION_WISE_OPS = (ARITHMETIC | COMPARISONS | LOGICAL | SAME_DTYPE_UNARY
                     | FLOAT_UNARY - {"Softmax", "LogSoftmax"} | {"Cast"})
# Layers on the stream that a key/value cache cannot carry, and why.
NOT_CACHEABLE = {
    "Qwen3_5GatedDeltaNet": "is linear attention: it carries a recurrent state (and a "
                            "convolution window), not keys and values",
}
KEY_MASK_ROLES = ("value_mask", "key_mask")
# Keras' own MultiHeadAttention and GroupQueryAttention: their Keras masks on the keys are
# carried in the cache (past_key_values.{i}.mask).
KEY_MASKS_CACHED = ("MultiHeadAttention", "GroupQueryAttention")
SELECTING_ROLES = MASK_ROLES + ("attention_mask",)


@dataclass
class CachePlan:
    """The cached calls' slots; the position layers to offset by past_length; the names of
    the decoder inputs (axis 1 is the sequence: a caller feeds the new positions only) and
    of the per-key mask inputs (``padding_mask``: a caller feeds past and new positions)."""

    slots: dict  # Node -> CacheSlot
    offset_positions: list  # nodes
    decoder_inputs: list
    past_and_new_inputs: list


@dataclass
class CacheSlot:
    """One cached layer's cache: graph inputs ``past_*``, graph outputs ``present_*``; the
    key mask (B, positions) bool when Keras masks the layer's keys (``mask_zero``)."""

    index: int
    past_key: Tensor
    past_value: Tensor
    present_key: Tensor
    present_value: Tensor
    past_mask: Optional[Tensor] = None
    present_mask: Optional[Tensor] = None


def plan_cache(graph: Graph, source: str) -> CachePlan:
    """Check that ``graph`` is a causal decoder, make its sequence axis dynamic, add the
    cache inputs and outputs."""
    cached = [n for n in graph.nodes if _is_causal_self_attention(n)]
    if not cached:
        raise NotCausalDecoderError(
            f"{source}: --with-past needs a causal decoder, and this model has no causal "
            f"self-attention (MultiHeadAttention or GroupQueryAttention called with "
            f"use_causal_mask=True; an attention_mask passed in cannot be proven causal); "
            f"without one there is nothing to cache")
    stream = _stream(graph, cached)
    for node in graph.nodes:
        _check_node(node, stream, node in cached, source)
    _check_fully_masked_rows(graph, cached, stream, source)
    key_masks = set()
    for node in cached:
        if node.input("attention_mask") is not None:
            key_masks |= _sources(node.input("attention_mask"))
    for tensor in stream:
        if tensor.shape is not None and len(tensor.shape) >= 2:
            tensor.shape = (tensor.shape[0], None) + tuple(tensor.shape[2:])
    slots = {}
    for index, node in enumerate(cached):
        heads, head_dim, value_dim = _cache_dims(node)
        dtype = node.outputs[0].dtype

        def tensor(name, dim):
            return Tensor(name, (None, heads, None, dim), dtype)

        slot = CacheSlot(index, tensor(f"{PAST_PREFIX}{index}.key", head_dim),
                         tensor(f"{PAST_PREFIX}{index}.value", value_dim),
                         tensor(f"{PRESENT_PREFIX}{index}.key", head_dim),
                         tensor(f"{PRESENT_PREFIX}{index}.value", value_dim))
        if any(node.input(role) in stream for role in KEY_MASK_ROLES):
            slot.past_mask = Tensor(f"{PAST_PREFIX}{index}.mask", (None, None), "bool")
            slot.present_mask = Tensor(f"{PRESENT_PREFIX}{index}.mask", (None, None), "bool")
        pasts = [t for t in (slot.past_key, slot.past_value, slot.past_mask) if t is not None]
        presents = [t for t in (slot.present_key, slot.present_value, slot.present_mask)
                    if t is not None]
        graph.inputs += pasts
        graph.outputs += presents
        graph.output_names += [t.name for t in presents]
        slots[node] = slot
    return CachePlan(slots, [n for n in graph.nodes if n.class_name in POSITION_INDEXED
                             and n.input("inputs") in stream],
                     [t.name for t in graph.inputs if t in stream],
                     [t.name for t in graph.inputs if t in key_masks])


def _check_fully_masked_rows(graph: Graph, cached: list, stream: set, source: str) -> None:
    """Refuse a cached layer masked by Keras masks whose fully masked rows average over
    every key ("add", "replace": see emit/attention.py), later positions included, when its
    output reaches another cached layer's keys or values: Keras recomputes those rows on
    each longer prefix, a cache keeps them as they were. (Masked "zero", the rows are zeros;
    read only at their own positions, they are computed on the same keys as Keras'.)"""
    for node in cached:
        if not _caches_key_masks(node) or mha_masking(node) == "zero" or not any(
                node.input(role) in stream for role in MASK_ROLES):
            continue
        reached = set(node.outputs)
        for later in graph.nodes:
            inputs = dict(later.input_tensors())
            if later in cached and later is not node and any(
                    inputs.get(role) in reached for role in ("key", "value") + KEY_MASK_ROLES):
                raise NotCausalDecoderError(
                    f"{source}: --with-past: layer {node.name!r} ({node.class_name}) is "
                    f"masked by Keras masks (Embedding(mask_zero=True)), and a fully masked "
                    f"query (a padded position) averages over every key, later ones "
                    f"included; the keys and values of {later.name!r} computed from it "
                    f"would change with every new token, which a cache cannot reproduce. "
                    f"Export without --with-past" + (
                        "" if node.layer.dialect == "keras2" else
                        " (Keras 3 computes such rows as zeros, which a cache can follow, "
                        "when the layer has dropout > 0)"))
            if any(t in reached for t in inputs.values()):
                reached.update(later.outputs + later.mask_outputs)


def _caches_key_masks(node: Node) -> bool:
    return node.class_name in KEY_MASKS_CACHED and node.layer.kind.family == "attention"


def _is_causal_self_attention(node: Node) -> bool:
    kind = node.layer.kind
    if kind is not None and kind.family == "keras_multi_head":
        return node.class_name == "MultiHeadAttention" and bool(
            node.config.get("history_only"))
    return (node.class_name in CACHED_CLASSES and kind is not None
            and kind.family in ATTENTION_FAMILIES
            and bool(node.arguments.get("use_causal_mask")))


def _stream(graph: Graph, cached: list) -> set:
    """The tensors derived from the decoder inputs: the graph inputs the cached layers'
    queries derive from."""
    decoder_inputs = set()
    for node in cached:
        decoder_inputs |= _sources(node.input("query"))
    stream = set(decoder_inputs)
    for node in graph.nodes:
        if any(t in stream for _, t in node.input_tensors()):
            stream.update(node.outputs + node.mask_outputs)
    return stream


def _sources(tensor: Tensor) -> set:
    """The graph inputs whose positions ``tensor``'s positions are computed from: an
    attention output's positions are its query's (the keys and values may be another
    sequence, an encoder's), and masks only select (a padding mask is not a source of the
    attention output it masks)."""
    found, todo, seen = set(), [tensor], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        producer = current.producer
        if producer is None:
            found.add(current)
        elif producer.input("query") is not None:
            todo.append(producer.input("query"))
        else:
            todo.extend(t for role, t in producer.input_tensors()
                        if role.split("[")[0] not in SELECTING_ROLES)
    return found


def _check_node(node: Node, stream: set, cached: bool, source: str) -> None:
    """Refuse a call on the stream that could let a position see later ones, or that the
    cache cannot reproduce."""
    inputs = dict(node.input_tensors())
    if not any(t in stream for t in inputs.values()):
        return
    where = f"{source}: --with-past: layer {node.name!r} ({node.class_name})"
    if cached:
        for role in KEY_MASK_ROLES + ("attention_mask",):
            if node.input(role) in stream and (role == "attention_mask"
                                               or not _caches_key_masks(node)):
                raise NotCausalDecoderError(
                    f"{where} is masked by its {role.replace('_', ' ')}, which covers only "
                    f"the new positions, not the cached ones; export without --with-past, "
                    f"or pass the padding mask as a model input (a padding_mask)")
        given = node.input("attention_mask")
        if given is not None and (given.rank != 3 or given.shape[1] != 1):
            raise NotCausalDecoderError(
                f"{where} is given an attention_mask of shape {given.shape}; with a cache "
                f"only a mask per key, (batch, 1, keys), can cover the cached positions")
        for role in ("key", "value"):
            if node.input(role) not in stream:
                raise NotCausalDecoderError(
                    f"{where} has a causal mask but its {role} is not computed from the "
                    f"decoder's tokens, so it is not causal self-attention")
        rank = 4 if node.class_name == "AttentionCore" else 3  # (B, T, heads, dim) there
        if node.input("query").rank != rank or node.arguments.get("return_attention_scores"):
            raise NotCausalDecoderError(
                f"{where}: only 3-D causal self-attention without returned scores can be "
                f"cached")
        return
    if node.class_name in CACHED_CLASSES or (node.layer.kind is not None
                                             and node.layer.kind.family == "attention"):
        attended = [node.input(r) for r in ("key", "value")]
        if any(t in stream for t in attended if t is not None):
            if node.arguments.get("use_causal_mask"):
                raise NotCausalDecoderError(
                    f"{where} is causal, but --with-past caches only "
                    f"{' and '.join(CACHED_CLASSES)} yet; export without --with-past")
            raise NotCausalDecoderError(
                f"{where} attends over the decoder's positions without use_causal_mask=True "
                f"(keras-multi-head: history_only=True), so a position may see later ones (an attention_mask passed in cannot be "
                f"proven causal: call the layer with use_causal_mask=True instead); export "
                f"without --with-past")
        if node.input("query") in stream and all(
                role in ("query", "query_mask") or t not in stream
                for role, t in inputs.items()):
            return  # cross attention: recomputed from the encoder's keys and values
    if (_position_wise(node) or _position_indexed(node)) and all(
            t in stream for t in inputs.values()):
        return
    if node.class_name in NOT_CACHEABLE:
        raise NotCausalDecoderError(f"{where} {NOT_CACHEABLE[node.class_name]}; export "
                                    f"without --with-past")
    raise NotCausalDecoderError(
        f"{where} is not known to compute each position from that position alone, so "
        f"incremental decoding cannot be proven equal to the full model; --with-past "
        f"accepts causal self-attention, cross attention to an encoder input and "
        f"per-position layers (Dense, Embedding, normalizations over the last axis, "
        f"merges, activations) on the decoder's tokens")


def _position_wise(node: Node) -> bool:
    kind = node.layer.kind
    if kind is not None and kind.family == "operations":
        return operation(node)[0] in POSITION_WISE_OPS
    if node.class_name == "EinsumDense":
        return _keeps_positions(node.config.get("equation", ""))
    if node.class_name not in POSITION_WISE:
        return False
    rank = node.data_inputs()[0].rank
    axis = node.config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    return rank is not None and all(normalize_axis(a, rank) == rank - 1 for a in axes)


def _keeps_positions(equation: str) -> bool:
    """An EinsumDense equation ``bqm,muh->bquh`` maps each (batch, position) alone: its
    input's first two axes lead the output and the kernel has neither."""
    operands, _, output = equation.replace(" ", "").partition("->")
    inputs, _, kernel = operands.partition(",")
    leading = inputs[:2]
    return (len(leading) == 2 and "." not in leading and output[:2] == leading
            and not set(leading) & set(kernel))


def _position_indexed(node: Node) -> bool:
    """A KerasHub position layer whose positions run along axis 1 (offset by the cache)."""
    rank = node.data_inputs()[0].rank
    if node.class_name not in POSITION_INDEXED or rank is None or node.input(
            "positions") is not None or node.input("start_index") is not None:
        return False
    if node.class_name in ROTARY:
        return node.config.get("sequence_axis", 1) % rank == 1
    return rank == 3  # the second-to-last axis


def _cache_dims(node: Node) -> tuple:
    """(key/value heads, key head size, value head size) of a cached layer."""
    config = node.config
    if node.layer.kind.family == "keras_multi_head":  # F / heads features per head
        heads = config["head_num"]
        size = node.input("value").shape[-1] // heads
        return heads, size, size
    if node.class_name in ("GroupQueryAttention", "AttentionCore"):
        return config["num_key_value_heads"], config["head_dim"], config["head_dim"]
    return (config["num_heads"], config["key_dim"],
            config.get("value_dim") or config["key_dim"])


def decode_incrementally(session, arrays: dict, decoder_inputs: list, chunks: tuple,
                         past_and_new_inputs: tuple = ()):
    """Run a ``with_past`` model in onnxruntime ``session`` as a generation loop does:
    the decoder inputs' positions ``chunks[0]`` (the prompt, empty cache), then the next
    ``chunks[1]``, ..., each step fed the previous step's present as its past, the
    ``past_and_new_inputs`` (padding masks) up to its last position, and the other inputs
    whole. Yields ``(start, end, outputs)``: the model's own outputs (no cache) for
    positions start ... end - 1."""
    past = empty_cache(session, len(next(iter(arrays.values()))))
    names = [o.name for o in session.get_outputs()]
    start = 0
    for length in chunks:
        end = start + length
        feeds = {name: array[:, start:end] if name in decoder_inputs else
                 array[:, :end] if name in past_and_new_inputs else array
                 for name, array in arrays.items()}
        outputs = session.run(None, {**feeds, **past})
        past = {name.replace(PRESENT_PREFIX, PAST_PREFIX, 1): value
                for name, value in zip(names, outputs) if name.startswith(PRESENT_PREFIX)}
        yield start, end, [value for name, value in zip(names, outputs)
                           if not name.startswith(PRESENT_PREFIX)]
        start = end


def empty_cache(session, batch: int) -> dict:
    """The ``past_key_values.*`` feeds of the prompt: keys and values (batch, heads, 0, dim),
    key masks (batch, 0)."""
    dtypes = {"tensor(float16)": np.float16, "tensor(bool)": np.bool_}
    return {i.name: np.zeros((batch, 0) if len(i.shape) == 2 else (batch, i.shape[1], 0,
                                                                     i.shape[3]),
                             dtypes.get(i.type, np.float32))
            for i in session.get_inputs() if i.name.startswith(PAST_PREFIX)}
