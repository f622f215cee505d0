"""Emitters for KerasHub's layers (see converter/layers/keras_hub.py). Its transformer
blocks and TokenAndPositionEmbedding are composite layers, emitted through the layers they
expand into; what remains here has no composition of known layers: the position encodings,
ReversibleEmbedding, the RMS norms, AlibiBias, ViT's, DeiT's and DINOV2's patch embeddings,
DINOV2's layer scale, the sparse mixtures of experts, and CachedMultiHeadAttention (Keras'
MultiHeadAttention emitter)."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConversionError
from ..ir import Node
from ..layers.keras_hub import is_gemma_norm
from ..model import named_weights
from .activations import apply_activation
from .attention import multi_head_attention, positions, project, unsqueeze
from .builder import Builder
from .core import MASKED_LOGIT, embedding
from .normalization import root_mean_square_normalized
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
    """KerasHub's RotaryEmbedding (see ``rotate``), θ from ``rotary_inverse_frequencies``."""
    return rotate(node, b, lambda x, dim: b.constant(
        f"{node.name}/inverse_frequencies",
        rotary_inverse_frequencies(node.config, dim)[None, :]), rotary_amplitude(node.config))


def rotate(node: Node, b: Builder, inverse_of, amplitude) -> list:
    """y = x cos(t θ) + rotate_half(x) sin(t θ), rotate_half(x) = [-x2, x1] for the halves
    of the feature axis, t the position on the sequence axis, θ = ``inverse_of(x, dim)``
    (a (1, dim / 2) value; x with its sequence axis moved to 1), cos and sin times
    ``amplitude`` when not None; the angles repeat [t θ, t θ] over the feature axis as
    KerasHub's ``stack`` + ``reshape`` lays them out."""
    tensor, base, config = node.input("inputs"), node.name, node.config
    rank = len(tensor.shape)
    sequence = config.get("sequence_axis", 1) % rank
    feature = config.get("feature_axis", -1) % rank
    dim = tensor.shape[feature]
    if dim is None:
        raise ConversionError(f"layer {base!r}: RotaryEmbedding needs a fixed feature size")
    # Keras' moveaxis(x, (feature, sequence), (-1, 1)) as a permutation, and back.
    perm = [int(d) - 2 for d in np.moveaxis(np.empty(tuple(range(2, rank + 2))),
                                            (feature, sequence), (-1, 1)).shape]
    x = b.value(tensor)
    if perm != list(range(rank)):
        x = b.op("Transpose", [x], f"{base}/moved", perm=perm)
    positions = _positions(b, x, 1, _start_index(node), f"{base}/positions",
                           b.position_offsets.get(node))
    frequencies = b.op("Mul", [unsqueeze(b, positions, [1], f"{base}/positions_column"),
                               inverse_of(x, dim)], f"{base}/frequencies")
    angles = b.op("Concat", [frequencies, frequencies], f"{base}/angles", axis=-1)
    angles = unsqueeze(b, angles, [0] + list(range(2, rank - 1)), f"{base}/angles_nd")
    half = dim // 2
    x1, x2 = b.op("Split", [x, b.ints(f"{base}/halves", [half, half])], f"{base}/half",
                  outputs=2, axis=-1)
    rotated = b.op("Concat", [b.op("Neg", [x2], f"{base}/minus_x2"), x1], f"{base}/rotated",
                   axis=-1)
    cos, sin = (b.op(f, [angles], f"{base}/{f.lower()}") for f in ("Cos", "Sin"))
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
    """KerasHub's RMSNormalization classes, in float32: modeling's x * rsqrt(mean(x²,
    last axis) + 1e-6) * scale; Gemma's and Gemma 3's x * 1 / sqrt(mean(x², last axis) +
    epsilon) * (1 + scale), the 1 + scale folded in float32 as Keras adds it."""
    tensor, base = node.input("inputs"), node.name
    x = b.value(tensor)
    if tensor.dtype != "float32":
        x = b.op("Cast", [x], f"{base}/float", to=TensorProto.FLOAT)
    gemma = is_gemma_norm(node.layer.module)
    epsilon = node.config.get("epsilon", 1e-6) if gemma else 1e-6
    normalized = root_mean_square_normalized(b, x, [-1], epsilon, base)
    scale = np.asarray(named_weights(node)["scale"], np.float32)
    if gemma:
        scale = np.float32(1) + scale
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


# ---------------------------------------------------------------------- Qwen 3.5


