"""Keras 3 models built with real KerasHub layers (``keras_hub``), the way the keras.io
KerasHub examples build them, plus the options of each layer. ``k`` is Keras 3.

Inputs come from ``hub_inputs``: int inputs named ``*positions`` index the sequence; token
ids (other int inputs, and float inputs named ``*tokens``)
get padding zeros (row 1 at its tail, row 2 entirely), bool inputs named ``*padding_mask``
follow the tokens' padding (or pad the same way without tokens), other bool inputs are
(B, T, S) attention masks, floats are normal.
"""
from __future__ import annotations

import numpy as np

from keras_check import Cases, pad_rows

CASES = Cases()
VOCAB = 30


def hub_inputs(model, batch: int, length: int, rng) -> list:
    tokens = None
    arrays = []
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        shape = [batch] + [length if d is None else d for d in tensor.shape[1:]]
        dtype = tensor.dtype if isinstance(tensor.dtype, str) else tensor.dtype.name
        if name.endswith("positions"):  # positions into the sequence
            array = rng.integers(0, length, size=shape).astype(dtype)
        elif "int" in dtype or name.endswith("tokens"):
            array = rng.integers(1, VOCAB, size=shape).astype(dtype)
            pad_rows(array)
            tokens = array if tokens is None else tokens
        elif name.endswith("padding_mask"):
            if tokens is not None and tokens.shape == tuple(shape):
                array = tokens != 0
            else:
                array = np.ones(shape, bool)
                pad_rows(array)
        elif dtype == "bool":
            array = rng.random(shape) < 0.7
        else:
            array = rng.normal(size=shape).astype(dtype)
        arrays.append(array)
    return arrays


def case(**check):
    return CASES.register("keras3", inputs=hub_inputs, **check)


def hub():
    import keras_hub
    return keras_hub.layers


# ---------------------------------------------------------------------- keras.io examples


@case()
def text_classifier(k):
    """keras.io text classification: TokenAndPositionEmbedding(mask_zero) and a
    TransformerEncoder on the implicit padding mask, pooled, classified."""
    layers = hub()
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = layers.TokenAndPositionEmbedding(VOCAB, 16, 8, mask_zero=True,
                                         name="token_and_position_embedding")(tokens)
    x = layers.TransformerEncoder(intermediate_dim=16, num_heads=2,
                                  name="transformer_encoder")(x)
    x = k.layers.GlobalAveragePooling1D()(x)
    x = k.layers.Dropout(0.1)(x)
    return k.Model(tokens, k.layers.Dense(3, activation="softmax")(x))


@case()
def classifier_padding_mask(k):
    """The same with the padding mask passed explicitly (no mask_zero), max-pooled."""
    layers = hub()
    tokens = k.Input((None,), dtype="int32", name="tokens")
    padding = k.Input((None,), dtype="bool", name="padding_mask")
    x = layers.TokenAndPositionEmbedding(VOCAB, 16, 8)(tokens)
    x = layers.TransformerEncoder(16, 2, dropout=0.1)(x, padding_mask=padding)
    x = layers.TransformerEncoder(16, 2)(x, padding_mask=padding)
    return k.Model([tokens, padding], k.layers.Dense(3)(k.layers.GlobalMaxPooling1D()(x)))


@case()
def translator(k):
    """keras.io English-to-Spanish: a nested encoder model and a nested decoder model
    (float token inputs, mask_zero embeddings, cross-attention on the encoder's output)
    joined into one transformer."""
    layers, L = hub(), k.layers
    encoder_tokens = k.Input((None,), name="encoder_tokens")
    x = layers.TokenAndPositionEmbedding(VOCAB, 16, 8, mask_zero=True)(encoder_tokens)
    encoder_outputs = layers.TransformerEncoder(intermediate_dim=16, num_heads=2)(inputs=x)
    encoder = k.Model(encoder_tokens, encoder_outputs)
    decoder_tokens = k.Input((None,), name="decoder_tokens")
    encoded = k.Input((None, 8), name="decoder_state_inputs")
    x = layers.TokenAndPositionEmbedding(VOCAB, 16, 8, mask_zero=True)(decoder_tokens)
    x = layers.TransformerDecoder(intermediate_dim=16, num_heads=2)(
        decoder_sequence=x, encoder_sequence=encoded)
    x = L.Dropout(0.5)(x)
    decoder = k.Model([decoder_tokens, encoded], L.Dense(VOCAB, activation="softmax")(x))
    return k.Model([encoder_tokens, decoder_tokens],
                   decoder([decoder_tokens, encoder(encoder_tokens)]))


@case()
def miniature_gpt(k):
    """keras.io miniature GPT: TokenAndPositionEmbedding(mask_zero) and two decoder-only
    TransformerDecoders (causal self-attention), next-token logits."""
    layers = hub()
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = layers.TokenAndPositionEmbedding(VOCAB, 16, 8, mask_zero=True)(tokens)
    for _ in range(2):
        x = layers.TransformerDecoder(num_heads=2, intermediate_dim=16)(x)
    return k.Model(tokens, k.layers.Dense(VOCAB)(x))


