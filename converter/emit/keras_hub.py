"""Emitters for KerasHub's layers (see converter/layers/keras_hub.py). Its transformer
blocks and TokenAndPositionEmbedding are composite layers, emitted through the layers they
expand into; what remains here has no composition of known layers: the position encodings,
ReversibleEmbedding, and CachedMultiHeadAttention (Keras' MultiHeadAttention emitter)."""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from ..errors import ConversionError
from ..ir import Node
from ..model import named_weights
from .attention import multi_head_attention, unsqueeze
from .builder import Builder
from .core import embedding
from .registry import emits


@emits("CachedMultiHeadAttention")
def cached_multi_head_attention(node: Node, b: Builder) -> list:
    """Without a cache, Keras' MultiHeadAttention (its masks only from attention_mask)."""
    if node.input("cache") is not None:
        raise ConversionError(f"layer {node.name!r}: CachedMultiHeadAttention called with a "
                              f"cache is not supported yet (call it without one)")
    return multi_head_attention(node, b)


@emits("ReversibleEmbedding")
def reversible_embedding(node: Node, b: Builder) -> list:
    """Forward: Embedding. ``reverse=True``: logits = x @ embeddingsᵀ (or @
    reverse_embeddings without tie_weights), then cap * tanh(logits / cap) with
    ``logit_soft_cap``."""
    if not node.arguments.get("reverse"):
        return embedding(node, b)
    config, base = node.config, node.name
    if config.get("reverse_dtype") not in (None, "float32"):
        raise ConversionError(f"layer {base!r}: ReversibleEmbedding with reverse_dtype="
                              f"{config['reverse_dtype']!r} is not supported yet")
    weights = named_weights(node)
    kernel = (weights["embeddings"].T if config.get("tie_weights", True)
              else weights["reverse_embeddings"])
    logits = b.op("MatMul", [b.value(node.input("inputs")),
                             b.constant(f"{base}/kernel", np.asarray(kernel, np.float32))],
                  f"{base}/logits")
    cap = config.get("logit_soft_cap")
    if cap is None:
        return [logits]
    cap = b.constant(f"{base}/soft_cap", np.float32(cap))
    capped = b.op("Tanh", [b.op("Div", [logits, cap], f"{base}/scaled")], f"{base}/tanh")
    return [b.op("Mul", [capped, cap], base)]


def _start_index(node: Node) -> int:
    """The ``start_index`` call argument, a Python int (a tensor one is refused)."""
    if node.input("positions") is not None or node.input("start_index") is not None:
        raise ConversionError(f"layer {node.name!r}: {node.class_name} called with "
                              f"positions or a tensor start_index is not supported yet")
    return int(node.arguments.get("start_index", 0))


def _positions(b: Builder, x: str, axis: int, start: int, base: str, offset=None) -> str:
    """float32 [start, start + length of ``axis`` of x), as KerasHub's arange; plus the
    int64 scalar ``offset`` (past_length, with a key/value cache)."""
    length = b.op("Shape", [x], f"{base}/length", start=axis, end=axis + 1)
    length = b.op("Squeeze", [length], f"{base}/length_scalar")
    positions = b.op("Range", [b.constant(f"{base}/zero", np.int64(0)), length,
                               b.constant(f"{base}/one", np.int64(1))], f"{base}/range")
    positions = b.op("Cast", [positions], f"{base}/float", to=TensorProto.FLOAT)
    if offset is not None:
        positions = b.op("Add", [positions, b.op("Cast", [offset], f"{base}/offset_float",
                                                 to=TensorProto.FLOAT)], f"{base}/offset")
    if start:
        positions = b.op("Add", [positions, b.constant(f"{base}/start", np.float32(start))],
                         base)
    return positions


def _broadcast_to_input(b: Builder, table: str, x: str, base: str) -> str:
    return b.op("Expand", [table, b.op("Shape", [x], f"{base}/shape")], base)


