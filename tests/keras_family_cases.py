"""Models built with the real keras-multi-head family (keras-self-attention, keras-pos-embd,
keras-layer-normalization, keras-position-wise-feed-forward, keras-embed-sim, keras-bert,
keras-transformer), as their READMEs build them, shrunk. These packages do
``from tensorflow import keras``, which is tf_keras only when TF_USE_LEGACY_KERAS=1 is set
before TensorFlow is first imported: ``build_all`` runs in a process of its own (see
tests/test_keras_family_emitters.py). Each case is ``build(k, p)``: ``k`` is tf_keras, ``p``
the packages by import name; ``TOKENS[name]`` maps its token inputs to their vocabulary."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

from tf_keras_subprocess import record

PACKAGES = ("keras_self_attention", "keras_pos_embd", "keras_layer_normalization",
            "keras_position_wise_feed_forward", "keras_embed_sim", "keras_bert",
            "keras_transformer")
CASES, TOKENS = {}, {}


def case(**tokens):
    def register(build):
        CASES[build.__name__] = build
        TOKENS[build.__name__] = tokens
        return build
    return register


BERT = dict(token_num=30, pos_num=16, embed_dim=8, head_num=2, feed_forward_dim=12)
BERT_TOKENS = {"Input-Token": 30, "Input-Segment": 2, "Input-Masked": 2, "Input-Task": 3}


@case(**BERT_TOKENS)
def bert_features(k, p):
    """keras-bert's feature extractor (training=False), the last two encoders' outputs
    concatenated (output_layer_num=2), any length."""
    inputs, output = p.keras_bert.get_model(**BERT, seq_len=None, transformer_num=2,
                                            training=False, output_layer_num=2)
    return k.Model(inputs, output)


@case(**BERT_TOKENS)
def bert_pretraining(k, p):
    """keras-bert's pre-training model: masked-LM (MLM-Sim over the token table, Masked)
    and next-sentence (Extract, NSP) heads; fixed length, as get_model builds it."""
    return p.keras_bert.get_model(**BERT, seq_len=7, transformer_num=1, training=True)


@case(**BERT_TOKENS)
def bert_task_embedding(k, p):
    """use_task_embed: TaskEmbedding adds a per-task vector; the tanh-gelu'd attention."""
    inputs, output = p.keras_bert.get_model(**BERT, seq_len=None, transformer_num=1,
                                            training=False, use_task_embed=True, task_num=3,
                                            attention_activation="gelu")
    return k.Model(inputs, output)


@case(**BERT_TOKENS)
def bert_from_config(k, p):
    """keras-bert's build_model_from_config (what load_trained_model_from_checkpoint
    builds before loading Google's weights): hidden_act "gelu" from the JSON config, a
    fixed length; a classifier over MaskedGlobalMaxPool1D of the features."""
    import json
    import tempfile
    config = {"vocab_size": 30, "max_position_embeddings": 16, "hidden_size": 8,
              "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 12,
              "hidden_act": "gelu"}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(config, f)
        f.flush()
        model, _ = p.keras_bert.build_model_from_config(f.name, seq_len=6)
    pooled = p.keras_bert.layers.MaskedGlobalMaxPool1D(name="pool")(model.output)
    return k.Model(model.inputs, k.layers.Dense(2, activation="softmax")(pooled))


@case(tokens=20)
def bert_masked_pooling(k, p):
    """keras-bert's masked layers on an Embedding(mask_zero) sequence: MaskedConv1D (valid,
    which cuts the mask, dilated, and same padding), MaskedGlobalMaxPool1D after each."""
    kb = p.keras_bert.layers
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.layers.Embedding(20, 6, mask_zero=True)(tokens)
    valid = kb.MaskedConv1D(filters=4, kernel_size=3, name="valid")(x)
    dilated = kb.MaskedConv1D(filters=3, kernel_size=3, dilation_rate=2, padding="same",
                              activation="relu", name="same")(x)
    return k.Model(tokens, [valid, kb.MaskedGlobalMaxPool1D(name="pool_valid")(valid),
                            kb.MaskedGlobalMaxPool1D(name="pool_same")(dilated)])


@case(**{"Encoder-Input": 20, "Decoder-Input": 20})
def transformer_shared(k, p):
    """keras-transformer's encoder-decoder (its README, shrunk): one EmbeddingRet shared by
    both sides, history_only decoder self-attention, query attention over the encoder,
    EmbeddingSim output; gelu feed-forward."""
    return p.keras_transformer.get_model(token_num=20, embed_dim=8, encoder_num=2,
                                         decoder_num=2, head_num=2, hidden_dim=12,
                                         dropout_rate=0.05)