@case()
def prenorm_gelu_stack(k):
    """A pre-norm (GPT-2 style) stack: normalize_first, exact gelu, another epsilon,
    dropout, a padding mask and an attention mask, and both."""
    layers = hub()
    x0 = k.Input((None, 8), name="features")
    padding = k.Input((None,), dtype="bool", name="padding_mask")
    attention = k.Input((None, None), dtype="bool", name="attention_mask")
    options = dict(intermediate_dim=16, num_heads=2, normalize_first=True, activation="gelu",
                   layer_norm_epsilon=1e-6)
    x = layers.TransformerEncoder(dropout=0.1, **options)(x0, padding_mask=padding)
    x = layers.TransformerEncoder(**options)(x, attention_mask=attention)
    x = layers.TransformerEncoder(**options)(x, padding_mask=padding, attention_mask=attention)
    return k.Model([x0, padding, attention], k.layers.LayerNormalization()(x))


@case(lengths=(4,))
def small_vit(k):
    """A small vision transformer: Conv2D patches, a learned PositionEmbedding added,
    pre-norm encoders, pooled head."""
    layers, L = hub(), k.layers
    image = k.Input((8, 8, 3), name="image")
    patches = L.Reshape((4, 12))(L.Conv2D(12, 4, strides=4)(image))
    x = L.Add()([patches, layers.PositionEmbedding(sequence_length=4)(patches)])
    for _ in range(2):
        x = layers.TransformerEncoder(24, 3, normalize_first=True, activation="gelu")(x)
    x = L.GlobalAveragePooling1D()(L.LayerNormalization(epsilon=1e-6)(x))
    return k.Model(image, L.Dense(5)(x))


@case()
def position_encodings(k):
    """SinePositionEncoding (two wavelengths, a start index), PositionEmbedding on a
    dynamic length, RotaryEmbedding over (B, T, d), (B, T, heads, d) and a (B, d, T)
    layout, with scaling_factor, max_wavelength, start_index, denominator_dim, and the
    dynamic and YaRN rope types."""
    layers = hub()
    x = k.Input((None, 8), name="x")
    heads = k.Input((None, 2, 6), name="heads")
    channels_first = k.Input((6, None), name="channels_first")
    sine = layers.SinePositionEncoding()(x)
    sine_short = layers.SinePositionEncoding(max_wavelength=100)(x, start_index=3)
    learned = layers.PositionEmbedding(sequence_length=12)(x, start_index=2)
    rotary = layers.RotaryEmbedding()(x)
    scaled = layers.RotaryEmbedding(max_wavelength=500, scaling_factor=2.0)(heads,
                                                                           start_index=1)
    moved = layers.RotaryEmbedding(sequence_axis=2, feature_axis=1)(channels_first)
    dynamic = layers.RotaryEmbedding(rope_type="dynamic", scaling_factor=3.0)(heads)
    yarn = layers.RotaryEmbedding(rope_type="yarn", scaling_factor=4.0, max_wavelength=50,
                                  original_max_position_embeddings=16)(x)
    untruncated = layers.RotaryEmbedding(rope_type="yarn", scaling_factor=2.0, truncate=False,
                                         beta_fast=8.0, original_max_position_embeddings=32)(x)
    wide = layers.RotaryEmbedding(denominator_dim=16)(x)
    return k.Model([x, heads, channels_first],
                   [k.layers.Add()([x, sine]), sine_short, learned, rotary, scaled, moved,
                    dynamic, yarn, untruncated, wide])


@case()
def sine_encoder(k):
    """Sine positions added to token embeddings, a rotary-embedded query, an encoder."""
    layers, L = hub(), k.layers
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = L.Add()([x, layers.SinePositionEncoding()(x)])
    x = layers.TransformerEncoder(16, 2)(x)
    return k.Model(tokens, layers.RotaryEmbedding()(x))


# ---------------------------------------------------------------------- layer options


@case()
def decoder_masks(k):
    """TransformerDecoder with cross-attention and every mask passed explicitly (decoder
    and encoder padding masks, a decoder attention mask), post- and pre-norm, and one
    without the causal mask."""
    layers = hub()
    decoder = k.Input((None, 8), name="decoder")
    encoder = k.Input((5, 8), name="encoder")
    decoder_padding = k.Input((None,), dtype="bool", name="decoder_padding_mask")
    encoder_padding = k.Input((5,), dtype="bool", name="encoder_padding_mask")
    attention = k.Input((None, None), dtype="bool", name="decoder_attention")
    x = layers.TransformerDecoder(16, 2)(
        decoder, encoder, decoder_padding_mask=decoder_padding,
        encoder_padding_mask=encoder_padding)
    x = layers.TransformerDecoder(16, 2, normalize_first=True, activation="gelu")(
        x, encoder, decoder_attention_mask=attention)
    y = layers.TransformerDecoder(16, 4, dropout=0.2)(
        decoder, decoder_padding_mask=decoder_padding, use_causal_mask=False)
    return k.Model([decoder, encoder, decoder_padding, encoder_padding, attention], [x, y])


