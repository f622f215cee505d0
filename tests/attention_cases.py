"""Keras models across the options of the attention layers, built by a test with real
Keras 3 (``keras``) or Keras 2 (``tf_keras``): ``k`` is the Keras module in use.

Each case builds one model; ``tokens`` names its integer token inputs and their vocabulary
(ids get padding zeros at the tail), ``padded`` its float inputs whose tail steps are zeroed
for a Masking layer. Every other int or bool input is an attention mask.
"""
from __future__ import annotations

from keras_check import Cases

CASES = Cases()
case = CASES.register


def inputs(k, *shapes, dtype="float32"):
    return [k.Input(shape, name=f"in_{i}", dtype=dtype) for i, shape in enumerate(shapes)]


def model(k, ins, outs):
    return k.Model(ins, outs)


# ---------------------------------------------------------------------- MultiHeadAttention

@case()
def mha_self(k):
    (x,) = inputs(k, (None, 8))
    return model(k, [x], k.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x))


@case()
def mha_cross_key_value_dims(k):
    q, v, key = inputs(k, (None, 8), (6, 6), (6, 5))
    layer = k.layers.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=2)
    return model(k, [q, v, key], layer(q, v, key=key))


@case()
def mha_no_bias_output_int(k):
    q, v = inputs(k, (None, 8), (None, 8))
    layer = k.layers.MultiHeadAttention(num_heads=2, key_dim=3, use_bias=False, output_shape=12)
    return model(k, [q, v], layer(q, v))


@case()
def mha_output_tuple(k):
    q, v = inputs(k, (None, 8), (4, 8))
    layer = k.layers.MultiHeadAttention(num_heads=2, key_dim=3, output_shape=(2, 3))
    return model(k, [q, v], layer(q, v))


@case()
def mha_4d_axes(k):
    (x,) = inputs(k, (3, 4, 8))
    outs = [k.layers.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=axes)(
        x, x, return_attention_scores=True) for axes in (None, (1,), (2,), (1, 2))]
    return model(k, [x], [t for pair in outs for t in pair])


@case()
def mha_dropout_inactive(k):
    (x,) = inputs(k, (None, 8))
    return model(k, [x], k.layers.MultiHeadAttention(2, 4, dropout=0.3)(x, x))


def _with_attention_mask(k, dtype, **call):
    q, v = inputs(k, (None, 8), (None, 8))
    (mask,) = [k.Input((None, None), name="attention_mask", dtype=dtype)]
    layer = k.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    return model(k, [q, v, mask], layer(q, v, attention_mask=mask, **call))


@case()
def mha_attention_mask_bool(k):
    return _with_attention_mask(k, "bool")


@case()
def mha_attention_mask_int(k):
    return _with_attention_mask(k, "int32")


@case()
def mha_attention_mask_float_scores(k):
    return _with_attention_mask(k, "float32", return_attention_scores=True)


@case()
def mha_causal(k):
    (x,) = inputs(k, (None, 8))
    return model(k, [x], k.layers.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True))


@case()
def mha_causal_with_mask_and_scores(k):
    return _with_attention_mask(k, "bool", use_causal_mask=True, return_attention_scores=True)


@case()
def mha_causal_scores(k):
    (x,) = inputs(k, (None, 8))
    layer = k.layers.MultiHeadAttention(2, 4)
    return model(k, [x], layer(x, x, use_causal_mask=True, return_attention_scores=True))


def _embedded(k, vocab=20, dim=8):
    tokens = k.Input((None,), name="tokens", dtype="int32")
    return tokens, k.layers.Embedding(vocab, dim, mask_zero=True)(tokens)


@case(tokens={"tokens": 20})
def mha_embedding_masks(k):
    tokens, x = _embedded(k)
    return model(k, [tokens], k.layers.MultiHeadAttention(2, 4)(x, x))


@case(tokens={"tokens": 20})
def mha_embedding_masks_scores(k):
    tokens, x = _embedded(k)
    return model(k, [tokens], list(k.layers.MultiHeadAttention(2, 4)(
        x, x, return_attention_scores=True)))


@case(tokens={"tokens": 20})
def mha_embedding_masks_dropout_causal(k):
    tokens, x = _embedded(k)
    layer = k.layers.MultiHeadAttention(2, 4, dropout=0.2)
    return model(k, [tokens], layer(x, x, use_causal_mask=True))


@case(padded=("in_1",))
def mha_value_mask_from_masking(k):
    q, v = inputs(k, (None, 8), (6, 8))
    masked = k.layers.Masking()(v)
    return model(k, [q, v], k.layers.MultiHeadAttention(2, 4)(q, masked))