@case(**{"Encoder-Input": 20, "Decoder-Input": 15})
def transformer_separate(k, p):
    """Separate encoder and decoder embeddings and vocabularies, relu feed-forward, tanh
    attention projections."""
    return p.keras_transformer.get_model(token_num=[20, 15], embed_dim=8, encoder_num=1,
                                         decoder_num=1, head_num=4, hidden_dim=6,
                                         use_same_embed=False, attention_activation="tanh",
                                         feed_forward_activation="relu")


@case()
def transformer_blocks(k, p):
    """get_encoders / get_decoders on float sequences, as keras-transformer's README uses
    them to build one's own model."""
    source, target = k.Input((None, 8), name="source"), k.Input((None, 8), name="target")
    encoded = p.keras_transformer.get_encoders(encoder_num=1, input_layer=source, head_num=2,
                                               hidden_dim=10)
    decoded = p.keras_transformer.get_decoders(decoder_num=1, input_layer=target,
                                               encoded_layer=encoded, head_num=2, hidden_dim=10)
    return k.Model([source, target], decoded)


@case(tokens=20)
def self_attention_classifier(k, p):
    """keras-self-attention's README classifier: Embedding(mask_zero) -> BiLSTM ->
    SeqSelfAttention(attention_activation='sigmoid') -> SeqWeightedAttention -> Dense."""
    ksa = p.keras_self_attention
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.layers.Embedding(20, 6, mask_zero=True)(tokens)
    x = k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True))(x)
    x = ksa.SeqSelfAttention(units=5, attention_activation="sigmoid", name="attention")(x)
    x = ksa.SeqWeightedAttention(name="weighted")(x)
    return k.Model(tokens, k.layers.Dense(3, activation="softmax")(x))


@case()
def self_attention_options(k, p):
    """SeqSelfAttention's options on one sequence: additive and multiplicative, local
    (attention_width, centred and history_only), history_only alone, no biases, returned
    attention; a fixed length (a constant window) too."""
    S = p.keras_self_attention.SeqSelfAttention
    x, fixed = k.Input((None, 6), name="x"), k.Input((5, 4), name="fixed")
    local, local_weights = S(units=4, attention_width=3, return_attention=True,
                             name="local")(x)
    return k.Model([x, fixed], [
        S(units=4, name="additive")(x),
        S(attention_type="multiplicative", attention_activation="tanh",
          name="multiplicative")(x),
        local, local_weights,
        S(units=3, history_only=True, use_additive_bias=False, name="history")(x),
        S(units=3, history_only=True, attention_width=2, use_attention_bias=False,
          name="history_width")(x),
        S(attention_type="multiplicative", use_attention_bias=False, attention_width=4,
          name="multiplicative_width")(fixed),
        S(units=2, history_only=True, name="fixed_history")(fixed),
    ])


@case(tokens=20, query_tokens=20)
def masked_attention(k, p):
    """Masks from Embedding(mask_zero): SeqSelfAttention (both kinds, local),
    SeqWeightedAttention (with and without bias, returned weights),
    ScaledDotProductAttention (self, [q, k, v], history_only, returned weights)."""
    ksa = p.keras_self_attention
    tokens = k.Input((None,), dtype="int32", name="tokens")
    query_tokens = k.Input((None,), dtype="int32", name="query_tokens")
    embed = k.layers.Embedding(20, 6, mask_zero=True, name="embed")
    x, q = embed(tokens), embed(query_tokens)
    weighted, weights = ksa.SeqWeightedAttention(use_bias=False, return_attention=True,
                                                 name="weighted_plain")(x)
    scaled, scores = ksa.ScaledDotProductAttention(return_attention=True,
                                                   name="scaled_qkv")([q, x, x])
    return k.Model([tokens, query_tokens], [
        ksa.SeqSelfAttention(units=4, name="additive")(x),
        ksa.SeqSelfAttention(attention_type="multiplicative", attention_width=3,
                             name="multiplicative")(x),
        ksa.SeqWeightedAttention(name="weighted")(x), weighted, weights,
        ksa.ScaledDotProductAttention(name="scaled")(x),
        ksa.ScaledDotProductAttention(history_only=True, name="scaled_history")(x),
        scaled, scores,
    ])


