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