@case(padded=("in_2",))
def mha_key_mask_from_masking(k):
    q, v, key = inputs(k, (None, 8), (None, 8), (None, 6))
    masked_key = k.layers.Masking()(key)
    return model(k, [q, v, key], k.layers.MultiHeadAttention(2, 4)(q, v, key=masked_key))


@case(tokens={"tokens": 20})
def mha_calls_on_one_masked_tensor(k):
    """Three MultiHeadAttention on one masked Embedding, each with a residual Add. Keras 3
    deletes the mask in the call it runs first, in its own order, not the config's (calls
    of one depth run from the last output back): the third layer gets the mask, the others
    and the Adds run unmasked. Keras 2 hands the mask to all three."""
    tokens, x = _embedded(k)
    first, second, third = (k.layers.MultiHeadAttention(2, 4) for _ in range(3))
    return model(k, [tokens], [k.layers.Add()([x, first(x, x)]),
                               k.layers.Add()([x, second(x, x)]),
                               k.layers.Add()([x, third(query=x, value=x)])])


@case(tokens={"tokens": 20})
def masks_through_layers_without_masking(k):
    """Layers that do not support masking between a masked Embedding and the attention:
    EinsumDense and the augmentation layers drop the mask (tf_keras' augmentation layers
    keep it: they return their very input), Rescaling and Normalization drop it in Keras 2
    only."""
    tokens = k.Input((None,), name="tokens", dtype="int32")
    outputs = []
    for layer in (k.layers.EinsumDense("btd,de->bte", (None, 8)), k.layers.Rescaling(2.0),
                  k.layers.Normalization(mean=0.5, variance=2.0), k.layers.RandomFlip(),
                  k.layers.RandomContrast(0.1)):
        x = layer(k.layers.Embedding(20, 8, mask_zero=True)(tokens))
        outputs.append(k.layers.MultiHeadAttention(2, 4)(x, x))
    return model(k, [tokens], outputs)


@case()
def single_head_mha_next_to_attention(k):
    a, b = inputs(k, (5, 2), (3, 2))
    mha = k.layers.MultiHeadAttention(num_heads=1, key_dim=2)(a, b, return_attention_scores=True)
    att = k.layers.Attention()([a, b], return_attention_scores=True)
    return model(k, [a, b], list(mha) + list(att))


@case()
def three_attention_layers(k):
    a, b = inputs(k, (8, 16), (4, 16))
    return model(k, [a, b], [k.layers.Attention()([a, b]), k.layers.AdditiveAttention()([a, b]),
                             k.layers.MultiHeadAttention(num_heads=2, key_dim=2)(a, b)])


@case("keras3")
def mha_gate_value_dim_scores(k):
    q, v = inputs(k, (None, 8), (5, 8))
    layer = k.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=5, use_gate=True)
    return model(k, [q, v], [*layer(q, v, return_attention_scores=True), layer(q, v)])


@case("keras3", tokens={"tokens": 20})
def mha_sliding_window_masks_causal(k):
    """One Embedding per call: Keras 3's MultiHeadAttention deletes its inputs' masks."""
    tokens = k.Input((None,), name="tokens", dtype="int32")
    x1, x2, x3 = (k.layers.Embedding(20, 8, mask_zero=True)(tokens) for _ in range(3))
    layer = k.layers.MultiHeadAttention(2, 4, sliding_window=2, use_gate=True)
    return model(k, [tokens], [*layer(x1, x1, return_attention_scores=True), layer(x2, x2),
                               layer(x3, x3, use_causal_mask=True)])


@case("keras3")
def mha_sliding_window_cross_fully_masked_rows(k):
    """Queries past the last key + window attend nothing: fused path averages, the
    scores path gives zeros."""
    q, v = inputs(k, (None, 8), (3, 8))
    layer = k.layers.MultiHeadAttention(2, 4, sliding_window=2)
    return model(k, [q, v], [*layer(q, v, return_attention_scores=True), layer(q, v)])


@case(tokens={"tokens": 20})
def mha_4d_embedding_masks_one_axis(k):
    """Masks (B, 4, 4) over a (B, 4, 4, 8) input, attention over axis 2 (and, with
    scores, axis 1); Keras 2 and 3 expand the masks differently."""
    tokens = k.Input((4, 4), name="tokens", dtype="int32")
    outs = []
    for axes, scores in (((2,), False), ((2,), True), ((1,), True)):
        x = k.layers.Embedding(20, 8, mask_zero=True)(tokens)  # one per call, see above
        outs.append(k.layers.MultiHeadAttention(2, 3, attention_axes=axes)(
            x, x, return_attention_scores=scores))
    return model(k, [tokens], [t for out in outs for t in (out if isinstance(out, tuple)
                                                          else [out])])


