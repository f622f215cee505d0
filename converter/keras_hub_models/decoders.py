"""keras_hub's causal language-model backbones: GPT-2, OPT, Llama, Mistral, Qwen,
Gemma."""
from __future__ import annotations

import math

from ..errors import ModelConfigError
from .builder import (block_config, decoders, dims, Functional, GELU_APPROXIMATE,
                      is_flag, is_positive_int, is_positive_int_or_null, is_positive_number,
                      is_positive_number_or_null, is_rate, keras_hub_model,
                      layer_norm, TEXT_KEYS, token_and_position, token_embedding_layer)


@keras_hub_model("GPT2Backbone", TEXT_KEYS)
def gpt2_backbone(config: dict, f: Functional) -> None:
    """keras_hub's GPT2Backbone: token (ReversibleEmbedding) + position embeddings, Add,
    Dropout, pre-norm causal TransformerDecoders (tanh gelu, epsilon 1e-5) on
    ``padding_mask``, a final LayerNormalization: ``sequence_output``."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = dims(config, f)
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    tokens = token_embedding_layer(f, vocabulary, hidden, token_ids)
    positions = f.hub_layer("PositionEmbedding", "position_embedding", "position_embedding",
                            {"sequence_length": length}, tokens)
    x = f.layer("Add", "embeddings_add", {}, [tokens, positions])
    x = f.layer("Dropout", "embeddings_dropout", {"rate": dropout}, x)
    x = decoders(f, x, padding_mask, layers,
                  block_config(heads, intermediate, dropout, 1e-5, GELU_APPROXIMATE, True))
    f.outputs.update(sequence_output=layer_norm(f, "layer_norm", 1e-5, x))


@keras_hub_model("OPTBackbone", TEXT_KEYS)
def opt_backbone(config: dict, f: Functional) -> None:
    """keras_hub's OPTBackbone: TokenAndPositionEmbedding ``embeddings``, pre-norm causal
    TransformerDecoders (relu, epsilon 1e-5) on ``padding_mask``, a final
    LayerNormalization: ``sequence_output``."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = dims(config, f)
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = token_and_position(f, "embeddings", vocabulary, hidden, length, token_ids)
    x = decoders(f, x, padding_mask, layers,
                  block_config(heads, intermediate, dropout, 1e-5, "relu", True))
    f.outputs.update(sequence_output=layer_norm(f, "layer_norm", 1e-5, x))


LLAMA_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
              "intermediate_dim", "num_key_value_heads", "rope_max_wavelength",
              "rope_position_scaling_factor", "rope_frequency_adjustment_factor",
              "rope_low_freq_factor", "rope_high_freq_factor",
              "rope_pretraining_sequence_length", "layer_norm_epsilon", "dropout",
              "tie_word_embeddings"}
LLAMA3_ROPE = ("rope_frequency_adjustment_factor", "rope_low_freq_factor",
               "rope_high_freq_factor", "rope_pretraining_sequence_length")


def _gqa_backbone(config: dict, f: Functional, decoder: str, module: str, norm_path: str,
                  tied: bool, block: dict, layer_options=None,
                  norm=("RMSNormalization", "keras.layers")) -> None:
    """Llama and Mistral: ReversibleEmbedding (``tied``), ``decoder`` blocks (see
    ``layers/keras_hub.py``; block i's config updated with ``layer_options[i]`` when
    given) on ``padding_mask``, a final RMS norm ``sequence_output_layernorm`` (class and
    module ``norm``, saved under ``norm_path``): ``sequence_output``."""
    values = [f.require(config, key, is_positive_int, "a positive int")
              for key in ("vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
                          "intermediate_dim", "num_key_value_heads")]
    vocabulary, layers, heads, hidden, intermediate, groups = values
    if heads % groups or (hidden % heads and not config.get("head_dim")):
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'num_query_heads' "
                               f"({heads}) must divide hidden_dim ({hidden}) and be a multiple "
                               f"of num_key_value_heads ({groups})")
    epsilon = config.get("layer_norm_epsilon", 1e-6)
    dropout = f.require(config, "dropout", is_rate, "a rate in [0, 1)")
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = f.hub_layer("ReversibleEmbedding", "reversible_embedding", "token_embedding",
                    {"input_dim": vocabulary, "output_dim": hidden, "mask_zero": False,
                     "tie_weights": tied, "reverse_dtype": None, "logit_soft_cap": None},
                    token_ids)
    block = dict(block, intermediate_dim=intermediate, num_query_heads=heads,
                 num_key_value_heads=groups, layer_norm_epsilon=epsilon, dropout=dropout,
                 rope_max_wavelength=config.get("rope_max_wavelength", 10000))
    for i in range(layers):
        x = f.layer(decoder, f"transformer_layer_{i}",
                    dict(block, **(layer_options[i] if layer_options else {})), x,
                    module=module, decoder_padding_mask=padding_mask)
    x = f.layer(norm[0], "sequence_output_layernorm", {"epsilon": epsilon, "axis": -1}, x,
                module=norm[1])
    f.layers["sequence_output_layernorm"]["saving_path"] = norm_path
    f.outputs.update(sequence_output=x)