@case()
def reversible_embedding(k):
    """ReversibleEmbedding as the input embedding and, shared, as the output projection
    (reverse=True, logit_soft_cap); an untied one too."""
    layers = hub()
    tokens = k.Input((None,), dtype="int32", name="tokens")
    tied = layers.ReversibleEmbedding(VOCAB, 8, mask_zero=True, logit_soft_cap=5.0)
    untied = layers.ReversibleEmbedding(VOCAB, 8, tie_weights=False)
    x = layers.TransformerEncoder(16, 2)(tied(tokens))
    return k.Model(tokens, [tied(x, reverse=True), untied(untied(tokens), reverse=True)])


@case()
def cached_attention(k):
    """CachedMultiHeadAttention called without a cache, as self- and cross-attention, with
    an attention mask, over masked embeddings (it takes no Keras masks)."""
    from keras_hub.src.layers.modeling.cached_multi_head_attention import (
        CachedMultiHeadAttention)
    tokens = k.Input((None,), dtype="int32", name="tokens")
    memory = k.Input((6, 8), name="memory")
    attention = k.Input((None, 6), dtype="bool", name="attention_mask")
    x = k.layers.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    self_attention = CachedMultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    cross = CachedMultiHeadAttention(num_heads=2, key_dim=3, value_dim=5)(
        x, memory, attention_mask=attention)
    return k.Model([tokens, memory, attention], [self_attention, cross])


@case()
def rms_and_alibi(k):
    """KerasHub's RMSNormalization (fixed epsilon) and AlibiBias on attention scores, with
    a power-of-two and another number of heads."""
    from keras_hub.src.layers.modeling.rms_normalization import RMSNormalization
    layers = hub()
    x = k.Input((None, 8), name="x")
    normalized = RMSNormalization(8)(x)
    _, scores4 = k.layers.MultiHeadAttention(4, 2)(x, x, return_attention_scores=True)
    _, scores3 = k.layers.MultiHeadAttention(3, 2)(x, x, return_attention_scores=True)
    return k.Model(x, [normalized, layers.AlibiBias()(scores4),
                       layers.AlibiBias(alibi_bias_max=4)(scores3)])


@case()
def masked_lm_heads(k):
    """MaskedLMHead at given positions: projecting onto the (shared, tied) token embedding
    of a TokenAndPositionEmbedding with a softmax, onto an untied ReversibleEmbedding,
    and with its own output kernel and a gelu intermediate."""
    layers = hub()
    tokens = k.Input((None,), dtype="int32", name="tokens")
    positions = k.Input((3,), dtype="int32", name="mask_positions")
    embedding = layers.TokenAndPositionEmbedding(VOCAB, 16, 8)
    untied = layers.ReversibleEmbedding(VOCAB, 8, tie_weights=False)
    x = layers.TransformerEncoder(16, 2)(k.layers.Add()([embedding(tokens), untied(tokens)]))
    return k.Model([tokens, positions], [
        layers.MaskedLMHead(token_embedding=embedding.token_embedding,
                            activation="softmax")(x, mask_positions=positions),
        layers.MaskedLMHead(token_embedding=untied)(x, positions),
        layers.MaskedLMHead(vocabulary_size=VOCAB, intermediate_activation="gelu",
                            layer_norm_epsilon=1e-6)(x, positions)])


@case()
def fnet(k):
    """FNetEncoder (the real part of a 2-D Fourier transform mixes the tokens) twice,
    over embedded tokens."""
    layers = hub()
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = layers.TokenAndPositionEmbedding(VOCAB, 16, 8)(tokens)
    x = layers.FNetEncoder(intermediate_dim=16)(x)
    x = layers.FNetEncoder(intermediate_dim=12, activation="gelu", layer_norm_epsilon=1e-6,
                           dropout=0.1)(x)
    return k.Model(tokens, x)


@case()
def shared_encoder(k):
    """One TransformerEncoder applied twice (ALBERT-style weight sharing), the second call
    on a padding mask: two expansions reading one set of weights."""
    layers = hub()
    tokens = k.Input((None,), dtype="int32", name="tokens")
    padding = k.Input((None,), dtype="bool", name="padding_mask")
    encoder = layers.TransformerEncoder(16, 2, normalize_first=True)
    x = layers.TokenAndPositionEmbedding(VOCAB, 16, 8, mask_zero=True)(tokens)
    return k.Model([tokens, padding], encoder(encoder(x), padding_mask=padding))