@case()
def mha_4d_attention_mask_two_axes(k):
    (x,) = inputs(k, (3, 4, 8))
    mask = k.Input((3, 4, 3, 4), name="attention_mask", dtype="bool")
    layer = k.layers.MultiHeadAttention(2, 3, attention_axes=(1, 2))
    return model(k, [x, mask], [*layer(x, x, attention_mask=mask, return_attention_scores=True),
                                layer(x, x, attention_mask=mask)])


@case()
def mha_4d_causal_one_axis(k):
    """The causal mask is (1, T, S) over input axis 1, broadcast against axis 2."""
    (x,) = inputs(k, (4, 4, 8))
    layer = k.layers.MultiHeadAttention(2, 3, attention_axes=(2,))
    return model(k, [x], layer(x, x, use_causal_mask=True))


# ---------------------------------------------------------------------- GroupQueryAttention


def _gqa(k, **options):
    return k.layers.GroupQueryAttention(**{"head_dim": 4, "num_query_heads": 4,
                                           "num_key_value_heads": 2, **options})


@case("keras3")
def gqa_self(k):
    (x,) = inputs(k, (None, 8))
    return model(k, [x], _gqa(k)(x, x))


@case("keras3")
def gqa_multi_query_no_bias_key_dim_scores(k):
    q, v, key = inputs(k, (None, 8), (5, 8), (5, 6))
    layer = _gqa(k, head_dim=3, num_query_heads=3, num_key_value_heads=1, use_bias=False)
    return model(k, [q, v, key], [*layer(q, v, key=key, return_attention_scores=True),
                                  layer(q, v, key=key)])


@case("keras3")
def gqa_equal_heads_dropout_gate(k):
    (x,) = inputs(k, (None, 8))
    return model(k, [x], _gqa(k, num_key_value_heads=4, dropout=0.3, use_gate=True)(x, x))


@case("keras3", tokens={"tokens": 20})
def gqa_embedding_masks(k):
    tokens, x = _embedded(k)
    layer = _gqa(k)
    return model(k, [tokens], [*layer(x, x, return_attention_scores=True), layer(x, x)])


@case("keras3", tokens={"tokens": 20})
def gqa_masks_dropout_causal(k):
    tokens, x = _embedded(k)
    return model(k, [tokens], _gqa(k, dropout=0.2)(x, x, use_causal_mask=True))


@case("keras3")
def gqa_causal_self_and_cross(k):
    q, v = inputs(k, (None, 8), (5, 8))
    layer = _gqa(k)
    return model(k, [q, v], [*layer(q, v, use_causal_mask=True, return_attention_scores=True),
                             layer(q, q, use_causal_mask=True),
                             layer(q, v, use_causal_mask=True)])


@case("keras3")
def gqa_attention_mask_int_causal(k):
    q, v = inputs(k, (None, 8), (None, 8))
    mask = k.Input((None, None), name="attention_mask", dtype="int32")
    layer = _gqa(k)
    return model(k, [q, v, mask], [
        *layer(q, v, attention_mask=mask, return_attention_scores=True),
        layer(q, v, attention_mask=mask),
        layer(q, v, attention_mask=mask, use_causal_mask=True)])


def fractional_masks(model, batch, length, rng):
    """Normal floats; float attention masks of 0, 0.3, 0.7 and 1 (Keras casts some to
    bool, compares others with 0.5)."""
    return [rng.choice([0.0, 0.3, 0.7, 1.0], size=(batch, length, length)).astype("float32")
            if t.name.startswith("attention_mask")
            else rng.normal(size=(batch, length, 8)).astype("float32") for t in model.inputs]


@case("keras3", inputs=fractional_masks)
def gqa_float_attention_mask(k):
    q, v = inputs(k, (None, 8), (None, 8))
    mask = k.Input((None, None), name="attention_mask")
    layer = _gqa(k)
    return model(k, [q, v, mask], [
        *layer(q, v, attention_mask=mask, return_attention_scores=True),
        layer(q, v, attention_mask=mask),
        layer(q, v, attention_mask=mask, use_causal_mask=True)])