@emits("Qwen3_5GatedDeltaNet")
def gated_delta_net(node: Node, b: Builder) -> list:
    """keras_hub's Qwen3_5GatedDeltaNet without a cache. x zeroed at padding; q, k, v =
    silu(causal depthwise conv(x W_qkv)) split, per head; k and q repeated to the value
    heads, L2-normalized (q also / sqrt(key head dim)); write rate β = sigmoid(x W_b),
    decay α = exp(-exp(A_log) softplus(x W_a + dt_bias)). The delta rule over t (an ONNX
    Scan, state S of (key dim, value dim) per head, from zero):
    S = α_t S; S += k_t ⊗ β_t (v_t - S^T k_t); o_t = S^T q_t. keras_hub computes the same
    recurrence in closed form by chunks of 64. Output: out_proj(rms(o) * scale *
    silu(x W_z))."""
    config, base = node.config, node.name
    if node.input("cache") is not None:
        raise ConversionError(f"layer {base!r}: Qwen3_5GatedDeltaNet called with a cache is "
                              f"not supported yet")
    weights = {k: np.asarray(v, np.float32) for k, v in named_weights(node).items()}
    key_heads, heads = config["linear_num_key_heads"], config["linear_num_value_heads"]
    key_size, value_size = config["linear_key_head_dim"], config["linear_value_head_dim"]
    x = b.value(node.input("hidden_states"))
    mask = node.input("attention_mask")
    if mask is not None and len(mask.shape) == 2:
        keep = b.op("Cast", [b.value(mask)], f"{base}/keep", to=TensorProto.FLOAT)
        x = b.op("Mul", [x, unsqueeze(b, keep, [-1], f"{base}/keep_column")], f"{base}/masked")

    def project(name, h):
        return _times_kernel(b, h, weights, name, base)

    def heads_of(t, count, size, label):
        return b.op("Reshape", [t, b.ints(f"{base}/{label}_shape", [0, 0, count, size])],
                    f"{base}/{label}")

    mixed = _causal_depthwise_conv(b, project("in_proj_qkv", x), weights["conv1d_kernel"],
                                   f"{base}/conv")
    mixed = apply_activation(b, mixed, "silu", f"{base}/conv", node.layer.dialect)
    query, key, value = b.op("Split", [mixed, b.ints(f"{base}/qkv_sizes", [
        key_heads * key_size, key_heads * key_size, heads * value_size])], f"{base}/qkv",
        outputs=3, axis=-1)
    query, key = (_l2_normalized(b, _repeat_heads(b, heads_of(t, key_heads, key_size, role),
                                                  key_heads, key_size, heads // key_heads,
                                                  f"{base}/{role}"), f"{base}/{role}_l2")
                  for t, role in ((query, "query"), (key, "key")))
    query = b.op("Mul", [query, b.constant(f"{base}/query_scale",
                                           np.float32(1.0 / key_size ** 0.5))],
                 f"{base}/query_scaled")
    value = heads_of(value, heads, value_size, "value")
    write = b.op("Sigmoid", [project("in_proj_b", x)], f"{base}/beta")
    rate = b.op("Softplus", [b.op("Add", [project("in_proj_a", x),
                                          b.constant(f"{base}/dt_bias", weights["dt_bias"])],
                                  f"{base}/a_biased")], f"{base}/softplus")
    log_decay = b.op("Mul", [b.constant(f"{base}/minus_a", -np.exp(weights["A_log"])), rate],
                     f"{base}/g")
    decay = b.op("Exp", [log_decay], f"{base}/decay")
    batch = b.op("Shape", [x], f"{base}/batch", start=0, end=1)
    state_shape = b.op("Concat", [batch, b.ints(f"{base}/state_dims",
                                                [heads, key_size, value_size])],
                       f"{base}/state_shape", axis=0)
    state = b.op("ConstantOfShape", [state_shape], f"{base}/state0",
                 value=numpy_helper.from_array(np.zeros(1, np.float32)))
    _, core = b.op("Scan", [state, query, key, value, decay, write], f"{base}/delta_rule",
                   outputs=2, body=_delta_rule_step(b, f"{base}/step"), num_scan_inputs=5,
                   scan_input_axes=[1] * 5, scan_output_axes=[1])
    normed = b.op("Mul", [root_mean_square_normalized(
        b, core, [-1], config.get("layer_norm_epsilon", 1e-6), f"{base}/core"),
        b.constant(f"{base}/norm_scale", weights["norm"])], f"{base}/normed")
    z = heads_of(project("in_proj_z", x), heads, value_size, "z")
    gated = b.op("Mul", [normed, apply_activation(b, z, "silu", f"{base}/z",
                                                  node.layer.dialect)], f"{base}/gated")
    flat = b.op("Reshape", [gated, b.ints(f"{base}/flat_shape", [0, 0, heads * value_size])],
                f"{base}/flat")
    return [project("out_proj", flat)]


def _times_kernel(b: Builder, x: str, weights: dict, name: str, base: str) -> str:
    """x times the folded kernel ``weights[name]`` (MatMul ``<base>/<name>``)."""
    return b.op("MatMul", [x, b.constant(f"{base}/{name}/kernel", weights[name])],
                f"{base}/{name}")


def _causal_depthwise_conv(b: Builder, x: str, kernel: np.ndarray, base: str) -> str:
    """(B, T, C) convolved along T per channel, y_t = Σ_j kernel[c, j] x_{t-K+1+j} (zeros
    before the start), as keras_hub's ``_causal_conv1d``."""
    channels, size = kernel.shape
    moved = b.op("Transpose", [x], f"{base}/channels_first", perm=[0, 2, 1])
    convolved = b.op("Conv", [moved, b.constant(f"{base}/kernel", kernel[:, None, :])],
                     f"{base}/depthwise", group=channels, kernel_shape=[size],
                     pads=[size - 1, 0])
    return b.op("Transpose", [convolved], base, perm=[0, 2, 1])