@keras_hub_model("LlamaBackbone", LLAMA_KEYS)
def llama_backbone(config: dict, f: Functional) -> None:
    """keras_hub's LlamaBackbone (see ``_gqa_backbone``): LlamaTransformerDecoders (with
    Llama 3.1's rotary frequency adjustment, see ``_llama3_rope``), the embedding tied
    with ``tie_word_embeddings``, LlamaLayerNorm at the end."""
    for key, default in (("rope_max_wavelength", 10000), ("layer_norm_epsilon", 1e-6)):
        f.option(config, key, default, is_positive_number, "a positive number")
    _gqa_backbone(config, f, "LlamaTransformerDecoder",
                  "keras_hub.src.models.llama.llama_decoder", "layers/llama_layer_norm",
                  bool(config.get("tie_word_embeddings", False)),
                  {"rope_position_scaling_factor": config.get("rope_position_scaling_factor",
                                                              1.0), **_llama3_rope(config, f)})


# Llama3Backbone is LlamaBackbone under another name (keras_hub subclasses it, adding nothing)
keras_hub_model("Llama3Backbone", LLAMA_KEYS)(llama_backbone)


def _llama3_rope(config: dict, f: Functional) -> dict:
    """Llama 3.1's rotary frequency adjustment, the four ``LLAMA3_ROPE`` keys: all null
    (none) or all set (as LlamaRotaryEmbedding requires): a positive
    ``rope_frequency_adjustment_factor`` and ``rope_pretraining_sequence_length``,
    ``rope_high_freq_factor`` > ``rope_low_freq_factor`` > 0."""
    values = {key: config.get(key) for key in LLAMA3_ROPE}
    if all(value is None for value in values.values()):
        return values
    unset = [key for key, value in values.items() if value is None]
    if unset:
        raise ModelConfigError(f"{f.source}: {f.class_name} config key {unset[0]!r} is null "
                               f"while other Llama 3.1 rotary keys are set; keras_hub needs "
                               f"all four of {', '.join(LLAMA3_ROPE)} or none")
    for key in LLAMA3_ROPE[:3]:
        f.require(config, key, is_positive_number, "a positive number or null")
    f.require(config, "rope_pretraining_sequence_length", is_positive_int,
              "a positive int or null")
    if values["rope_high_freq_factor"] <= values["rope_low_freq_factor"]:
        raise ModelConfigError(f"{f.source}: {f.class_name} config key "
                               f"'rope_high_freq_factor' ({values['rope_high_freq_factor']}) "
                               f"is not above rope_low_freq_factor "
                               f"({values['rope_low_freq_factor']}); kerasonnx rebuilds it "
                               f"for high > low")
    return values


MISTRAL_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
                "intermediate_dim", "rope_max_wavelength", "rope_scaling_factor",
                "num_key_value_heads", "sliding_window", "head_dim", "layer_norm_epsilon",
                "dropout"}


@keras_hub_model("MistralBackbone", MISTRAL_KEYS)
def mistral_backbone(config: dict, f: Functional) -> None:
    """keras_hub's MistralBackbone (see ``_gqa_backbone``): MistralTransformerDecoders
    (``head_dim``, ``rope_scaling_factor``, ``sliding_window``), an untied embedding,
    MistralLayerNormalization at the end."""
    window, head_dim = (f.option(config, key, None, is_positive_int_or_null,
                                 "a positive int or null")
                        for key in ("sliding_window", "head_dim"))
    _gqa_backbone(config, f, "MistralTransformerDecoder",
                  "keras_hub.src.models.mistral.mistral_transformer_decoder",
                  "layers/mistral_layer_normalization", False,
                  {"rope_scaling_factor": config.get("rope_scaling_factor", 1.0),
                   "sliding_window": window, "head_dim": head_dim})


QWEN_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
             "intermediate_dim", "rope_max_wavelength", "rope_scaling_factor",
             "num_key_value_heads", "layer_norm_epsilon", "dropout", "tie_word_embeddings",
             "use_sliding_window_attention", "sliding_window_size"}


@keras_hub_model("QwenBackbone", QWEN_KEYS)
def qwen_backbone(config: dict, f: Functional) -> None:
    """keras_hub's QwenBackbone (Qwen 2; see ``_gqa_backbone``): QwenTransformerDecoders
    (biased query / key / value, ``rope_scaling_factor``), the embedding tied with
    ``tie_word_embeddings``, QwenLayerNorm at the end. Sliding window attention is
    refused."""
    if config.get("use_sliding_window_attention"):
        raise ModelConfigError(f"{f.source}: QwenBackbone config key "
                               f"'use_sliding_window_attention' is true; not supported yet")
    _gqa_backbone(config, f, "QwenTransformerDecoder",
                  "keras_hub.src.models.qwen.qwen_decoder", "layers/qwen_layer_norm",
                  bool(config.get("tie_word_embeddings", True)),
                  {"rope_scaling_factor": config.get("rope_scaling_factor", 1.0),
                   "use_sliding_window_attention": False})