@case()
def scaled_dot_product(k, p):
    """ScaledDotProductAttention without masks: self, history_only (square and not), and
    [q, k, v] with their own feature sizes."""
    A = p.keras_self_attention.ScaledDotProductAttention
    x, q = k.Input((None, 6), name="x"), k.Input((None, 6), name="q")
    key, value = k.Input((None, 6), name="k"), k.Input((None, 3), name="v")
    fixed_q, fixed_kv = k.Input((3, 4), name="fixed_q"), k.Input((5, 4), name="fixed_kv")
    return k.Model([x, q, key, value, fixed_q, fixed_kv], [
        A(name="self")(x), A(history_only=True, name="history")(x),
        A(name="qkv")([q, key, value]),
        A(history_only=True, name="history_rect")([fixed_q, fixed_kv, fixed_kv]),
    ])


@case(positions=6, tokens=20)
def position_embeddings(k, p):
    """keras-pos-embd's README layers: PositionEmbedding in expand mode on (relative,
    clipped) positions, with mask_zero=True (positions != 1 unmasked) feeding attention,
    in add and concat mode after an Embedding; TrigPosEmbedding in its three modes."""
    pe = p.keras_pos_embd
    positions = k.Input((None,), dtype="int32", name="positions")
    tokens = k.Input((None,), dtype="int32", name="tokens")
    fixed = k.Input((5, 4), name="fixed")
    expanded = pe.PositionEmbedding(input_dim=3, output_dim=4, mode="expand",
                                    mask_zero=True, name="expand")(positions)
    embedded = k.layers.Embedding(20, 4, name="embed")(tokens)
    return k.Model([positions, tokens, fixed], [
        p.keras_self_attention.SeqWeightedAttention(name="after_expand")(expanded),
        pe.PositionEmbedding(input_dim=10, output_dim=4, mode="add", name="add")(embedded),
        pe.PositionEmbedding(input_dim=10, output_dim=3, mode="concat",
                             name="concat")(embedded),
        pe.PositionEmbedding(input_dim=8, output_dim=4, mode="add", name="fixed_add")(fixed),
        pe.PositionEmbedding(input_dim=8, output_dim=2, mode="concat",
                             name="fixed_concat")(fixed),
        pe.TrigPosEmbedding(mode="add", name="trig_add")(embedded),
        pe.TrigPosEmbedding(mode="concat", output_dim=6, name="trig_concat")(embedded),
        pe.TrigPosEmbedding(mode="expand", output_dim=6, name="trig_expand")(positions),
        pe.TrigPosEmbedding(mode="add", name="trig_fixed")(fixed),
    ])


@case(tokens=20)
def transformer_parts(k, p):
    """LayerNormalization (no centre, no scale, another epsilon), FeedForward (no bias,
    dropout, keras_transformer's gelu, saved as "gelu"), EmbeddingRet + EmbeddingSim
    (keras-embed-sim's README, with and without bias)."""
    LN = p.keras_layer_normalization.LayerNormalization
    FF = p.keras_position_wise_feed_forward.FeedForward
    ES = p.keras_embed_sim
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.Input((None, 6), name="x")
    embedded, table = ES.EmbeddingRet(input_dim=20, output_dim=6, mask_zero=True,
                                      name="embed")(tokens)
    return k.Model([tokens, x], [
        LN(name="norm")(x), LN(center=False, name="no_center")(x),
        LN(scale=False, epsilon=1e-3, name="no_scale")(x),
        FF(units=5, name="ff")(x),
        FF(units=4, use_bias=False, dropout_rate=0.2, activation=p.keras_transformer.gelu,
           name="ff_gelu")(x),
        ES.EmbeddingSim(name="similarity")([embedded, table]),
        ES.EmbeddingSim(use_bias=False, name="similarity_plain")([FF(units=3)(embedded),
                                                                   table]),
    ])


def packages() -> SimpleNamespace:
    return SimpleNamespace(**{name: importlib.import_module(name) for name in PACKAGES})


def build_all(folder: Path, batches, lengths) -> None:
    """Every case built with the real packages (in the tf_keras process)."""
    import tf_keras as k

    p = packages()
    assert issubclass(p.keras_self_attention.SeqSelfAttention, k.layers.Layer), (
        "TF_USE_LEGACY_KERAS unset?")
    record(folder, {name: (lambda k, build=build: build(k, p)) for name, build in CASES.items()},
           TOKENS.get, batches, lengths)
