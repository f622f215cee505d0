"""keras_hub's BERT-style text encoders: BERT, ELECTRA, ALBERT, DistilBERT, RoBERTa."""
from __future__ import annotations

from typing import Callable, Optional

from ..errors import ModelConfigError
from .builder import (block_config, dims, encoders, Functional, GELU_APPROXIMATE,
                      keras_hub_model, layer_norm, is_positive_int, TEXT_KEYS,
                      token_and_position, token_embedding_layer)


def _segmented_encoder(config: dict, f: Functional, vocabulary_key: str = "vocabulary_size",
                       narrower: bool = False, projection: Optional[str] = None,
                       schedule: Optional[Callable] = None) -> None:
    """BERT, ELECTRA and ALBERT: token (ReversibleEmbedding) + position + segment
    embeddings (``embedding_dim`` wide when ``narrower``), Add, LayerNormalization(1e-12),
    Dropout, a Dense ``projection`` to hidden_dim (ELECTRA: when the embedding is narrower;
    ALBERT: always), post-norm TransformerEncoders (tanh gelu, epsilon 1e-12) on
    ``padding_mask`` called in the order ``schedule(layers)`` names them (default
    ``transformer_layer_<i>``); ``pooled_output`` is Dense(hidden, tanh) of the first
    token."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = dims(
        config, f, vocabulary_key)
    dim = (f.require(config, "embedding_dim", is_positive_int, "a positive int") if narrower
           else hidden)
    names = (schedule or (lambda n: [f"transformer_layer_{i}" for i in range(n)]))(layers)
    segments = f.require(config, "num_segments", is_positive_int, "a positive int")
    token_ids = f.input("token_ids")
    segment_ids = f.input("segment_ids")
    padding_mask = f.input("padding_mask")
    tokens = token_embedding_layer(f, vocabulary, dim, token_ids)
    positions = f.hub_layer("PositionEmbedding", "position_embedding", "position_embedding",
                            {"sequence_length": length}, tokens)
    segment = f.layer("Embedding", "segment_embedding",
                      {"input_dim": segments, "output_dim": dim, "mask_zero": False},
                      segment_ids)
    x = f.layer("Add", "embeddings_add", {}, [tokens, positions, segment])
    x = layer_norm(f, "embeddings_layer_norm", 1e-12, x)
    x = f.layer("Dropout", "embeddings_dropout", {"rate": dropout}, x)
    if projection is not None:
        x = f.layer("Dense", projection, {"units": hidden, "activation": None,
                                          "use_bias": True}, x)
    x = encoders(f, x, padding_mask, names,
                  block_config(heads, intermediate, dropout, 1e-12, GELU_APPROXIMATE, False))
    first = f.op("GetItem", "get_item", x, [slice(None), 0, slice(None)])
    pooled = f.layer("Dense", "pooled_dense", {"units": hidden, "activation": "tanh",
                                               "use_bias": True}, first)
    f.outputs.update(sequence_output=x, pooled_output=pooled)


def _embedded_encoder(config: dict, f: Functional, embeddings: str, epsilon: float) -> None:
    """DistilBERT and RoBERTa: TokenAndPositionEmbedding ``embeddings``,
    LayerNormalization(epsilon), Dropout, post-norm TransformerEncoders (exact gelu,
    ``epsilon``) on ``padding_mask``: ``sequence_output``."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = dims(config, f)
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = token_and_position(f, embeddings, vocabulary, hidden, length, token_ids)
    x = layer_norm(f, "embeddings_layer_norm", epsilon, x)
    x = f.layer("Dropout", "embeddings_dropout", {"rate": dropout}, x)
    x = encoders(f, x, padding_mask, [f"transformer_layer_{i}" for i in range(layers)],
                  block_config(heads, intermediate, dropout, epsilon, "gelu", False))
    f.outputs.update(sequence_output=x)


@keras_hub_model("BertBackbone", TEXT_KEYS | {"num_segments"})
def bert_backbone(config: dict, f: Functional) -> None:
    """keras_hub's BertBackbone (see ``_segmented_encoder``)."""
    _segmented_encoder(config, f)


@keras_hub_model("ElectraBackbone", TEXT_KEYS - {"vocabulary_size"}
                 | {"vocab_size", "embedding_dim", "num_segments"})
def electra_backbone(config: dict, f: Functional) -> None:
    """keras_hub's ElectraBackbone: BERT's graph over an ``embedding_dim``-wide embedding
    projected to hidden_dim when narrower (see ``_segmented_encoder``)."""
    narrower = config.get("embedding_dim") != config.get("hidden_dim")
    _segmented_encoder(config, f, "vocab_size", narrower=True,
                       projection="embeddings_projection" if narrower else None)