@emits("PositionEmbedding")
def position_embedding(node: Node, b: Builder) -> list:
    """embeddings[start : start + T] (T: the input's second-to-last axis; start plus
    past_length with a key/value cache) broadcast to the input's shape."""
    tensor, base = node.input("inputs"), node.name
    start = _start_index(node)
    offset = b.position_offsets.get(node)
    table = np.asarray(named_weights(node)["embeddings"], np.float32)
    x = b.value(tensor)
    length = tensor.shape[-2]
    if length is not None and offset is None:
        rows = b.constant(f"{base}/embeddings", table[start:start + length])
    else:
        starts = b.ints(f"{base}/starts", [start])
        if offset is not None:
            starts = b.op("Add", [starts, unsqueeze(b, offset, [0], f"{base}/past_length")],
                          f"{base}/offset_starts")
        size = b.op("Shape", [x], f"{base}/length", start=-2, end=-1)
        end = b.op("Add", [size, starts], f"{base}/end")
        rows = b.op("Slice", [b.constant(f"{base}/embeddings", table), starts, end,
                              b.ints(f"{base}/axes", [0])], f"{base}/rows")
    return [_broadcast_to_input(b, rows, x, base)]


@emits("SinePositionEncoding")
def sine_position_encoding(node: Node, b: Builder) -> list:
    """pe[t, i] = sin(t w_i) (even i) or cos(t w_i) (odd i), w_i = (1 / max_wavelength) **
    (2 (i // 2) / hidden) computed in float32 as KerasHub does, broadcast to the input."""
    tensor, base = node.input("inputs"), node.name
    hidden = tensor.shape[-1]
    if hidden is None:
        raise ConversionError(f"layer {base!r}: SinePositionEncoding needs a fixed feature "
                              f"size")
    x = b.value(tensor)
    rank = len(tensor.shape)
    positions = _positions(b, x, rank - 2, _start_index(node), f"{base}/positions",
                           b.position_offsets.get(node))
    index = np.arange(hidden)
    min_frequency = np.float32(1 / node.config.get("max_wavelength", 10000))
    timescales = np.power(min_frequency, (2 * (index // 2)).astype(np.float32)
                          / np.float32(hidden)).astype(np.float32)
    angles = b.op("Mul", [unsqueeze(b, positions, [1], f"{base}/positions_column"),
                          b.constant(f"{base}/timescales", timescales[None, :])],
                  f"{base}/angles")
    odd = b.constant(f"{base}/odd", (index % 2 == 1)[None, :])
    table = b.op("Where", [odd, b.op("Cos", [angles], f"{base}/cos"),
                           b.op("Sin", [angles], f"{base}/sin")], f"{base}/table")
    return [_broadcast_to_input(b, table, x, base)]


def rotary_inverse_frequencies(config: dict, dim: int) -> np.ndarray:
    """θ_j = max_wavelength ** (-2j / (denominator_dim or dim)), divided by scaling_factor
    ("linear"), by scaling_factor ** (dim / (dim - 2)) ("dynamic"), or YaRN's blend of the
    plain and the interpolated frequencies ("yarn"), in float32 as KerasHub computes them."""
    f32 = np.float32
    index = np.arange(0, dim, 2, dtype=f32)
    base, factor = f32(config.get("max_wavelength", 10000)), f32(config.get("scaling_factor", 1.0))
    rope = config.get("rope_type", "linear")
    if rope == "yarn":
        return _yarn_inverse_frequencies(config, dim, base, factor)
    inverse = np.power(base, -(index / f32(config.get("denominator_dim") or dim)))
    if rope == "linear":
        inverse = inverse / factor
    elif rope == "dynamic":
        inverse = inverse / np.power(factor, f32(dim) / f32(max(1, dim - 2)))
    return inverse.astype(f32)


def _yarn_inverse_frequencies(config: dict, dim: int, base, factor) -> np.ndarray:
    """KerasHub's ``_get_yarn_inverse_freq``: extrapolated frequencies (1 / base ** (2j /
    dim)) where they rotate fast, interpolated ones (divided by scaling_factor) where slow,
    a linear ramp between the correction dims of beta_fast and beta_slow."""
    f32 = np.float32
    powers = np.power(base, np.arange(0, dim, 2, dtype=f32) / f32(dim))
    extrapolated, interpolated = f32(1.0) / powers, f32(1.0) / (factor * powers)
    longest = f32(config.get("original_max_position_embeddings", 4096))

    def correction_dim(rotations):
        return (f32(dim) * np.log(longest / (f32(rotations) * f32(2) * f32(np.pi)))) / (
            f32(2) * np.log(base))

    low = correction_dim(config.get("beta_fast", 32.0))
    high = correction_dim(config.get("beta_slow", 1.0))
    if config.get("truncate", True):
        low, high = np.floor(low), np.ceil(high)
    low, high = np.maximum(low, f32(0)), np.minimum(high, f32(dim - 1))
    ramp = np.clip((np.arange(dim // 2, dtype=f32) - low) / np.maximum(high - low, f32(0.001)),
                   0, 1)
    extrapolation = f32(1) - ramp
    return (interpolated * (f32(1) - extrapolation)
            + extrapolated * extrapolation).astype(f32)


def rotary_amplitude(config: dict):
    """YaRN scales cos and sin by 0.1 ln(scaling_factor) + 1; None otherwise."""
    if config.get("rope_type", "linear") != "yarn":
        return None
    f32 = np.float32
    return f32(f32(0.1) * np.log(f32(config.get("scaling_factor", 1.0)))) + f32(1.0)


@emits("RotaryEmbedding")
def rotary_embedding(node: Node, b: Builder) -> list:
    """y = x cos(t θ) + rotate_half(x) sin(t θ), rotate_half(x) = [-x2, x1] for the halves
    of the feature axis, t the position on the sequence axis; the angles repeat [t θ, t θ]
    over the feature axis as KerasHub's ``stack`` + ``reshape`` lays them out."""
    tensor, base, config = node.input("inputs"), node.name, node.config
    rank = len(tensor.shape)
    sequence = config.get("sequence_axis", 1) % rank
    feature = config.get("feature_axis", -1) % rank
    dim = tensor.shape[feature]
    if dim is None:
        raise ConversionError(f"layer {base!r}: RotaryEmbedding needs a fixed feature size")
    inverse = rotary_inverse_frequencies(config, dim)
    # Keras' moveaxis(x, (feature, sequence), (-1, 1)) as a permutation, and back.
    perm = [int(d) - 2 for d in np.moveaxis(np.empty(tuple(range(2, rank + 2))),
                                            (feature, sequence), (-1, 1)).shape]
    x = b.value(tensor)
    if perm != list(range(rank)):
        x = b.op("Transpose", [x], f"{base}/moved", perm=perm)
    positions = _positions(b, x, 1, _start_index(node), f"{base}/positions",
                           b.position_offsets.get(node))
    frequencies = b.op("Mul", [unsqueeze(b, positions, [1], f"{base}/positions_column"),
                               b.constant(f"{base}/inverse_frequencies", inverse[None, :])],
                       f"{base}/frequencies")
    angles = b.op("Concat", [frequencies, frequencies], f"{base}/angles", axis=-1)
    angles = unsqueeze(b, angles, [0] + list(range(2, rank - 1)), f"{base}/angles_nd")
    half = dim // 2
    x1, x2 = b.op("Split", [x, b.ints(f"{base}/halves", [half, half])], f"{base}/half",
                  outputs=2, axis=-1)
    rotated = b.op("Concat", [b.op("Neg", [x2], f"{base}/minus_x2"), x1], f"{base}/rotated",
                   axis=-1)
    cos, sin = (b.op(f, [angles], f"{base}/{f.lower()}") for f in ("Cos", "Sin"))
    amplitude = rotary_amplitude(config)
    if amplitude is not None:
        scale = b.constant(f"{base}/amplitude", amplitude)
        cos, sin = (b.op("Mul", [v, scale], f"{base}/{n}_scaled")
                    for v, n in ((cos, "cos"), (sin, "sin")))
    y = b.op("Add", [b.op("Mul", [x, cos], f"{base}/x_cos"),
                     b.op("Mul", [rotated, sin], f"{base}/rotated_sin")], f"{base}/rotary")
    if perm != list(range(rank)):
        y = b.op("Transpose", [y], base, perm=[int(i) for i in np.argsort(perm)])
    return [y]


@emits("RMSNormalization")
def rms_normalization(node: Node, b: Builder) -> list:
    """x * rsqrt(mean(x², last axis) + 1e-6) * scale (KerasHub's fixed epsilon)."""
    tensor, base = node.input("inputs"), node.name
    x = b.value(tensor)
    if tensor.dtype != "float32":
        x = b.op("Cast", [x], f"{base}/float", to=TensorProto.FLOAT)
    mean = b.reduce("ReduceMean", b.op("Mul", [x, x], f"{base}/square"), [-1], f"{base}/mean")
    root = b.op("Sqrt", [b.op("Add", [mean, b.constant(f"{base}/epsilon", np.float32(1e-6))],
                              f"{base}/mean_eps")], f"{base}/root")
    normalized = b.op("Mul", [x, b.op("Reciprocal", [root], f"{base}/rsqrt")],
                      f"{base}/normalized")
    scale = np.asarray(named_weights(node)["scale"], np.float32)
    return [b.op("Mul", [normalized, b.constant(f"{base}/scale", scale)], base)]


def alibi_slopes(heads: int, bias_max: float) -> list:
    """KerasHub's ALiBi slopes: 2^(-bias_max / n) ** (i + 1) for a power of two n, else
    those of the power of two below, then every other slope of twice that."""
    if math.log2(heads).is_integer():
        start = 2 ** (-(2 ** -(math.log2(heads) - math.log2(bias_max))))
        return [start * start ** i for i in range(heads)]
    power = 2 ** math.floor(math.log2(heads))
    return (alibi_slopes(power, bias_max)
            + alibi_slopes(2 * power, bias_max)[0::2][:heads - power])


@emits("AlibiBias")
def alibi_bias(node: Node, b: Builder) -> list:
    """scores + slopes[h] * (1 - S + j) for key position j, broadcast (1, heads, 1, S)."""
    tensor, base = node.input("attention_scores"), node.name
    if tensor.shape is None or len(tensor.shape) != 4 or tensor.shape[-3] is None:
        raise ConversionError(f"layer {base!r}: AlibiBias needs (batch, heads, query, key) "
                              f"scores with a fixed number of heads")
    heads = tensor.shape[-3]
    slopes = np.asarray(alibi_slopes(heads, node.config.get("alibi_bias_max", 8)),
                        np.float32).reshape(1, heads, 1, 1)
    scores = b.value(tensor)
    length = b.op("Shape", [scores], f"{base}/key_length", start=-1)
    length = b.op("Squeeze", [length], f"{base}/key_length_scalar")
    start = b.op("Sub", [b.constant(f"{base}/one", np.int64(1)), length], f"{base}/start")
    offsets = b.op("Range", [start, b.constant(f"{base}/end", np.int64(1)),
                             b.constant(f"{base}/step", np.int64(1))], f"{base}/offsets")
    offsets = b.op("Cast", [offsets], f"{base}/offsets_float", to=TensorProto.FLOAT)
    bias = b.op("Mul", [b.constant(f"{base}/slopes", slopes), offsets], f"{base}/bias")
    return [b.op("Add", [scores, bias], base)]