def _repeat_heads(b: Builder, x: str, heads: int, size: int, repeats: int,
                  base: str) -> str:
    """(B, T, heads, size) -> (B, T, heads * repeats, size), each head repeated in place
    (ops.repeat)."""
    if repeats == 1:
        return x
    spread = b.op("Expand", [unsqueeze(b, x, [3], f"{base}/heads_column"),
                             b.ints(f"{base}/repeats", [1, 1, 1, repeats, 1])],
                  f"{base}/spread")
    return b.op("Reshape", [spread, b.ints(f"{base}/repeated_shape",
                                           [0, 0, heads * repeats, size])],
                f"{base}/repeated")


def _l2_normalized(b: Builder, x: str, base: str) -> str:
    """x * rsqrt(Σ x² over the last axis + 1e-6), keras_hub's ``_l2norm``."""
    total = b.reduce("ReduceSum", b.op("Mul", [x, x], f"{base}/squared"), [-1],
                     f"{base}/sum_squares")
    shifted = b.op("Add", [total, b.constant(f"{base}/epsilon", np.float32(1e-6))],
                   f"{base}/sum_squares_eps")
    inverse = b.op("Reciprocal", [b.op("Sqrt", [shifted], f"{base}/norm")], f"{base}/inverse")
    return b.op("Mul", [x, inverse], base)


def _delta_rule_step(b: Builder, base: str) -> onnx.GraphProto:
    """The Scan body of one position: state S (B, H, K, V) and q, k (B, H, K), v (B, H, V),
    α, β (B, H) in; S = α S, S += k ⊗ β (v - Σ_K S k), o = Σ_K S q out (S, o). Its values
    are named apart from the outer graph's; its constants are its own nodes."""
    names = {n: b.fresh(f"{base}/{n}") for n in (
        "state", "query", "key", "value", "decay", "write", "axes_last2", "axis_key",
        "axis_last", "decay_nd", "decayed", "key_column", "remembered_terms", "remembered",
        "error", "write_column", "delta", "delta_row", "update", "new_state", "read_terms",
        "query_column", "output")}
    n = names

    def node(op, inputs, output, **attributes):
        return helper.make_node(op, [n[i] for i in inputs], [n[output]],
                                name=b.fresh(f"{n[output]}/{op}"), **attributes)

    def ints(name, values):
        return helper.make_node("Constant", [], [n[name]], name=b.fresh(f"{n[name]}/Constant"),
                                value=numpy_helper.from_array(np.asarray(values, np.int64)))

    nodes = [ints("axes_last2", [2, 3]), ints("axis_key", [2]), ints("axis_last", [3]),
             node("Unsqueeze", ["decay", "axes_last2"], "decay_nd"),
             node("Mul", ["state", "decay_nd"], "decayed"),
             node("Unsqueeze", ["key", "axis_last"], "key_column"),
             node("Mul", ["decayed", "key_column"], "remembered_terms"),
             node("ReduceSum", ["remembered_terms", "axis_key"], "remembered", keepdims=0),
             node("Sub", ["value", "remembered"], "error"),
             node("Unsqueeze", ["write", "axis_key"], "write_column"),
             node("Mul", ["error", "write_column"], "delta"),
             node("Unsqueeze", ["delta", "axis_key"], "delta_row"),
             node("Mul", ["key_column", "delta_row"], "update"),
             node("Add", ["decayed", "update"], "new_state"),
             node("Unsqueeze", ["query", "axis_last"], "query_column"),
             node("Mul", ["new_state", "query_column"], "read_terms"),
             node("ReduceSum", ["read_terms", "axis_key"], "output", keepdims=0)]

    def value_info(name):
        return helper.make_tensor_value_info(n[name], TensorProto.FLOAT, None)

    return helper.make_graph(nodes, base,
                             [value_info(v) for v in ("state", "query", "key", "value",
                                                      "decay", "write")],
                             [value_info("new_state"), value_info("output")])