@keras_hub_model("AlbertBackbone", TEXT_KEYS | {"embedding_dim", "num_groups",
                                                "num_inner_repetitions", "num_segments"})
def albert_backbone(config: dict, f: Functional) -> None:
    """keras_hub's AlbertBackbone: BERT's graph over an ``embedding_dim``-wide embedding
    projected by Dense ``embedding_projection``, with ``num_groups`` groups of
    ``num_inner_repetitions`` encoders ``group_<g>_inner_layer_<i>``, each group's encoders
    called in turn num_layers / num_groups times (shared weights)."""
    groups = f.require(config, "num_groups", is_positive_int, "a positive int")
    inner = f.require(config, "num_inner_repetitions", is_positive_int, "a positive int")
    if config.get("num_layers", 0) % groups:
        raise ModelConfigError(f"{f.source}: AlbertBackbone config key 'num_layers' is not "
                               f"a multiple of num_groups ({groups})")

    def schedule(layers: int) -> list:
        return [f"group_{g}_inner_layer_{i}" for g in range(groups)
                for _ in range(layers // groups) for i in range(inner)]

    _segmented_encoder(config, f, narrower=True, projection="embedding_projection",
                       schedule=schedule)


@keras_hub_model("DistilBertBackbone", TEXT_KEYS)
def distil_bert_backbone(config: dict, f: Functional) -> None:
    """keras_hub's DistilBertBackbone (see ``_embedded_encoder``)."""
    _embedded_encoder(config, f, "token_and_position_embedding", 1e-12)


@keras_hub_model("RobertaBackbone", TEXT_KEYS)
def roberta_backbone(config: dict, f: Functional) -> None:
    """keras_hub's RobertaBackbone (see ``_embedded_encoder``)."""
    _embedded_encoder(config, f, "embeddings", 1e-5)

# keras_hub's XLMRobertaBackbone subclasses RobertaBackbone and changes nothing but its name
keras_hub_model("XLMRobertaBackbone", TEXT_KEYS)(roberta_backbone)


# ---------------------------------------------------------------------- DeBERTa-v3

DEBERTA_V3 = "keras_hub.src.models.deberta_v3."


@keras_hub_model("DebertaV3Backbone", TEXT_KEYS | {"bucket_size"})
def deberta_v3_backbone(config: dict, f: Functional) -> None:
    """keras_hub's DebertaV3Backbone: ReversibleEmbedding ``token_embedding`` of
    ``token_ids`` (no position embedding), LayerNormalization(1e-7), Dropout;
    RelativeEmbedding ``rel_embedding`` (the normalized (2 bucket_size, hidden) table, per
    batch row); DisentangledAttentionEncoders ``disentangled_attention_encoder_layer_<i>``
    (exact gelu, epsilon 1e-7, the log buckets set by bucket_size and
    max_sequence_length) on the embeddings, the table and ``padding_mask``. Its one output
    is named after the last encoder, as Keras names it."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = dims(config, f)
    buckets = f.require(config, "bucket_size", lambda v: is_positive_int(v) and v >= 2,
                        "an int of at least 2")
    if length - 1 <= buckets // 2:
        raise ModelConfigError(f"{f.source}: DebertaV3Backbone config key 'bucket_size' "
                               f"({buckets}) leaves no log buckets below "
                               f"max_sequence_length ({length}); kerasonnx rebuilds it for "
                               f"bucket_size // 2 < max_sequence_length - 1")
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = token_embedding_layer(f, vocabulary, hidden, token_ids)
    x = layer_norm(f, "embeddings_layer_norm", 1e-7, x)
    x = f.layer("Dropout", "embeddings_dropout", {"rate": dropout}, x)
    relative = f.layer("RelativeEmbedding", "rel_embedding",
                       {"hidden_dim": hidden, "bucket_size": buckets,
                        "layer_norm_epsilon": 1e-7},
                       x, module=DEBERTA_V3 + "relative_embedding")
    block = {"num_heads": heads, "intermediate_dim": intermediate,
             "max_position_embeddings": length, "bucket_size": buckets, "dropout": dropout,
             "activation": "gelu", "layer_norm_epsilon": 1e-7}
    for i in range(layers):
        name = f"disentangled_attention_encoder_layer_{i}"
        x = f.layer("DisentangledAttentionEncoder", name, block, x,
                    module=DEBERTA_V3 + "disentangled_attention_encoder",
                    rel_embeddings=relative, padding_mask=padding_mask)
    f.outputs[name] = x