# ---------------------------------------------------------------------- Gemma


GEMMA_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
              "hidden_dim", "intermediate_dim", "head_dim", "layer_norm_epsilon", "dropout",
              "query_head_dim_normalize", "use_post_ffw_norm", "use_post_attention_norm",
              "final_logit_soft_cap", "attention_logit_soft_cap", "sliding_window_size",
              "use_sliding_window_attention"}


@keras_hub_model("GemmaBackbone", GEMMA_KEYS)
def gemma_backbone(config: dict, f: Functional) -> None:
    """keras_hub's GemmaBackbone (Gemma 1 and 2): ReversibleEmbedding ``token_embedding``
    (tied; its reverse call soft-capped by ``final_logit_soft_cap``) of ``token_ids``, times
    sqrt(hidden_dim) in float32, GemmaDecoderBlocks ``decoder_block_<i>`` on
    ``padding_mask`` (see ``layers/keras_hub.py``; with ``use_sliding_window_attention`` the
    even ones attend a sliding window), Gemma's RMSNormalization ``final_normalization``:
    ``sequence_output``. Two keys are read and do not change the graph as keras_hub 0.32
    builds it: ``query_head_dim_normalize`` (its GemmaDecoderBlock scales queries by
    1 / sqrt(head_dim) whatever it says) and, but for the final norm, ``layer_norm_epsilon``
    (its decoder blocks are built with their default, 1e-6)."""
    _gemma_backbone(config, f, {"query_head_dim_normalize": True}, 4096,
                    ("GemmaDecoderBlock", "keras_hub.src.models.gemma.gemma_decoder_block"),
                    "keras_hub.src.models.gemma.rms_normalization",
                    lambda i, sliding: {"use_sliding_window_attention": sliding and i % 2 == 0})


def _gemma_backbone(config: dict, f: Functional, flag_defaults: dict, window_default: int,
                    decoder: tuple, norm_module: str, block_options) -> None:
    """Gemma's and Gemma 3's backbone graph, their configs checked: the tied
    ReversibleEmbedding (soft-capped by ``final_logit_soft_cap``) times sqrt(hidden_dim),
    decoder blocks ``decoder_block_<i>`` (``decoder``: class, module; the options
    every block shares, the post norms and ``flag_defaults``' flags, updated with
    ``block_options(i, use_sliding_window_attention)``) on ``padding_mask``, the RMS norm
    of ``norm_module`` ``final_normalization``. The blocks' own norms use their default
    epsilon, 1e-6, as keras_hub 0.32 builds them."""
    vocabulary, layers, heads, groups, hidden, intermediate, head_dim = (
        f.require(config, key, is_positive_int, "a positive int")
        for key in ("vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads",
                    "hidden_dim", "intermediate_dim", "head_dim"))
    if heads % groups:
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'num_query_heads' "
                               f"({heads}) is not a multiple of num_key_value_heads "
                               f"({groups})")
    flags = {key: f.option(config, key, default, is_flag, "true or false")
             for key, default in dict(flag_defaults, use_post_ffw_norm=False,
                                      use_post_attention_norm=False).items()}
    sliding = f.option(config, "use_sliding_window_attention", False, is_flag, "true or false")
    attention_cap, final_cap = (
        f.option(config, key, None, is_positive_number_or_null, "a positive number or null")
        for key in ("attention_logit_soft_cap", "final_logit_soft_cap"))
    window = f.option(config, "sliding_window_size", window_default, is_positive_int,
                      "a positive int")
    epsilon = f.option(config, "layer_norm_epsilon", 1e-6, is_positive_number,
                       "a positive number")
    dropout = f.option(config, "dropout", 0, is_rate, "a rate in [0, 1)")
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = token_embedding_layer(f, vocabulary, hidden, token_ids, logit_soft_cap=final_cap)
    x = f.op("Multiply", "multiply", x, math.sqrt(hidden))
    block = {"hidden_dim": hidden, "intermediate_dim": intermediate, "head_dim": head_dim,
             "num_query_heads": heads, "num_key_value_heads": groups,
             "layer_norm_epsilon": 1e-6, "dropout": dropout, "logit_soft_cap": attention_cap,
             "sliding_window_size": window, **flags}
    for i in range(layers):
        x = f.layer(decoder[0], f"decoder_block_{i}", dict(block, **block_options(i, sliding)),
                    x, module=decoder[1], padding_mask=padding_mask)
    x = f.layer("RMSNormalization", "final_normalization", {"epsilon": epsilon}, x,
                module=norm_module)
    f.outputs.update(sequence_output=x)


# ---------------------------------------------------------------------- task models