def _patch_embedding(node: Node, b: Builder, image_size, patch_size, kernel: np.ndarray,
                     bias, leading: np.ndarray, table: np.ndarray) -> str:
    """Conv2D(hidden, kernel = strides = patch) on (B, H, W, C) images is one MatMul of
    each patch's (patch h, patch w, C) pixels with the kernel folded to (p·p·C, hidden):
    the images reshaped to (B, H/p, p, W/p, p, C), transposed to (B, H/p, W/p, p, p, C),
    flattened to (B, patches, p·p·C) in Keras' row-major patch order, times the kernel,
    plus the bias (when given), plus the position ``table`` (patches, hidden); the
    ``leading`` rows (k, hidden: tokens with their positions already added, the same
    float32 sums) tiled over the batch and prepended."""
    base, tensor = node.name, node.input("inputs")
    (height, width), (patch_h, patch_w) = image_size, patch_size
    hidden = kernel.shape[-1]
    channels = kernel.shape[2]
    if tuple(tensor.shape[1:]) != (height, width, channels):
        raise ConversionError(f"layer {base!r}: {node.class_name} expects "
                              f"(batch, {height}, {width}, {channels}) images, the model "
                              f"gives it {tensor.shape}")
    rows, columns = height // patch_h, width // patch_w
    x = b.op("Reshape", [b.value(tensor), b.ints(f"{base}/patch_grid",
                                                 [0, rows, patch_h, columns, patch_w,
                                                  channels])], f"{base}/patch_grid")
    x = b.op("Transpose", [x], f"{base}/patches_by_row", perm=[0, 1, 3, 2, 4, 5])
    x = b.op("Reshape", [x, b.ints(f"{base}/patch_shape",
                                   [0, rows * columns, patch_h * patch_w * channels])],
             f"{base}/patches")
    x = b.op("MatMul", [x, b.constant(f"{base}/patch_kernel", kernel.reshape(-1, hidden))],
             f"{base}/patch_embedding")
    if bias is not None:
        x = b.op("Add", [x, b.constant(f"{base}/patch_bias", bias)],
                 f"{base}/patch_embedding_biased")
    if not len(leading):
        return b.op("Add", [x, b.constant(f"{base}/position_embedding", table)], base)
    x = b.op("Add", [x, b.constant(f"{base}/position_embedding", table)],
             f"{base}/positioned")
    batch = b.op("Shape", [x], f"{base}/batch", start=0, end=1)
    shape = b.op("Concat", [batch, b.ints(f"{base}/token_rest", list(leading.shape))],
                 f"{base}/token_shape", axis=0)
    tokens = b.op("Expand", [b.constant(f"{base}/leading_tokens", leading[None]), shape],
                  f"{base}/tokens")
    return b.op("Concat", [tokens, x], base, axis=1)


def _float_weights(node: Node) -> dict:
    return {name: np.asarray(value, np.float32) for name, value in named_weights(node).items()}


@emits("ViTPatchingAndEmbedding")
def vit_patching_and_embedding(node: Node, b: Builder) -> list:
    """``_patch_embedding``; the class token (with ``use_class_token``) plus the
    position table's first row leads."""
    config, weights = node.config, _float_weights(node)
    table = weights["position_embedding/embeddings"]
    leading = weights["class_token"].reshape(1, -1) + table[:1] if (
        "class_token" in weights) else table[:0]
    return [_patch_embedding(node, b, config["image_size"], config["patch_size"],
                             weights["patch_embedding/kernel"],
                             weights.get("patch_embedding/bias"), leading,
                             table[len(leading):])]


@emits("DeiTEmbeddings")
def deit_embeddings(node: Node, b: Builder) -> list:
    """``_patch_embedding``; the class and distillation tokens plus the position table's
    first two rows lead."""
    config, weights = node.config, _float_weights(node)
    table = weights["position_embedding"][0]
    tokens = np.concatenate([weights["class_token"][0], weights["distillation_token"][0]])
    return [_patch_embedding(node, b, config["image_size"], config["patch_size"],
                             weights["patch_embedding/kernel"], weights["patch_embedding/bias"],
                             tokens + table[:2], table[2:])]