@case("keras3", tokens={"tokens": 20})
def gqa_output_keeps_query_mask(k):
    tokens, x = _embedded(k)
    return model(k, [tokens], k.layers.GlobalAveragePooling1D()(_gqa(k)(x, x)))


@case("keras3")
def mha_4d_gate_sliding_window(k):
    (x,) = inputs(k, (4, 4, 8))
    layer = k.layers.MultiHeadAttention(2, 3, attention_axes=(2,), use_gate=True,
                                        sliding_window=2)
    return model(k, [x], [*layer(x, x, return_attention_scores=True), layer(x, x)])


@case("keras3", tokens={"tokens": 20})
def gqa_sliding_window_gate_masks(k):
    tokens, x = _embedded(k)
    layer = _gqa(k, sliding_window=3, use_gate=True)
    return model(k, [tokens], [*layer(x, x, return_attention_scores=True), layer(x, x),
                               layer(x, x, use_causal_mask=True)])


@case("keras3")
def gqa_sliding_window_cross_fully_masked_rows(k):
    q, v = inputs(k, (None, 8), (3, 8))
    layer = _gqa(k, sliding_window=2)
    return model(k, [q, v], [*layer(q, v, return_attention_scores=True), layer(q, v)])


@case("keras3", padded=("in_1", "in_2"))
def gqa_value_and_key_masks_from_masking(k):
    q, v, key = inputs(k, (None, 8), (None, 8), (None, 6))
    layer = _gqa(k, num_key_value_heads=1)
    return model(k, [q, v, key], layer(q, k.layers.Masking()(v),
                                       key=k.layers.Masking()(key)))


# ---------------------------------------------------------------------- Attention


@case()
def attention_dot(k):
    q, v = inputs(k, (None, 6), (5, 6))
    return model(k, [q, v], k.layers.Attention()([q, v]))


@case()
def attention_scaled_with_key_scores(k):
    q, v, key = inputs(k, (None, 6), (5, 4), (5, 6))
    return model(k, [q, v, key], list(k.layers.Attention(use_scale=True)(
        [q, v, key], return_attention_scores=True)))


@case()
def attention_concat(k):
    q, v = inputs(k, (None, 6), (None, 6))
    return model(k, [q, v], k.layers.Attention(score_mode="concat")([q, v]))


@case()
def attention_concat_scaled_with_key(k):
    q, v, key = inputs(k, (None, 6), (5, 3), (5, 6))
    layer = k.layers.Attention(score_mode="concat", use_scale=True)
    return model(k, [q, v, key], layer([q, v, key]))


@case()
def attention_causal_scores(k):
    (x,) = inputs(k, (None, 6))
    return model(k, [x], list(k.layers.Attention()(
        [x, x], use_causal_mask=True, return_attention_scores=True)))


@case(tokens={"tokens": 20})
def attention_embedding_masks(k):
    tokens, x = _embedded(k, dim=6)
    return model(k, [tokens], list(k.layers.Attention(use_scale=True)(
        [x, x], return_attention_scores=True)))


@case(tokens={"tokens": 20})
def attention_concat_masks_causal(k):
    tokens, x = _embedded(k, dim=6)
    layer = k.layers.Attention(score_mode="concat")
    return model(k, [tokens], layer([x, x], use_causal_mask=True))


@case(padded=("in_1",))
def attention_value_mask_from_masking(k):
    q, v = inputs(k, (None, 6), (5, 6))
    return model(k, [q, v], k.layers.Attention()([q, k.layers.Masking()(v)]))


# ---------------------------------------------------------------------- AdditiveAttention


@case()
def additive_scaled(k):
    q, v = inputs(k, (None, 6), (5, 6))
    return model(k, [q, v], k.layers.AdditiveAttention()([q, v]))


@case()
def additive_unscaled_with_key_scores(k):
    q, v, key = inputs(k, (None, 6), (5, 4), (5, 6))
    return model(k, [q, v, key], list(k.layers.AdditiveAttention(use_scale=False)(
        [q, v, key], return_attention_scores=True)))


@case(tokens={"tokens": 20})
def additive_masks_causal_scores(k):
    tokens, x = _embedded(k, dim=6)
    return model(k, [tokens], list(k.layers.AdditiveAttention()(
        [x, x], use_causal_mask=True, return_attention_scores=True)))


@case(padded=("in_0",))
def additive_query_mask_from_masking(k):
    q, v = inputs(k, (None, 6), (5, 6))
    return model(k, [q, v], k.layers.AdditiveAttention()([k.layers.Masking()(q), v]))