@emits("DINOV2Embedding")
def dinov2_embedding(node: Node, b: Builder) -> list:
    """``_patch_embedding``; the class token plus the position table's first row, then the
    register tokens (inserted after it, with no position), lead. The table is the one
    keras_hub computes at load from the saved pretraining table: a copy at the
    pretraining size, else its patch rows resized to the image's patch grid by
    ``tf_bicubic_resize`` (the rebuilt config refuses antialiased resizing)."""
    config, weights = node.config, _float_weights(node)
    table = weights["position_embeddings"][0]
    patch = config["patch_size"]
    if list(config["image_shape"]) != list(config["position_embedding_shape"]):
        side = math.isqrt(len(table) - 1)
        grid = (config["image_shape"][0] // patch, config["image_shape"][1] // patch)
        table = np.concatenate([table[:1], tf_bicubic_resize(
            table[1:].reshape(side, side, -1), grid).reshape(-1, table.shape[-1])])
    leading = [weights["cls_token"][0] + table[:1]]
    if "register_tokens" in weights:
        leading.append(weights["register_tokens"][0])
    return [_patch_embedding(node, b, config["image_shape"], (patch, patch),
                             weights["projection/kernel"], weights["projection/bias"],
                             np.concatenate(leading), table[1:])]


KEYS_CUBIC_TABLE_SIZE = 1024


def _keys_cubic_taps(in_size: int, out_size: int) -> tuple:
    """(indices, weights), both (out_size, 4), of TensorFlow's ResizeBicubic with half-pixel
    centers: output i samples t = (i + 0.5) · in / out - 0.5 (float32) at the pixels
    floor(t) - 1 .. floor(t) + 2, weighted by Keys' cubic (a = -0.5) at distance
    1 + d, d, 1 - d, 2 - d, d = t - floor(t) rounded to 1/1024 (TF's table); taps
    outside the image get weight 0 and the rest are renormalised to sum 1."""
    f32, a, size = np.float32, -0.5, KEYS_CUBIC_TABLE_SIZE
    x = np.arange(size + 1) / size
    near = (((a + 2) * x - (a + 3)) * x * x + 1).astype(f32)
    far = (((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a).astype(f32)
    location = (np.arange(out_size, dtype=f32) + f32(0.5)) * (f32(in_size) / f32(out_size)) \
        - f32(0.5)
    start = np.floor(location)
    offset = np.rint((location - start) * f32(size)).astype(np.int64)
    weights = np.stack([far[offset], near[offset], near[size - offset], far[size - offset]],
                       axis=1)
    wanted = start.astype(np.int64)[:, None] + np.arange(-1, 3)
    indices = np.clip(wanted, 0, in_size - 1)
    weights = np.where(indices == wanted, weights, f32(0))
    total = weights[:, 0] + weights[:, 1] + weights[:, 2] + weights[:, 3]
    usable = np.abs(total) >= f32(1000) * np.finfo(f32).tiny
    scale = np.where(usable, f32(1) / np.where(usable, total, f32(1)), f32(1))
    return indices, (weights * scale[:, None]).astype(f32)


def tf_bicubic_resize(grid: np.ndarray, size: tuple) -> np.ndarray:
    """``tf.image.resize(grid, size, "bicubic")`` (no antialiasing) of a constant
    (h, w, c) float32 grid, as TensorFlow's ResizeBicubic computes it (bit for bit on the
    grids tested): ``_keys_cubic_taps`` along the height, then along the width, each
    4-tap sum taken in order in float32."""
    grid = np.asarray(grid, np.float32)
    rows, row_weights = _keys_cubic_taps(grid.shape[0], size[0])
    columns, column_weights = _keys_cubic_taps(grid.shape[1], size[1])
    taps = grid[rows]  # (out h, 4, w, c)
    along_height = taps[:, 0] * row_weights[:, 0, None, None]
    for k in range(1, 4):
        along_height = along_height + taps[:, k] * row_weights[:, k, None, None]
    taps = along_height[:, columns]  # (out h, out w, 4, c)
    resized = taps[:, :, 0] * column_weights[None, :, 0, None]
    for k in range(1, 4):
        resized = resized + taps[:, :, k] * column_weights[None, :, k, None]
    return resized


@emits("DINOV2LayerScale")
def dinov2_layer_scale(node: Node, b: Builder) -> list:
    """x * lambda1, per feature."""
    scale = np.asarray(named_weights(node)["lambda1"], np.float32)
    return [b.op("Mul", [b.value(node.input("inputs")),
                         b.constant(f"{node.name}/lambda1", scale)], node.name)]


# ---------------------------------------------------------------------- Llama 3.1 rotary


def llama_inverse_frequencies(config: dict, dim: int) -> np.ndarray:
    """keras_hub 0.32's LlamaRotaryEmbedding._get_inverse_freq, in float32 in its order:
    θ_j = 1 / max_wavelength ** (2j / dim) (no position scaling); with Llama 3.1's
    ``low_freq_factor`` (then all four keys are set) and w_j = 2π / θ_j, L =
    ``pretraining_sequence_length``: θ_j / frequency_adjustment_factor where w_j > L /
    low_freq_factor, θ_j where w_j < L / high_freq_factor, between them (1 - s) θ_j /
    factor + s θ_j, s = (L / w_j - low_freq_factor) / (high_freq_factor -
    low_freq_factor)."""
    f32 = np.float32
    exponents = np.arange(0, dim, 2, dtype=f32) / f32(dim)
    inverse = f32(1.0) / np.power(f32(config.get("max_wavelength", 10000)), exponents)
    low = config.get("low_freq_factor")
    if low is None:
        return inverse
    high, length = config["high_freq_factor"], config["pretraining_sequence_length"]
    factor = f32(config["frequency_adjustment_factor"])
    wavelength = f32(2 * math.pi) / inverse
    inverse = np.where(wavelength > f32(length / low), inverse / factor, inverse)
    smooth = (f32(length) / wavelength - f32(low)) / f32(high - low)
    smoothed = (f32(1) - smooth) * (inverse / factor) + smooth * inverse
    medium = (wavelength >= f32(length / high)) & (wavelength <= f32(length / low))
    return np.where(medium, smoothed, inverse).astype(f32)


@emits("LlamaRotaryEmbedding")
def llama_rotary_embedding(node: Node, b: Builder) -> list:
    """KerasHub's LlamaRotaryEmbedding: ``rotate`` with ``llama_inverse_frequencies``."""
    return rotate(node, b, lambda x, dim: b.constant(
        f"{node.name}/inverse_frequencies",
        llama_inverse_frequencies(node.config, dim)[None, :]), None)


# ---------------------------------------------------------------------- Phi-3 rotary


def phi3_amplitude(config: dict) -> np.float32:
    """Phi3SuScaledRotaryEmbedding's embedding_scaling_factor: with r =
    max_sequence_length / pretraining_sequence_length, 1 when r <= 1, else
    sqrt(1 + ln r / ln pretraining_sequence_length) (in float64, as keras_hub computes
    it in Python)."""
    length = config.get("pretraining_sequence_length", 4096)
    ratio = config.get("max_sequence_length", 4096) / length
    return np.float32(1.0 if ratio <= 1.0 else
                      math.sqrt(1 + math.log(ratio) / math.log(length)))


@emits("Phi3SuScaledRotaryEmbedding")
def phi3_su_scaled_rotary_embedding(node: Node, b: Builder) -> list:
    """KerasHub's Phi3SuScaledRotaryEmbedding: ``rotate`` with θ = RotaryEmbedding's
    plain θ divided by ``inverese_freq_long_factor`` when start_index + the sequence
    length exceeds ``pretraining_sequence_length`` (chosen at run time: both folded, an
    ONNX Where picks one), else by ``inverese_freq_short_factor``; cos and sin times
    ``phi3_amplitude``. With a key/value cache start_index is past_length, as keras_hub's
    cached call passes cache_update_index: the factor follows past + new positions, and
    the cached keys keep the factor they were rotated with."""
    config, base = node.config, node.name
    start = _start_index(node)
    offset = b.position_offsets.get(node)

    def inverse_of(x, dim):
        plain = rotary_inverse_frequencies(config, dim)
        short, long = (b.constant(f"{base}/{which}_inverse_frequencies",
                                  (plain / np.asarray(config[key], np.float32))[None, :])
                       for which, key in (("short", "inverese_freq_short_factor"),
                                          ("long", "inverese_freq_long_factor")))
        length = b.op("Shape", [x], f"{base}/sequence_length", start=1, end=2)
        if offset is not None:
            length = b.op("Add", [length, offset], f"{base}/total_length")
        longer = b.op("Greater", [length, b.ints(
            f"{base}/pretraining_length_left",
            [config.get("pretraining_sequence_length", 4096) - start])], f"{base}/longer")
        return b.op("Where", [longer, long, short], f"{base}/inverse_frequencies")

    return rotate(node, b, inverse_of, phi3_amplitude(config))


# ---------------------------------------------------------------------- DeBERTa-v3


@emits("RelativeEmbedding")
def relative_embedding(node: Node, b: Builder) -> list:
    """LayerNormalization(layer_norm_epsilon) of the (2 bucket_size, hidden) table,
    expanded over the input's batch: (B, 2 bucket_size, hidden)."""
    base, weights = node.name, named_weights(node)
    table = np.asarray(weights["rel_embedding"], np.float32)[None]
    normalized = b.op("LayerNormalization",
                      [b.constant(f"{base}/table", table),
                       b.constant(f"{base}/gamma", np.asarray(weights["layer_norm/gamma"],
                                                              np.float32)),
                       b.constant(f"{base}/beta", np.asarray(weights["layer_norm/beta"],
                                                             np.float32))],
                      f"{base}/normalized", axis=-1,
                      epsilon=float(node.config.get("layer_norm_epsilon", 1e-5)))
    batch = b.op("Shape", [b.value(node.input("inputs"))], f"{base}/batch", start=0, end=1)
    shape = b.op("Concat", [batch, b.ints(f"{base}/table_shape", list(table.shape[1:]))],
                 f"{base}/shape", axis=0)
    return [b.op("Expand", [normalized, shape], base)]


def relative_position_indices(b: Builder, x: str, config: dict, base: str) -> tuple:
    """keras_hub's ``_get_rel_pos`` for the length S of x's axis 1, at run time, as the
    (S, S) int64 indices into the c2p and p2c scores. rel = i - j; mid = bucket_size // 2;
    a = mid - 1 where |rel| < mid, else |rel|; the log bucket
    ceil(log(a / mid) (mid - 1) / log((max_position_embeddings - 1) / mid)) + mid in
    float32, both logs taken at run time as keras_hub takes them; bucket = rel where
    a <= mid, else sign(rel) * log bucket. c2p: clip(bucket + bucket_size, 0,
    2 bucket_size - 1); p2c: clip(bucket_size - bucket, 0, 2 bucket_size - 1)."""
    f32, span = np.float32, config["bucket_size"]
    mid = span // 2
    ids = positions(b, x, f"{base}/positions")
    rel = b.op("Sub", [unsqueeze(b, ids, [1], f"{base}/query_ids"),
                       unsqueeze(b, ids, [0], f"{base}/key_ids")], f"{base}/rel_pos")

    def int64(name, value):
        return b.constant(f"{base}/{name}", np.int64(value))

    near = b.op("And", [b.op("Less", [rel, int64("mid", mid)], f"{base}/below_mid"),
                        b.op("Greater", [rel, int64("minus_mid", -mid)], f"{base}/above_mid")],
                f"{base}/near")
    distance = b.op("Where", [near, int64("mid_minus_one", mid - 1),
                              b.op("Abs", [rel], f"{base}/abs_rel_pos")], f"{base}/abs_pos")
    ratio = b.op("Div", [b.op("Cast", [distance], f"{base}/abs_pos_float",
                              to=TensorProto.FLOAT), b.constant(f"{base}/mid_float", f32(mid))],
                 f"{base}/ratio")
    numerator = b.op("Mul", [b.op("Log", [ratio], f"{base}/log_ratio"),
                             b.constant(f"{base}/mid_minus_one_float", f32(mid - 1))],
                     f"{base}/numerator")
    longest = f32(config["max_position_embeddings"] - 1) / f32(mid)
    denominator = b.op("Log", [b.constant(f"{base}/longest_ratio", longest)],
                       f"{base}/denominator")
    logarithmic = b.op("Cast", [b.op("Ceil", [b.op("Div", [numerator, denominator],
                                                    f"{base}/log_scaled")], f"{base}/ceil")],
                       f"{base}/log_int", to=TensorProto.INT64)
    logarithmic = b.op("Add", [logarithmic, int64("mid_offset", mid)], f"{base}/log_pos")
    bucket = b.op("Where", [b.op("LessOrEqual", [distance, int64("mid_bound", mid)],
                                 f"{base}/exact"),
                            rel, b.op("Mul", [logarithmic, b.op("Sign", [rel], f"{base}/sign")],
                                      f"{base}/signed_log_pos")], f"{base}/bucket_pos")
    low, high = int64("first_index", 0), int64("last_index", 2 * span - 1)
    c2p = b.op("Clip", [b.op("Add", [bucket, int64("span", span)], f"{base}/c2p_shifted"),
                        low, high], f"{base}/c2p_pos")
    p2c = b.op("Clip", [b.op("Sub", [int64("span_p2c", span), bucket], f"{base}/p2c_shifted"),
                        low, high], f"{base}/p2c_pos")
    return c2p, p2c


def disentangled_scores(b: Builder, content_query: str, content_key: str,
                        position_query: str, position_key: str, c2p_pos: str, p2c_pos: str,
                        scale: str, base: str) -> str:
    """c2p + p2c, scaled: c2p[i, j] = q_i · pos_k[c2p_pos[i, j]], p2c[i, j] =
    k_j · pos_q[p2c_pos[j, i]], on (B, heads, length, head size) heads."""
    def along_buckets(content, position, indices, name):
        scores = b.op("MatMul", [content, b.op("Transpose", [position], f"{base}/{name}_t",
                                               perm=[0, 1, 3, 2])], f"{base}/{name}_scores")
        leading = b.op("Shape", [scores], f"{base}/{name}_leading", start=0, end=3)
        length = b.op("Shape", [content], f"{base}/{name}_length", start=2, end=3)
        square = b.op("Concat", [leading, length], f"{base}/{name}_square", axis=0)
        indices = b.op("Expand", [indices, square], f"{base}/{name}_indices")
        return b.op("GatherElements", [scores, indices], f"{base}/{name}_gathered", axis=3)

    c2p = b.op("Mul", [along_buckets(content_query, position_key, c2p_pos, "c2p"), scale],
               f"{base}/c2p")
    p2c = b.op("Transpose", [along_buckets(content_key, position_query, p2c_pos, "p2c")],
               f"{base}/p2c_transposed", perm=[0, 1, 3, 2])
    p2c = b.op("Mul", [p2c, scale], f"{base}/p2c")
    return b.op("Add", [c2p, p2c], f"{base}/relative_scores")


@emits("DisentangledSelfAttention")
def disentangled_self_attention(node: Node, b: Builder) -> list:
    """keras_hub's DisentangledSelfAttention (inference: dropout is the identity). q, k, v
    the query / key / value EinsumDense heads of x (B, S, heads, head size); pos_q, pos_k
    the query / key EinsumDense heads of the relative embeddings (B, 2 bucket_size, ...).
    logits = q·k s + (c2p + p2c) (see ``disentangled_scores`` and
    ``relative_position_indices``), s = 1 / sqrt(3 head size); softmax on the attention
    mask as Keras' Softmax takes it (masked logits -1e9, masked probabilities 0), times v,
    the heads joined, attention_output Dense."""
    config, base = node.config, node.name
    if node.arguments.get("return_attention_scores"):
        raise ConversionError(f"layer {base!r}: DisentangledSelfAttention called with "
                              f"return_attention_scores is not supported yet")
    heads, hidden, span = config["num_heads"], config["hidden_dim"], config["bucket_size"]
    size = hidden // heads
    if span // 2 < 1 or config["max_position_embeddings"] - 1 <= span // 2:
        raise ConversionError(f"layer {base!r}: DisentangledSelfAttention with bucket_size "
                              f"{span} and max_position_embeddings "
                              f"{config['max_position_embeddings']} has no log buckets "
                              f"keras_hub computes finitely")
    weights = {name: np.asarray(value, np.float32)
               for name, value in named_weights(node).items()}
    x = b.value(node.input("inputs"))
    relative = b.value(node.input("rel_embeddings"))

    def split_heads(value, name, label):
        kernel = weights[f"{name}/kernel"].reshape(-1, heads * size)
        projected = project(b, value, kernel, weights[f"{name}/bias"].reshape(-1),
                            f"{base}/{label}")
        projected = b.op("Reshape", [projected, b.ints(f"{base}/{label}_shape",
                                                       [0, 0, heads, size])],
                         f"{base}/{label}_heads")
        return b.op("Transpose", [projected], f"{base}/{label}_t", perm=[0, 2, 1, 3])

    query, key, value = (split_heads(x, name, name) for name in ("query", "key", "value"))
    position_query = split_heads(relative, "query", "position_query")
    position_key = split_heads(relative, "key", "position_key")
    scale = b.constant(f"{base}/scale", np.float32(1.0 / math.sqrt(float(3 * size))))
    content = b.op("MatMul", [query, b.op("Transpose", [key], f"{base}/key_heads_t",
                                          perm=[0, 1, 3, 2])], f"{base}/content_scores")
    content = b.op("Mul", [content, scale], f"{base}/content")
    c2p_pos, p2c_pos = relative_position_indices(b, x, config, base)
    relative_scores = disentangled_scores(b, query, key, position_query, position_key,
                                          c2p_pos, p2c_pos, scale, base)
    logits = b.op("Add", [content, relative_scores], f"{base}/logits")
    mask_tensor = node.input("attention_mask")
    if mask_tensor is None:
        attention_scores = b.op("Softmax", [logits], f"{base}/attention_softmax", axis=-1)
    else:
        mask = b.value(mask_tensor)
        # Keras' _masked_softmax: the mask gains axes before its last two, to (B, 1, T, S)
        for _ in range(4 - len(mask_tensor.shape)):
            mask = unsqueeze(b, mask, [-3], f"{base}/mask_expanded")
        if mask_tensor.dtype != "bool":
            half = b.constant(f"{base}/half", np.asarray(0.5).astype(mask_tensor.dtype))
            mask = b.op("Greater", [mask, half], f"{base}/mask_bool")
        masked = b.op("Where", [mask, logits, b.constant(f"{base}/masked_logit",
                                                        np.float32(MASKED_LOGIT))],
                      f"{base}/masked_logits")
        probabilities = b.op("Softmax", [masked], f"{base}/softmax", axis=-1)
        attention_scores = b.op("Where", [mask, probabilities, b.constant(f"{base}/zero",
                                                                 np.float32(0))],
                        f"{base}/attention_softmax")
    attended = b.op("MatMul", [attention_scores, value], f"{base}/attended")
    attended = b.op("Transpose", [attended], f"{base}/attended_t", perm=[0, 2, 1, 3])
    attended = b.op("Reshape", [attended, b.ints(f"{base}/joined_shape", [0, 0, hidden])],
                    f"{base}/joined")
    return [project(b, attended, weights["attention_output/kernel"],
                    weights["attention_output/bias"], base)]


@emits("MixtralSparseMoeBlock", "Qwen3SparseMoeBlock")
def sparse_mixture_of_experts(node: Node, b: Builder) -> list:
    """keras_hub's sparse mixture-of-experts feed-forward, in its arithmetic order: router
    probabilities p = softmax(x W_router) over the experts; the top_k largest (TopK, ties
    to the lower expert as ops.top_k breaks them), divided by their sum with
    ``norm_top_k_prob`` (Mixtral always); the routing weights r (B, T, experts) =
    sum over the k picks of one_hot(expert) * p, zero outside the top k. Every expert
    runs densely: y_e = (silu(x G_e) * x U_e) O_e; the output is sum over e of y_e * r_e
    (exact: an expert outside the top k adds 0 * y_e = 0)."""
    config, base = node.config, node.name
    weights = {k: np.asarray(v, np.float32) for k, v in named_weights(node).items()}
    experts, size = config["num_experts"], config["intermediate_dim"]
    if "gate_up" in weights:
        weights["gate"], weights["up"] = np.split(weights.pop("gate_up"), [size], axis=-1)
    x = b.value(node.input("hidden_states"))
    probabilities = b.op("Softmax", [b.op("MatMul", [x, b.constant(f"{base}/router/kernel",
                                                                    weights["router"])],
                                          f"{base}/router_logits")],
                         f"{base}/router_probabilities", axis=-1)
    top, picked = b.op("TopK", [probabilities, b.ints(f"{base}/k", [config["top_k"]])],
                       f"{base}/top", outputs=2, axis=-1, largest=1, sorted=1)
    if config["norm_top_k_prob"]:
        top = b.op("Div", [top, b.reduce("ReduceSum", top, [-1], f"{base}/top_sum")],
                   f"{base}/top_normalized")
    one_hot = b.op("OneHot", [picked, b.constant(f"{base}/experts", np.int64(experts)),
                              b.constant(f"{base}/off_on", np.array([0, 1], np.float32))],
                   f"{base}/one_hot", axis=-1)
    routing = b.reduce("ReduceSum", b.op("Mul", [one_hot, unsqueeze(b, top, [-1],
                                                                     f"{base}/top_column")],
                                         f"{base}/picked_weights"),
                       [-2], f"{base}/routing", keepdims=0)
    routing = unsqueeze(b, b.op("Transpose", [routing], f"{base}/routing_by_expert",
                                perm=[0, 2, 1]), [-1], f"{base}/routing_column")
    x = unsqueeze(b, x, [1], f"{base}/per_expert")  # (B, 1, T, hidden)

    def project(name, h):
        return _times_kernel(b, h, weights, name, base)

    gate = project("gate", x)
    gate = apply_activation(b, gate, "silu", f"{base}/gate", node.layer.dialect)
    expert_outputs = project("output", b.op("Mul", [project("up", x), gate], f"{base}/gated"))
    weighted = b.op("Mul", [expert_outputs, routing], f"{base}/weighted")
    return [b.reduce("ReduceSum", weighted, [1], base, keepdims=0)]
