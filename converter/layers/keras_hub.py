"""KerasHub (``keras_hub``, formerly ``keras_nlp``): its transformer building blocks.

Its layers serialize with ``module: keras_hub.src.layers.modeling.<file>`` and
``registered_name: keras_hub>Class`` (older files: ``keras_nlp``); their configs hold the
constructor arguments, their weights sit under the attribute names of their sublayers
(``transformer_encoder/_self_attention_layer/query_dense/vars/0``). TransformerEncoder,
TransformerDecoder, TokenAndPositionEmbedding, MaskedLMHead and FNetEncoder are composite
layers (converter/composite.py): their calls expand into the Keras layers and operations
KerasHub's ``call`` runs; so are the model-specific blocks its backbones build (Llama's,
Mistral's, Mixtral's, Qwen's, Qwen 3 MoE's and Gemma's decoders, ViT's, DeiT's and DINOV2's
encoders). The position encodings, ReversibleEmbedding, RMSNormalization, AlibiBias, the
image models' patch embeddings, DINOV2's layer scale and the sparse mixtures of experts are
lowered by hand (emit/keras_hub.py).

An expansion function is ``expand(node, e)``: ``e`` is the ``composite.Expansion`` that
makes the inner calls. Masks as KerasHub moves them: a TransformerEncoder/Decoder reads its
inputs' Keras mask (unless a padding mask is passed) and merges it into the attention mask
its attention layer gets (``merge_padding_and_attention_mask``); its output carries its
first input's mask.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedLayerError
from .attention import INTERNAL_MODULE, _mha_weights, bind_mha_roles, multi_head_attention
from .registry import NEW_MASK, WeightSpec, compute_dtype, first_input, layer_kind, no_mask

HUB_PACKAGES = ("keras_hub", "keras_nlp")


def is_keras_hub(module) -> bool:
    """A ``module`` (or ``registered_name``) from KerasHub or its older name, keras_nlp."""
    return (module or "").startswith(HUB_PACKAGES)


def _hub(module: str, config: dict) -> bool:
    return is_keras_hub(module)


def hub_kind(*class_names: str, **options):
    """``layer_kind`` for KerasHub classes: they claim only layers from keras_hub."""
    return layer_kind(*class_names, matches=_hub, **options)


# ---------------------------------------------------------------------- transformer blocks


def _merged_attention_mask(e, sequence, padding_mask, attention_mask, label: str):
    """KerasHub's ``merge_padding_and_attention_mask``: the padding mask (else the
    sequence's Keras mask) as int32 (B, 1, S), combined by minimum with the attention mask
    as int32; None when neither is present."""
    mask = padding_mask if padding_mask is not None else sequence.mask
    merged = None
    if mask is not None:
        merged = e.op("Cast", e.op("ExpandDims", mask, axis=1, label=f"{label}/padding"),
                      dtype="int32", label=f"{label}/padding_int")
    if attention_mask is not None:
        explicit = e.op("Cast", attention_mask, dtype="int32", label=f"{label}/explicit_int")
        merged = explicit if merged is None else e.op("Minimum", merged, explicit,
                                                      label=f"{label}/merged")
    return merged


def _sublayers(e, kind: str, hidden: int) -> dict:
    """The sublayers a TransformerEncoder / TransformerDecoder builds, by attribute."""
    config = e.config
    epsilon = config.get("layer_norm_epsilon", 1e-5)
    dropout = config.get("dropout", 0)
    heads = config["num_heads"]
    attention_class, attention_module = (
        ("MultiHeadAttention", "keras.layers") if kind == "encoder" else
        ("CachedMultiHeadAttention",
         "keras_hub.src.layers.modeling.cached_multi_head_attention"))
    attention = {"num_heads": heads, "key_dim": hidden // heads, "dropout": dropout}
    blocks = ["_self_attention"]
    if kind == "cross":
        blocks.append("_cross_attention")
    layers = {}
    for block in blocks:
        # the encoder names its attention "self_attention_layer", the decoder "self_attention"
        name = block.lstrip("_") + ("_layer" if kind == "encoder" else "")
        layers[f"{block}_layer"] = e.sublayer(f"{block}_layer", attention_class,
                                             dict(attention, name=name),
                                             module=attention_module)
        layers[f"{block}_layer_norm"] = e.sublayer(f"{block}_layer_norm", "LayerNormalization",
                                                  {"epsilon": epsilon, "axis": -1})
        layers[f"{block}_dropout"] = e.sublayer(f"{block}_dropout", "Dropout",
                                               {"rate": dropout})
    layers["_feedforward_layer_norm"] = e.sublayer("_feedforward_layer_norm",
                                                   "LayerNormalization",
                                                   {"epsilon": epsilon, "axis": -1})
    layers["_feedforward_intermediate_dense"] = e.sublayer(
        "_feedforward_intermediate_dense", "Dense",
        {"units": config["intermediate_dim"], "activation": config.get("activation", "relu")})
    layers["_feedforward_output_dense"] = e.sublayer("_feedforward_output_dense", "Dense",
                                                     {"units": hidden})
    layers["_feedforward_dropout"] = e.sublayer("_feedforward_dropout", "Dropout",
                                                {"rate": dropout})
    return layers


def _residual_block(e, layers: dict, block: str, inputs, body):
    """``normalize_first``: y = inputs + dropout(body(norm(inputs))); else
    y = norm(inputs + dropout(body(inputs))). ``body(h)`` returns (output, extras)."""
    norm = layers[f"{block}_layer_norm"]
    first = e.config.get("normalize_first", False)
    h = e.call(norm, inputs)[0] if first else inputs
    h, extras = body(h)
    h = e.call(layers[f"{block}_dropout"], h)[0]
    h = e.op("Add", h, inputs, label=f"{block.lstrip('_')}_residual")
    return (h if first else e.call(norm, h)[0]), extras


def _feedforward(e, layers: dict, inputs):
    def body(h):
        h = e.call(layers["_feedforward_intermediate_dense"], h)[0]
        return e.call(layers["_feedforward_output_dense"], h)[0], None

    return _residual_block(e, layers, "_feedforward", inputs, body)[0]


def _expand_encoder(node, e) -> list:
    """KerasHub's TransformerEncoder.call: self-attention block (MultiHeadAttention on the
    merged padding/attention mask, dropout, residual, LayerNormalization; the norm first
    with ``normalize_first``), then the feed-forward block (Dense(intermediate_dim,
    activation), Dense(hidden), dropout, residual, norm)."""
    inputs = node.input("inputs")
    layers = _sublayers(e, "encoder", inputs.shape[-1])
    mask = _merged_attention_mask(e, inputs, node.input("padding_mask"),
                                  node.input("attention_mask"), "self_attention_mask")

    def attend(h):
        return e.call(layers["_self_attention_layer"], query=h, value=h,
                      attention_mask=mask)[0], None

    h = _residual_block(e, layers, "_self_attention", inputs, attend)[0]
    return [_feedforward(e, layers, h)]


def _encoder_types(node):
    """The input's shape. (With return_attention_scores Keras' symbolic call still gives
    one output, its compute_output_shape's: a functional model cannot use the scores.)"""
    return [(node.input("inputs").shape, compute_dtype(node))]


hub_kind("TransformerEncoder",
         signature=("inputs", "padding_mask", "attention_mask", "training",
                    "return_attention_scores"),
         output_mask=lambda node: node.input("inputs").mask,
         expand=_expand_encoder)(_encoder_types)


DECODER_SIGNATURE = ("decoder_sequence", "encoder_sequence", "decoder_padding_mask",
                     "decoder_attention_mask", "encoder_padding_mask",
                     "encoder_attention_mask", "self_attention_cache",
                     "self_attention_cache_update_index", "cross_attention_cache",
                     "cross_attention_cache_update_index", "use_causal_mask", "training")


def _expand_decoder(node, e) -> list:
    """KerasHub's TransformerDecoder.call without caches: causal self-attention
    (CachedMultiHeadAttention on the merged decoder padding/attention mask AND the causal
    mask), then, with an ``encoder_sequence``, cross-attention on it (merged encoder
    padding/attention mask), then the feed-forward block; each block a residual one as in
    TransformerEncoder."""
    for cache in ("self_attention_cache", "cross_attention_cache"):
        if node.input(cache) is not None:
            raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: TransformerDecoder "
                                        f"called with a {cache} is not supported yet")
    decoder, encoder = node.input("decoder_sequence"), node.input("encoder_sequence")
    layers = _sublayers(e, "decoder" if encoder is None else "cross", decoder.shape[-1])
    self_mask = _merged_attention_mask(e, decoder, node.input("decoder_padding_mask"),
                                       node.input("decoder_attention_mask"),
                                       "self_attention_mask")
    cross_mask = None if encoder is None else _merged_attention_mask(
        e, encoder, node.input("encoder_padding_mask"), node.input("encoder_attention_mask"),
        "cross_attention_mask")
    causal = node.arguments.get("use_causal_mask", True)

    def self_attend(h):
        return e.call(layers["_self_attention_layer"], query=h, value=h,
                      attention_mask=self_mask, use_causal_mask=causal)[0], None

    def cross_attend(h):
        return e.call(layers["_cross_attention_layer"], query=h, value=encoder,
                      attention_mask=cross_mask)[0], None

    h = _residual_block(e, layers, "_self_attention", decoder, self_attend)[0]
    if encoder is not None:
        h = _residual_block(e, layers, "_cross_attention", h, cross_attend)[0]
    return [_feedforward(e, layers, h)]


hub_kind("TransformerDecoder", signature=DECODER_SIGNATURE,
         output_mask=lambda node: node.input("decoder_sequence").mask,
         expand=_expand_decoder)(
    lambda node: [(node.input("decoder_sequence").shape, compute_dtype(node))])


# CachedMultiHeadAttention without a cache is Keras' MultiHeadAttention, except that its
# call takes no Keras masks (masks reach it only as ``attention_mask``) and leaves its
# inputs' masks alone. KerasHub's TransformerDecoder builds its mask with the causal one,
# which its expansion passes as ``use_causal_mask``.
hub_kind("CachedMultiHeadAttention",
         signature=("query", "value", "key", "attention_mask", "cache", "cache_update_index",
                    "return_attention_scores", "training"),
         bind_roles=bind_mha_roles, weights=_mha_weights)(multi_head_attention)


# ---------------------------------------------------------------------- embeddings


def _expand_token_and_position(node, e) -> list:
    """ReversibleEmbedding(vocabulary_size, embedding_dim, mask_zero) of the token ids plus
    PositionEmbedding(sequence_length) of the result; the sum carries the token mask."""
    config = e.config
    if node.input("positions") is not None:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: "
                                    f"TokenAndPositionEmbedding called with positions is "
                                    f"not supported yet")
    module = "keras_hub.src.layers.modeling"
    tokens = e.sublayer("token_embedding", "ReversibleEmbedding",
                        {"input_dim": config["vocabulary_size"],
                         "output_dim": config["embedding_dim"],
                         "tie_weights": config.get("tie_weights", True),
                         "mask_zero": config.get("mask_zero", False)},
                        module=f"{module}.reversible_embedding")
    positions = e.sublayer("position_embedding", "PositionEmbedding",
                           {"sequence_length": config["sequence_length"]},
                           module=f"{module}.position_embedding")
    embedded = e.call(tokens, node.input("inputs"))[0]
    located = e.call(positions, embedded,
                     start_index=node.arguments.get("start_index", 0))[0]
    summed = e.op("Add", embedded, located, label="sum")
    summed.mask = embedded.mask
    return [summed]


hub_kind("TokenAndPositionEmbedding", signature=("inputs", "start_index", "positions"),
         output_mask=no_mask, expand=_expand_token_and_position)(
    lambda node: [(first_input(node).shape + (node.config["embedding_dim"],),
                   compute_dtype(node))])


def _reversible_weights(node):
    """embeddings (input_dim, output_dim); reverse_embeddings (output_dim, input_dim)
    unless ``tie_weights``."""
    vocabulary, width = node.config["input_dim"], node.config["output_dim"]
    specs = [WeightSpec("embeddings", "vars/0", (vocabulary, width))]
    if not node.config.get("tie_weights", True):
        specs.append(WeightSpec("reverse_embeddings", "vars/1", (width, vocabulary)))
    return specs


def _reversible_mask(node):
    reverse = node.arguments.get("reverse")
    return NEW_MASK if node.config.get("mask_zero") and not reverse else None


@hub_kind("ReversibleEmbedding", signature=("inputs", "reverse"), weights=_reversible_weights,
          output_mask=_reversible_mask)
def reversible_embedding(node):
    """Forward: embeddings[ids] (mask ids != 0 with mask_zero). ``reverse=True``: logits
    x @ embeddingsᵀ (or @ reverse_embeddings), soft-capped cap * tanh(logits / cap)."""
    shape = first_input(node).shape
    if node.arguments.get("reverse"):
        return [(shape[:-1] + (node.config["input_dim"],), compute_dtype(node))]
    return [(shape + (node.config["output_dim"],), compute_dtype(node))]


def _position_weights(node):
    return [WeightSpec("embeddings", "vars/0",
                       (node.config["sequence_length"], first_input(node).shape[-1]))]


@hub_kind("PositionEmbedding", signature=("inputs", "start_index", "positions"),
          weights=_position_weights, output_mask=no_mask,
          max_length=lambda node: (node.config["sequence_length"]
                                   - int(node.arguments.get("start_index", 0))))
def position_embedding(node):
    """embeddings[start_index : start_index + T] broadcast to the input's shape."""
    return [(first_input(node).shape, compute_dtype(node))]


@hub_kind("SinePositionEncoding", signature=("inputs", "start_index", "positions"),
          output_mask=no_mask)
def sine_position_encoding(node):
    """pe[t, i] = sin(t * w_i) for even i, cos(t * w_i) for odd i, w_i = (1 /
    max_wavelength) ** (2 * (i // 2) / hidden), broadcast to the input's shape."""
    return [(first_input(node).shape, compute_dtype(node))]


@hub_kind("RotaryEmbedding", signature=("inputs", "start_index", "positions"),
          output_mask=no_mask)
def rotary_embedding(node):
    """x * cos(t θ) + rotate_half(x) * sin(t θ) along ``feature_axis``, positions t along
    ``sequence_axis``, θ_j = max_wavelength ** (-2j / d) / scaling_factor."""
    return [(first_input(node).shape, compute_dtype(node))]


# ---------------------------------------------------------------------- other layers


GEMMA_NORM_MODULES = tuple(f"{package}.src.models.{module}" for package in HUB_PACKAGES
                           for module in ("gemma.rms_normalization", "gemma3.gemma3_layers"))
# modeling's RMSNormalization: its module, and the registered name a legacy .h5 records
# instead (the one keras_hub class of the name it registers)
MODELING_NORM_MODULES = tuple(f"{package}.src.layers.modeling.rms_normalization"
                              for package in HUB_PACKAGES) + ("keras_hub>RMSNormalization",)


def is_gemma_norm(module) -> bool:
    """Gemma's or Gemma 3's RMSNormalization (``keras_hub.src.models.gemma`` /
    ``gemma3.gemma3_layers``: the same formula), not the modeling one."""
    return (module or "") in GEMMA_NORM_MODULES


def _is_modelled_rms_norm(module: str, config: dict) -> bool:
    """keras_hub ships several classes named RMSNormalization (modeling's, Gemma's, Gemma
    3's, Gemma 4's x * scale, ...): this kind claims those whose module says they are one
    it models; the others are unsupported layers, never another class's graph."""
    return module in MODELING_NORM_MODULES or is_gemma_norm(module)


def _rms_weights(node):
    """scale: ``input_dim`` of them (modeling's), the input's last size (Gemma's)."""
    if is_gemma_norm(node.layer.module):
        return [WeightSpec("scale", "vars/0", (first_input(node).shape[-1],))]
    return [WeightSpec("scale", "vars/0", (node.config["input_dim"],))]


@layer_kind("RMSNormalization", weights=_rms_weights, matches=_is_modelled_rms_norm)
def rms_normalization(node):
    """KerasHub's classes of the name (not Keras'), in float32: modeling's
    x * rsqrt(mean(x², last axis) + 1e-6) * scale; Gemma's and Gemma 3's
    x * 1 / sqrt(mean(x², last axis) + epsilon) * (1 + scale), cast to its compute dtype."""
    if is_gemma_norm(node.layer.module):
        return [(first_input(node).shape, compute_dtype(node))]
    return [(first_input(node).shape, "float32")]


@hub_kind("AlibiBias", signature=("attention_scores",), output_mask=no_mask)
def alibi_bias(node):
    """scores (B, heads, T, S) + slope_h * (j - (S - 1)), the slopes a geometric series
    set by ``alibi_bias_max``."""
    return [(first_input(node).shape, compute_dtype(node))]


# ---------------------------------------------------------------------- MaskedLMHead


def _shared_embedding(node, e, embedding: dict):
    """The weights of the ReversibleEmbedding a MaskedLMHead projects onto: saved under
    the head (``token_embedding/``) when the head was saved first, else with the model's
    layer of that name (Keras saves a shared layer once)."""
    own = node.layer.weights
    if own is not None and any(n.startswith("token_embedding/") for n in own.names()):
        return own.view(("token_embedding/", "token_embedding/"))
    name = embedding.get("config", {}).get("name")
    found = [layer for layer in e.graph.layers.values()
             if layer.config.get("name") == name and layer.class_name.endswith(
                 "ReversibleEmbedding") and layer.weights is not None]
    if len(found) != 1:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: the token embedding "
                                    f"{name!r} it projects onto is "
                                    f"{'ambiguous' if found else 'not in the model'}")
    return found[0].weights


def _output_weights(node, e):
    """The output projection as a Dense(vocabulary)'s kernel and bias: the head's own
    output_kernel, or its token embedding's table transposed (its reverse_embeddings
    without tie_weights), and the head's output_bias."""
    own = node.layer.weights
    if own is None:
        return None
    saving = own.layout == "saving_lib"
    embedding = e.config.get("token_embedding")
    entries = {}
    if embedding is None:
        entries["vars/0" if saving else "kernel"] = (own, "vars/0" if saving else
                                                     "output_kernel", None)
        bias = "vars/1" if saving else "output_bias"
    else:
        table = _shared_embedding(node, e, embedding)
        if embedding["config"].get("tie_weights", True):
            source, transform = ("vars/0" if saving else "embeddings"), _transposed
        else:
            source, transform = ("vars/1" if saving else "reverse_embeddings"), None
        entries["vars/0" if saving else "kernel"] = (table, source, transform)
        bias = "vars/0" if saving else "output_bias"
    entries["vars/1" if saving else "bias"] = (own, bias, None)
    return e.derived_weights(own.layout, entries)


def _transposed(array):
    return array.T


def _expand_masked_lm_head(node, e) -> list:
    """KerasHub's MaskedLMHead: the hidden states at ``mask_positions``
    (take_along_axis), Dense(width, intermediate_activation), LayerNormalization, then
    the projection onto the vocabulary (its own kernel, or its token embedding's table
    transposed) plus output_bias, then ``activation``: one Dense."""
    config = e.config
    embedding = config.get("token_embedding")
    if embedding is not None:
        for option in ("logit_soft_cap", "reverse_dtype"):
            if embedding["config"].get(option) is not None:
                raise UnsupportedLayerError(
                    f"{e.source}: layer {node.name!r}: MaskedLMHead over a token embedding "
                    f"with {option} is not supported yet")
    inputs = node.input("inputs")
    width = embedding["config"]["output_dim"] if embedding else inputs.shape[-1]
    vocabulary = embedding["config"]["input_dim"] if embedding else config["vocabulary_size"]
    positions = e.op("ExpandDims", node.input("mask_positions"), axis=-1, label="positions")
    h = e.op("TakeAlongAxis", inputs, positions, axis=1, label="gathered")
    dense = e.sublayer("_intermediate_dense", "Dense", {
        "name": "intermediate_dense", "units": width,
        "activation": config.get("intermediate_activation", "relu")})
    norm = e.sublayer("_intermediate_layer_norm", "LayerNormalization", {
        "name": "intermediate_layer_norm", "axis": -1,
        "epsilon": config.get("layer_norm_epsilon", 1e-5)})
    output = e.sublayer("output_projection", "Dense", {
        "units": vocabulary, "activation": config.get("activation")},
        weights=_output_weights(node, e))
    h = e.call(norm, e.call(dense, h)[0])[0]
    return e.call(output, h)


def _masked_lm_types(node):
    config = node.config
    embedding = config.get("token_embedding")
    vocabulary = embedding["config"]["input_dim"] if embedding else config["vocabulary_size"]
    return [(node.input("mask_positions").shape + (vocabulary,), compute_dtype(node))]


hub_kind("MaskedLMHead", signature=("inputs", "mask_positions"), output_mask=no_mask,
         expand=_expand_masked_lm_head)(_masked_lm_types)


# ---------------------------------------------------------------------- FNetEncoder


def _expand_fnet(node, e) -> list:
    """KerasHub's FNetEncoder: m = norm(x + real(fft2(x))) over the last two axes, then
    y = norm(m + dropout(Dense(hidden)(Dense(intermediate_dim, activation)(m))))."""
    config, inputs = e.config, node.input("inputs")
    epsilon = config.get("layer_norm_epsilon", 1e-5)

    def norm(attribute):
        return e.sublayer(attribute, "LayerNormalization",
                          {"name": attribute.lstrip("_"), "epsilon": epsilon, "axis": -1})

    intermediate = e.sublayer("_intermediate_dense", "Dense", {
        "name": "intermediate_dense", "units": config["intermediate_dim"],
        "activation": config.get("activation", "relu")})
    output = e.sublayer("_output_dense", "Dense", {"name": "output_dense",
                                                   "units": inputs.shape[-1]})
    dropout = e.sublayer("_output_dropout", "Dropout", {"name": "output_dropout",
                                                        "rate": config.get("dropout", 0)})
    mixed = e.op("FFT2", [inputs, 0.0], label="fourier")
    mixed = e.call(norm("_mixing_layer_norm"), e.op("Add", inputs, mixed, label="mixing_sum"))[0]
    h = e.call(dropout, e.call(output, e.call(intermediate, mixed)[0])[0])[0]
    return e.call(norm("_output_layer_norm"), e.op("Add", mixed, h, label="output_sum"))


hub_kind("FNetEncoder", output_mask=no_mask, expand=_expand_fnet)(
    lambda node: [(first_input(node).shape, compute_dtype(node))])


# ---------------------------------------------------------------------- model-specific blocks


def _expand_llama_decoder(node, e) -> list:
    """KerasHub's LlamaTransformerDecoder.call without a cache (see ``_gqa_decoder``), its
    rotary embedding a LlamaRotaryEmbedding (Llama 3.1's frequency adjustment with its
    four ``rope_*`` keys). keras_hub 0.32's LlamaRotaryEmbedding overrides
    _get_inverse_freq with one that never divides by rope_position_scaling_factor: the
    factor does not change the graph."""
    config = e.config
    rope = e.sublayer("_self_attention_layer/rotary_embedding_layer", "LlamaRotaryEmbedding",
                      {"max_wavelength": config.get("rope_max_wavelength", 10000),
                       "sequence_axis": 1, "feature_axis": -1,
                       "name": "llama_rotary_embedding",
                       **{key: config.get(f"rope_{key}") for key in LLAMA3_ROPE_KEYS}},
                      module="keras_hub.src.models.llama.llama_rotary_embedding")
    return _gqa_decoder(node, e, None, 1.0, None, rope=rope)


def _expand_mistral_decoder(node, e) -> list:
    """KerasHub's MistralTransformerDecoder.call without a cache (see ``_gqa_decoder``):
    Llama's block with ``head_dim``, ``rope_scaling_factor`` and a ``sliding_window``."""
    config = e.config
    return _gqa_decoder(node, e, config.get("head_dim"),
                        config.get("rope_scaling_factor", 1.0), config.get("sliding_window"))


def _expand_qwen_decoder(node, e) -> list:
    """KerasHub's QwenTransformerDecoder.call (see ``_gqa_decoder``): Llama's block with
    ``rope_scaling_factor`` and biases on query, key and value."""
    config = e.config
    if config.get("use_sliding_window_attention"):
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: Qwen's sliding window "
                                    f"attention is not supported yet")
    return _gqa_decoder(node, e, None, config.get("rope_scaling_factor", 1.0), None,
                        biases=True)


def _gqa_decoder(node, e, head_dim, scaling: float, window, biases: bool = False,
                 head_norm_epsilon: float = None, rope=None, feedforward=None) -> list:
    """Llama / Mistral / Qwen decoder block: pre-norm (an RMS norm) self-attention
    (EinsumDense query / key / value, biased with ``biases``, with a
    ``head_norm_epsilon`` query and key RMS-normalized over each head with it (Qwen 3),
    rotary embedding of query and key (the ``rope`` sublayer, by default a RotaryEmbedding
    scaled by ``scaling``), then ``_attention_core`` on the merged padding mask, causal
    (sliding ``window``), attention_output EinsumDense), dropout, residual; then
    ``feedforward(e, x, norm)`` (by default ``_swiglu_block``) after the
    ``_feedforward_layernorm``."""
    config = e.config
    x = node.input("decoder_sequence")
    hidden = x.shape[-1]
    heads, groups = config["num_query_heads"], config["num_key_value_heads"]
    head_dim = head_dim or hidden // heads
    epsilon, dropout = config.get("layer_norm_epsilon", 1e-5), config.get("dropout", 0)

    def norm(attribute):
        return e.sublayer(attribute, "RMSNormalization", {"epsilon": epsilon, "axis": -1})

    padding = _decoder_padding_mask(node, e, x)
    core = _attention_core(e, heads, groups, head_dim, window)
    rope = rope or _rotary_sublayer(e, scaling)
    h = e.call(norm("_self_attention_layernorm"), x)[0]
    query = e.call(_projection(e, "_query_dense", "bqm,muh->bquh", [None, heads, head_dim],
                               "uh" if biases else None), h)[0]
    key = e.call(_projection(e, "_key_dense", "bkm,mvh->bkvh", [None, groups, head_dim],
                             "vh" if biases else None), h)[0]
    value = e.call(_projection(e, "_value_dense", "bkm,mvh->bkvh", [None, groups, head_dim],
                               "vh" if biases else None), h)[0]
    if head_norm_epsilon is not None:
        query, key = (e.call(e.sublayer(
            f"_self_attention_layer/_{role}_dense_layer_norm", "RMSNormalization",
            {"epsilon": head_norm_epsilon, "axis": -1, "name": f"{role}_dense_layernorm"},
            prefixes=(f"self_attention/{role}_dense_layernorm/",
                      f"self_attention_layer/{role}_dense_layer_norm/")), projected)[0]
            for role, projected in (("query", query), ("key", key)))
    query, key = e.call(rope, query)[0], e.call(rope, key)[0]
    attended = e.call(core, query, key, value, attention_mask=padding,
                      use_causal_mask=True)[0]
    attended = e.call(_projection(e, "_output_dense", "bquh,uhm->bqm", [None, hidden]),
                      attended)[0]
    attended = e.call(e.sublayer("_self_attention_dropout", "Dropout", {"rate": dropout}),
                      attended)[0]
    x = e.op("Add", attended, x, label="self_attention_residual")
    return [(feedforward or _swiglu_block)(e, x, norm("_feedforward_layernorm"))]


def _decoder_padding_mask(node, e, x):
    """The decoder's merged padding / attention mask (int32 (B, T, T), or None); a cache
    is refused."""
    if node.input("self_attention_cache") is not None:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: {node.class_name} "
                                    f"called with a cache is not supported yet")
    return _merged_attention_mask(e, x, node.input("decoder_padding_mask"),
                                  node.input("decoder_attention_mask"), "self_attention_mask")


def _attention_core(e, heads: int, groups: int, head_dim: int, window,
                    attention: str = "_self_attention_layer", soft_cap: float = None):
    """kerasonnx's AttentionCore inside a decoder's ``attention`` sublayer: softmax of
    q·k / sqrt(head_dim) (soft-capped cap * tanh(logits / cap) with ``soft_cap``) over the
    keys, each key/value head shared by ``heads / groups`` query heads, on the mask it is
    called with AND causal (sliding ``window``: |i - j| < window); a key/value cache can
    extend it (``--with-past``)."""
    return e.sublayer(f"{attention}/attention_core", "AttentionCore",
                      {"num_query_heads": heads, "num_key_value_heads": groups,
                       "head_dim": head_dim, "scale": 1.0 / math.sqrt(head_dim),
                       "sliding_window": window, "logit_soft_cap": soft_cap},
                      module=INTERNAL_MODULE)


def _rotary_sublayer(e, scaling: float):
    return e.sublayer("_self_attention_layer/rotary_embedding_layer", "RotaryEmbedding",
                      {"max_wavelength": e.config.get("rope_max_wavelength", 10000),
                       "scaling_factor": scaling, "sequence_axis": 1, "feature_axis": -1,
                       "name": "rotary_embedding_layer"},
                      module="keras_hub.src.layers.modeling.rotary_embedding")


def _attention_projection(e, attribute: str, name: str, equation: str, shape: list):
    """Unbiased EinsumDense ``name`` saved as the ``attention`` sublayer's ``attribute``
    (Gemma's and Phi-3's attention)."""
    return e.sublayer(f"attention/{attribute}", "EinsumDense",
                      {"equation": equation, "output_shape": shape, "bias_axes": None,
                       "name": name},
                      prefixes=(f"attention/{name}/", f"attention/{attribute}/"))


def _attention_qkv(e, h, heads: int, groups: int, head_dim: int, query_equation: str,
                   key_value_equation: str) -> tuple:
    """Query (B, T, heads, head_dim), key and value (B, T, groups, head_dim) of ``h`` by
    the ``attention`` sublayer's query_dense / key_dense / value_dense (see
    ``_attention_projection``), their kernels laid out as the equations say."""
    query = e.call(_attention_projection(e, "query_dense", "query", query_equation,
                                         [None, heads, head_dim]), h)[0]
    key, value = (e.call(_attention_projection(e, f"{role}_dense", role, key_value_equation,
                                               [None, groups, head_dim]), h)[0]
                  for role in ("key", "value"))
    return query, key, value


def _projection(e, attribute: str, equation: str, shape: list, bias_axes=None):
    """EinsumDense ``attribute`` of the decoder's ``_self_attention_layer``."""
    name = attribute.lstrip("_")
    return e.sublayer(f"_self_attention_layer/{attribute}", "EinsumDense",
                      {"equation": equation, "output_shape": shape, "bias_axes": bias_axes,
                       "name": name},
                      prefixes=(f"self_attention/{name}/", f"self_attention_layer/{name}/"))


def _swiglu_block(e, x, norm, holder: str = ""):
    """x + output_dense(intermediate_dense(h) * silu(gate_dense(h))), h = norm(x); the
    Dense layers are the block's own, or its sublayer ``holder``'s (Qwen3MoeMLP's
    ``mlp``)."""
    intermediate = e.config["intermediate_dim"]

    def dense(attribute, units):
        name = attribute.lstrip("_")
        return e.sublayer(f"{holder}/{attribute}" if holder else attribute, "Dense",
                          {"units": units, "use_bias": False, "name": name},
                          prefixes=(f"{holder}/{name}/" if holder else f"{name}/",) * 2)

    h = e.call(norm, x)[0]
    gate = e.op("Silu", e.call(dense("_feedforward_gate_dense", intermediate), h)[0],
                label="gate_activation")
    h = e.call(dense("_feedforward_intermediate_dense", intermediate), h)[0]
    h = e.call(dense("_feedforward_output_dense", x.shape[-1]),
               e.op("Multiply", h, gate, label="gated"))[0]
    return e.op("Add", h, x, label="feedforward_residual")


def gqa_decoder_kind(class_name: str, expand, position_ids: bool = False) -> None:
    """Register a decoder block called like LlamaTransformerDecoder (and ``position_ids``
    with ``position_ids``), expanded by ``expand``: its output has its input's shape and
    mask."""
    hub_kind(class_name,
             signature=("decoder_sequence", "decoder_padding_mask", "decoder_attention_mask",
                        "self_attention_cache", "self_attention_cache_update_index")
             + (("position_ids",) if position_ids else ()) + ("training",),
             output_mask=lambda node: node.input("decoder_sequence").mask,
             expand=expand)(
        lambda node: [(node.input("decoder_sequence").shape, compute_dtype(node))])


for _name, _expand in (("LlamaTransformerDecoder", _expand_llama_decoder),
                      ("MistralTransformerDecoder", _expand_mistral_decoder),
                      ("QwenTransformerDecoder", _expand_qwen_decoder)):
    gqa_decoder_kind(_name, _expand)


# ---------------------------------------------------------------------- Qwen 3


def _expand_qwen3_decoder(node, e) -> list:
    """KerasHub's Qwen3TransformerDecoder.call (see ``_gqa_decoder``): Llama's block with
    ``head_dim``, ``rope_scaling_factor``, query and key RMS-normalized per head before the
    rotary embedding (with Qwen3Attention's own epsilon, 1e-5: the decoder does not pass
    its ``layer_norm_epsilon`` on), and Qwen3Attention's ``sliding_window_size``: position
    i attends to j when i - window < j <= i, as its unfused path computes (the one the
    TensorFlow backend runs; where keras_hub fuses attention, JAX, it ignores the
    window)."""
    config = e.config
    return _gqa_decoder(node, e, config.get("head_dim"),
                        config.get("rope_scaling_factor", 1.0),
                        config.get("sliding_window_size") or None, head_norm_epsilon=1e-5)


gqa_decoder_kind("Qwen3TransformerDecoder", _expand_qwen3_decoder)


# ---------------------------------------------------------------------- mixtures of experts


def _expand_mixtral_decoder(node, e) -> list:
    """KerasHub's MixtralTransformerDecoder.call without a cache (see ``_gqa_decoder``):
    Mistral's attention (head_dim = hidden / heads, ``rope_scaling_factor``,
    ``sliding_window``), the feed-forward its MixtralSparseMoeBlock ``_sparse_moe_block``
    (see ``_sparse_moe``; always renormalising the top-k). ``router_jitter_noise`` and
    ``router_aux_loss_coef`` act only in training (the noise only when training, the loss
    is only added to the model's losses): inference ignores them."""
    config = e.config
    return _gqa_decoder(node, e, None, config.get("rope_scaling_factor", 1.0),
                        config.get("sliding_window"),
                        feedforward=lambda e, x, norm: _sparse_moe(
                            e, x, norm, "_sparse_moe_block", "MixtralSparseMoeBlock",
                            "mixtral.mixtral_decoder", config["intermediate_dim"], True))


def _expand_qwen3_moe_decoder(node, e) -> list:
    """KerasHub's Qwen3MoeTransformerDecoder.call without a cache: Qwen 3's block (see
    ``_expand_qwen3_decoder``; its per-head query / key norms with Qwen3MoeAttention's
    own epsilon, 1e-6, which the decoder does not pass on), the feed-forward ``mlp``: a
    Qwen3SparseMoeBlock (``is_sparse_mlp``, see ``_sparse_moe``; the top-k renormalised
    with ``norm_top_k_prob``) or Qwen3MoeMLP (``_swiglu_block``). The aux-loss
    coefficient only scales a training loss."""
    config = e.config
    if config.get("is_sparse_mlp"):
        def feedforward(e, x, norm):
            return _sparse_moe(e, x, norm, "mlp", "Qwen3SparseMoeBlock",
                               "qwen3_moe.qwen3_moe_decoder", config["moe_intermediate_dim"],
                               config["norm_top_k_prob"])
    else:
        def feedforward(e, x, norm):
            return _swiglu_block(e, x, norm, holder="mlp")
    return _gqa_decoder(node, e, config.get("head_dim"),
                        config.get("rope_scaling_factor", 1.0),
                        config.get("sliding_window_size") or None, head_norm_epsilon=1e-6,
                        feedforward=feedforward)


def _sparse_moe(e, x, norm, attribute: str, class_name: str, module: str, intermediate: int,
                renormalize: bool):
    """x + the sparse mixture of experts ``attribute`` (a ``class_name`` of keras_hub's
    ``models.<module>``, lowered by hand: see emit/keras_hub.py) of norm(x)."""
    config = e.config
    moe = e.sublayer(attribute, class_name,
                     {"hidden_dim": x.shape[-1], "intermediate_dim": intermediate,
                      "num_experts": config["num_experts"], "top_k": config["top_k"],
                      "norm_top_k_prob": renormalize},
                     module=f"keras_hub.src.models.{module}")
    return e.op("Add", e.call(moe, e.call(norm, x)[0])[0], x, label="feedforward_residual")


def _moe_weights(node):
    """The router's kernel (hidden, experts) and the experts' stacked kernels: gate and
    up (experts, hidden, intermediate), Mixtral's stored apart, Qwen 3's as one
    (experts, hidden, 2 intermediate), gate first; output (experts, intermediate, hidden)."""
    config = node.config
    hidden, experts, size = config["hidden_dim"], config["num_experts"], config[
        "intermediate_dim"]
    router = WeightSpec("router", "sparse_feedforward_gate_dense/vars/0", (hidden, experts))
    if node.class_name == "MixtralSparseMoeBlock":
        return [router, WeightSpec("gate", "expert_bank/vars/0", (experts, hidden, size)),
                WeightSpec("up", "expert_bank/vars/1", (experts, hidden, size)),
                WeightSpec("output", "expert_bank/vars/2", (experts, size, hidden))]
    return [router, WeightSpec("gate_up", "expert_bank/vars/0", (experts, hidden, 2 * size)),
            WeightSpec("output", "expert_bank/vars/1", (experts, size, hidden))]


# the sparse mixture-of-experts blocks: called on the normalized hidden states only (the
# mask they take feeds the training loss); their second output, the router logits, is
# not modelled (the decoders drop it)
hub_kind("MixtralSparseMoeBlock", "Qwen3SparseMoeBlock",
         signature=("hidden_states", "attention_mask", "training"), weights=_moe_weights,
         output_mask=no_mask)(lambda node: [(first_input(node).shape, compute_dtype(node))])
gqa_decoder_kind("MixtralTransformerDecoder", _expand_mixtral_decoder)
gqa_decoder_kind("Qwen3MoeTransformerDecoder", _expand_qwen3_moe_decoder)


# ---------------------------------------------------------------------- Qwen 3.5

QWEN3_5 = "keras_hub.src.models.qwen3_5."


def _one_plus(scale):
    return np.float32(1) + np.asarray(scale, np.float32)


def _expand_qwen3_5_norm(node, e) -> list:
    """Qwen3_5LayerNorm: x * rsqrt(mean(x², last axis) + epsilon) * (1 + scale), i.e.
    Keras' RMSNormalization reading 1 + scale (in float32, as keras_hub adds it)."""
    own = node.layer.weights
    weights = None
    if own is not None:
        name = "vars/0" if own.layout == "saving_lib" else "scale"
        weights = e.derived_weights(own.layout, {name: (own, name, _one_plus)})
    norm = e.sublayer("one_plus_scale", "RMSNormalization",
                      {"epsilon": e.config.get("epsilon", 1e-6), "axis": -1}, weights=weights)
    return e.call(norm, node.input("inputs"))


hub_kind("Qwen3_5LayerNorm", output_mask=no_mask, expand=_expand_qwen3_5_norm)(
    lambda node: [(first_input(node).shape, compute_dtype(node))])


def _delta_net_weights(node):
    """in_proj_qkv / _z / _b / _a and out_proj kernels, the causal conv kernel (channels,
    kernel size), dt_bias and A_log per value head, the gated norm's scale."""
    config, hidden = node.config, first_input(node).shape[-1]
    heads = config["linear_num_value_heads"]
    key_dim = config["linear_num_key_heads"] * config["linear_key_head_dim"]
    value_dim = heads * config["linear_value_head_dim"]
    channels = 2 * key_dim + value_dim
    return [WeightSpec("in_proj_qkv", "in_proj_qkv/vars/0", (hidden, channels)),
            WeightSpec("in_proj_z", "in_proj_z/vars/0", (hidden, value_dim)),
            WeightSpec("in_proj_b", "in_proj_b/vars/0", (hidden, heads)),
            WeightSpec("in_proj_a", "in_proj_a/vars/0", (hidden, heads)),
            WeightSpec("conv1d_kernel", "vars/0",
                       (channels, config.get("linear_conv_kernel_dim", 4))),
            WeightSpec("dt_bias", "vars/1", (heads,)), WeightSpec("A_log", "vars/2", (heads,)),
            WeightSpec("norm", "norm/vars/0", (config["linear_value_head_dim"],)),
            WeightSpec("out_proj", "out_proj/vars/0", (value_dim, hidden))]


# Qwen3_5GatedDeltaNet: gated delta-rule linear attention, lowered by hand
# (emit/keras_hub.py) with the recurrence as an ONNX Scan over the sequence.
hub_kind("Qwen3_5GatedDeltaNet",
         signature=("hidden_states", "attention_mask", "cache", "cache_update_index",
                    "training"),
         weights=_delta_net_weights, output_mask=no_mask)(
    lambda node: [(first_input(node).shape, compute_dtype(node))])


def _slice(start=None, stop=None) -> dict:
    return {"class_name": "__slice__", "config": {"start": start, "stop": stop, "step": None}}


_ALL = _slice()  # ``:`` in a GetItem


def _qwen3_5_norm(e, attribute: str, prefixes=None):
    return e.sublayer(attribute, "Qwen3_5LayerNorm",
                      {"epsilon": e.config.get("layer_norm_epsilon", 1e-6),
                       "name": attribute.rsplit("/", 1)[-1].lstrip("_")},
                      module=QWEN3_5 + "qwen3_5_layers", prefixes=prefixes)


def _expand_qwen3_5_decoder(node, e) -> list:
    """KerasHub's Qwen3_5TransformerDecoder.call without a cache: h = x +
    mixer(input_layernorm(x)), the mixer Qwen3_5GatedDeltaNet on the padding mask
    (``layer_type`` linear_attention) or ``_qwen3_5_attention`` (full_attention); then
    ``_swiglu_block`` after post_attention_layernorm. Its norms are Qwen3_5LayerNorms."""
    config = e.config
    if node.input("self_attention_cache") is not None or node.input("position_ids") is not None:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: {node.class_name} "
                                    f"called with a cache or position_ids (M-RoPE) is not "
                                    f"supported yet")
    x = node.input("decoder_sequence")
    h = e.call(_qwen3_5_norm(e, "_input_layernorm"), x)[0]
    if config["layer_type"] == "linear_attention":
        keys = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
                "linear_value_head_dim", "linear_conv_kernel_dim", "layer_norm_epsilon")
        mixer = e.sublayer("_linear_attn", "Qwen3_5GatedDeltaNet",
                           {"hidden_size": x.shape[-1], **{k: config[k] for k in keys}},
                           module=QWEN3_5 + "qwen3_5_gated_delta_net")
        h = e.call(mixer, h, attention_mask=node.input("decoder_padding_mask"))[0]
    else:
        h = _qwen3_5_attention(node, e, x, h)
    h = e.call(e.sublayer("_self_attention_dropout", "Dropout",
                          {"rate": config.get("dropout", 0)}), h)[0]
    x = e.op("Add", h, x, label="self_attention_residual")
    return [_swiglu_block(e, x, _qwen3_5_norm(e, "_post_attention_layernorm"))]


def _qwen3_5_attention(node, e, x, h):
    """Qwen3_5Attention on h (x the block's input, for the masks): the query projection
    gives each head its query and an output gate; query and key Qwen3_5LayerNorm-ed per
    head, the rotary embedding on their first int(head_dim * partial_rotary_factor)
    features only, ``_attention_core`` on the padding AND causal (sliding_window_size)
    mask, times sigmoid(gate), attention_output EinsumDense."""
    config = e.config
    heads, groups = config["num_query_heads"], config["num_key_value_heads"]
    head_dim, hidden = config["head_dim"], x.shape[-1]
    rotary = int(head_dim * config.get("partial_rotary_factor", 0.25))
    padding = _decoder_padding_mask(node, e, x)
    core = _attention_core(e, heads, groups, head_dim,
                           config.get("sliding_window_size") or None)
    rope = _rotary_sublayer(e, config.get("rope_scaling_factor", 1.0))
    last = [_ALL, _ALL, _ALL]

    def head_norm(role):
        return _qwen3_5_norm(e, f"_self_attention_layer/_{role}_norm",
                             (f"self_attention/{role}_norm/",
                              f"self_attention_layer/{role}_norm/"))

    def rotate(t, role):
        if rotary == head_dim:
            return e.call(rope, t)[0]
        rotated = e.call(rope, e.op("GetItem", t, last + [_slice(None, rotary)],
                                    label=f"{role}_rotary_part"))[0]
        passed = e.op("GetItem", t, last + [_slice(rotary, None)], label=f"{role}_pass_part")
        return e.op("Concatenate", [rotated, passed], axis=-1, label=f"{role}_rotated")

    gated_query = e.call(_projection(e, "_query_dense", "bqm,muh->bquh",
                                     [None, heads, 2 * head_dim]), h)[0]
    query = e.op("GetItem", gated_query, last + [_slice(None, head_dim)], label="query")
    gate = e.op("GetItem", gated_query, last + [_slice(head_dim, None)], label="output_gate")
    query = rotate(e.call(head_norm("query"), query)[0], "query")
    key = e.call(_projection(e, "_key_dense", "bkm,mvh->bkvh", [None, groups, head_dim]), h)[0]
    key = rotate(e.call(head_norm("key"), key)[0], "key")
    value = e.call(_projection(e, "_value_dense", "bkm,mvh->bkvh", [None, groups, head_dim]),
                   h)[0]
    attended = e.call(core, query, key, value, attention_mask=padding,
                      use_causal_mask=True)[0]
    attended = e.op("Multiply", attended, e.op("Sigmoid", gate, label="output_gate_sigmoid"),
                    label="gated_attention")
    return e.call(_projection(e, "_output_dense", "bquh,uhm->bqm", [None, hidden]),
                  attended)[0]


gqa_decoder_kind("Qwen3_5TransformerDecoder", _expand_qwen3_5_decoder, position_ids=True)


# ---------------------------------------------------------------------- Gemma


# the module of the RMSNormalization each Gemma decoder block builds
GEMMA_BLOCK_NORMS = {"GemmaDecoderBlock": "keras_hub.src.models.gemma.rms_normalization",
                     "Gemma3DecoderBlock": "keras_hub.src.models.gemma3.gemma3_layers"}


def _gemma_norm(node, e, attribute: str, epsilon: float, prefixes=None):
    return e.sublayer(attribute, "RMSNormalization", {"epsilon": epsilon},
                      module=GEMMA_BLOCK_NORMS[node.class_name], prefixes=prefixes)


def _expand_gemma_decoder(node, e) -> list:
    """KerasHub's GemmaDecoderBlock.call without a cache: pre-norm (Gemma's RMS norms)
    CachedGemmaAttention on the merged padding AND causal mask (see ``_gemma_attention``),
    its output normed with ``use_post_attention_norm``, residual; then the pre-norm GeGLU
    feed-forward ffw_linear(gelu_tanh(ffw_gating(h)) * ffw_gating_2(h)), normed with
    ``use_post_ffw_norm``, residual. Dropout is the identity at inference. The gates are
    intermediate_dim / 2 wide (Gemma 3's block: / ``gate_dim_reduction``)."""
    config = e.config
    if node.input("cache") is not None:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: {node.class_name} "
                                    f"called with a cache is not supported yet")
    x = node.input("x")
    epsilon = config.get("layer_norm_epsilon", 1e-6)

    def norm(attribute):
        return _gemma_norm(node, e, attribute, epsilon)

    def ffw(attribute, name, equation, units):
        return e.sublayer(attribute, "EinsumDense", {"equation": equation,
                                                     "output_shape": [None, units],
                                                     "bias_axes": None, "name": name},
                          prefixes=(f"{name}/", f"{attribute}/"))

    h = e.call(norm("pre_attention_norm"), x)[0]
    attended = _gemma_attention(node, e, h)
    if config.get("use_post_attention_norm"):
        attended = e.call(norm("post_attention_norm"), attended)[0]
    x = e.op("Add", x, attended, label="attention_residual")
    h = e.call(norm("pre_ffw_norm"), x)[0]
    half = config["intermediate_dim"] // config.get("gate_dim_reduction", 2)
    gate = e.call(ffw("gating_ffw", "ffw_gating", "btd,df->btf", half), h)[0]
    linear = e.call(ffw("gating_ffw_2", "ffw_gating_2", "btd,df->btf", half), h)[0]
    gated = e.op("Multiply", e.op("Gelu", gate, approximate=True, label="gate_activation"),
                 linear, label="gated")
    h = e.call(ffw("ffw_linear", "ffw_linear", "btf,fd->btd", x.shape[-1]), gated)[0]
    if config.get("use_post_ffw_norm"):
        h = e.call(norm("post_ffw_norm"), h)[0]
    return [e.op("Add", h, x, label="feedforward_residual")]


def _gemma_attention(node, e, h):
    """CachedGemmaAttention without a cache (its non-fused path): EinsumDense query / key /
    value (Gemma 3: query and key RMS-normalized per head with ``use_query_key_norm``,
    epsilon 1e-6, as its block builds them), rotary embedding (max_wavelength 10000;
    Gemma 3: ``rope_wavelength``, ``rope_scaling_factor``) of query and key, then
    ``_attention_core``: q·k / sqrt(head_dim) (GemmaDecoderBlock always passes
    query_head_dim_normalize=True), each key/value head shared by heads / kv_heads query
    heads, soft-capped with ``logit_soft_cap``, softmax on the padding AND causal mask (AND
    |i - j| < sliding_window_size with ``use_sliding_window_attention``) as Keras' Softmax
    layer masks it: zero where a whole row is masked, so Gemma's wiping of the query
    positions that attend no key changes nothing; attention_output EinsumDense.
    Gemma's re-interleaving of the rotated halves permutes the features of query and key
    alike, which leaves every q·k, so the graph leaves it out."""
    config = e.config
    heads, groups = config["num_query_heads"], config["num_key_value_heads"]
    head_dim = config["head_dim"]

    padding = _merged_attention_mask(e, h, node.input("padding_mask"), None,
                                     "attention_mask")
    window = (config.get("sliding_window_size", 4096)
              if config.get("use_sliding_window_attention") else None)
    core = _attention_core(e, heads, groups, head_dim, window, attention="attention",
                           soft_cap=config.get("logit_soft_cap"))
    rope = e.sublayer("attention/rope_layer", "RotaryEmbedding",
                      {"max_wavelength": config.get("rope_wavelength", 10000.0),
                       "scaling_factor": config.get("rope_scaling_factor", 1.0),
                       "sequence_axis": 1, "feature_axis": -1, "name": "rotary_embedding"},
                      module="keras_hub.src.layers.modeling.rotary_embedding")
    query, key, value = _attention_qkv(e, h, heads, groups, head_dim, "btd,ndh->btnh",
                                       "bsd,kdh->bskh")
    if config.get("use_query_key_norm"):
        query, key = (e.call(_gemma_norm(node, e, f"attention/{role}_norm", 1e-6,
                                         (f"attention/{role}_norm/",) * 2), projected)[0]
                      for role, projected in (("query", query), ("key", key)))
    attended = e.call(core, e.call(rope, query)[0], e.call(rope, key)[0], value,
                      attention_mask=padding, use_causal_mask=True)[0]
    return e.call(_attention_projection(e, "output_dense", "attention_output",
                                        "btnh,nhd->btd", [None, h.shape[-1]]), attended)[0]


hub_kind("GemmaDecoderBlock", signature=("x", "padding_mask", "cache", "cache_update_index"),
         output_mask=lambda node: node.input("x").mask, expand=_expand_gemma_decoder)(
    lambda node: [(node.input("x").shape, compute_dtype(node))])


# ---------------------------------------------------------------------- Gemma 3


def _expand_gemma3_decoder(node, e) -> list:
    """KerasHub's Gemma3DecoderBlock.call without a cache or images: GemmaDecoderBlock's
    (see ``_expand_gemma_decoder``) with CachedGemma3Attention's options (query / key
    norms, ``rope_wavelength``, ``rope_scaling_factor``) and ``gate_dim_reduction``.
    Bidirectional attention (EmbeddingGemma) and a ``vision_mask`` are refused."""
    if node.input("vision_mask") is not None or e.config.get("use_bidirectional_attention"):
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: Gemma3DecoderBlock "
                                    f"with a vision_mask or bidirectional attention is not "
                                    f"supported yet")
    return _expand_gemma_decoder(node, e)


hub_kind("Gemma3DecoderBlock",
         signature=("x", "padding_mask", "vision_mask", "cache", "cache_update_index",
                    "cache_update_mask"),
         output_mask=lambda node: node.input("x").mask, expand=_expand_gemma3_decoder)(
    lambda node: [(node.input("x").shape, compute_dtype(node))])


# ---------------------------------------------------------------------- ViT


def _patching_weights(node):
    """patch_embedding kernel (patch h, patch w, channels, hidden) and bias (with
    ``use_patch_bias``), position_embedding (num_positions, hidden), class_token
    (1, 1, hidden) with ``use_class_token``."""
    config = node.config
    hidden, (height, width) = config["hidden_dim"], config["patch_size"]
    specs = [WeightSpec("patch_embedding/kernel", "patch_embedding/vars/0",
                        (height, width, config["num_channels"], hidden))]
    if config.get("use_patch_bias", True):
        specs.append(WeightSpec("patch_embedding/bias", "patch_embedding/vars/1", (hidden,)))
    specs.append(WeightSpec("position_embedding/embeddings", "position_embedding/vars/0",
                            (config["num_positions"], hidden)))
    if config.get("use_class_token", True):
        specs.append(WeightSpec("class_token", "vars/0", (1, 1, hidden)))
    return specs


@hub_kind("ViTPatchingAndEmbedding", weights=_patching_weights, output_mask=no_mask)
def vit_patching_and_embedding(node):
    """patches = Conv2D(hidden, kernel = strides = patch_size)(images) flattened to
    (B, patches, hidden) row by row; the class token prepended; plus the position table."""
    return [((first_input(node).shape[0], node.config["num_positions"],
              node.config["hidden_dim"]), compute_dtype(node))]


def _vit_style_encoder(node, e, block_class: str, module: str, saved: str,
                       block_keys: tuple) -> list:
    """``num_layers`` blocks ``transformer_block_<i+1>`` of ``block_class`` (their
    ``block_keys`` of the encoder's config; weights saved under ``saved[_i]``), then
    LayerNormalization ``ln``: ViT's and DeiT's encoders."""
    config = e.config
    block = {key: config[key] for key in block_keys}
    x = first_input(node)
    for i in range(config["num_layers"]):
        name = f"transformer_block_{i + 1}"
        layer = e.sublayer(name, block_class, dict(block, name=name), module=module,
                           prefixes=(f"{name}/", f"{saved}{f'_{i}' if i else ''}/"))
        x = e.call(layer, x)[0]
    norm = e.sublayer("layer_norm", "LayerNormalization",
                      {"name": "ln", "axis": -1, "epsilon": config["layer_norm_epsilon"]})
    return e.call(norm, x)


def _vit_style_block(node, e, mlp_dim: int, mlp_bias: bool, dense_paths: tuple) -> list:
    """x = inputs + MultiHeadAttention(ln_1(inputs)) (self-attention, no mask, key_dim
    hidden / heads, biased with ``use_mha_bias``); then x + Dense(hidden)(Dense(mlp_dim,
    exact gelu)(ln_2(x))), the two Dense at ``dense_paths`` (biased with ``mlp_bias``).
    Dropout is the identity at inference."""
    config = e.config
    heads, hidden = config["num_heads"], config["hidden_dim"]
    epsilon = config["layer_norm_epsilon"]

    def norm(attribute, name):
        return e.sublayer(attribute, "LayerNormalization",
                          {"name": name, "axis": -1, "epsilon": epsilon})

    def dense(path, units, activation):
        return e.sublayer(path, "Dense", {"name": path.rsplit("/", 1)[-1], "units": units,
                                          "activation": activation, "use_bias": mlp_bias},
                          prefixes=(f"{path}/", f"{path}/"))

    attention = e.sublayer("mha", "MultiHeadAttention",
                           {"num_heads": heads, "key_dim": hidden // heads,
                            "use_bias": config["use_mha_bias"],
                            "dropout": config["attention_dropout"]})
    inputs = first_input(node)
    h = e.call(norm("layer_norm_1", "ln_1"), inputs)[0]
    x = e.op("Add", e.call(attention, query=h, value=h)[0], inputs, label="attention_residual")
    h = e.call(norm("layer_norm_2", "ln_2"), x)[0]
    h = e.call(dense(dense_paths[1], hidden, None),
               e.call(dense(dense_paths[0], mlp_dim, "gelu"), h)[0])[0]
    return [e.op("Add", x, h, label="mlp_residual")]


def _expand_vit_encoder(node, e) -> list:
    """KerasHub's ViTEncoder: ``num_layers`` ViTEncoderBlocks (weights under
    ``encoder_layers/vi_t_encoder_block[_i]``), then LayerNormalization ``ln``."""
    return _vit_style_encoder(node, e, "ViTEncoderBlock", "keras_hub.src.models.vit.vit_layers",
                              "encoder_layers/vi_t_encoder_block",
                              ("num_heads", "hidden_dim", "mlp_dim", "use_mha_bias",
                               "use_mlp_bias", "dropout_rate", "attention_dropout",
                               "layer_norm_epsilon"))


def _expand_vit_encoder_block(node, e) -> list:
    """KerasHub's ViTEncoderBlock: ``_vit_style_block`` with its MLP ``mlp/dense_1``,
    ``mlp/dense_2`` (biased with ``use_mlp_bias``)."""
    return _vit_style_block(node, e, e.config["mlp_dim"], e.config["use_mlp_bias"],
                            ("mlp/dense_1", "mlp/dense_2"))


for _name, _expand in (("ViTEncoder", _expand_vit_encoder),
                       ("ViTEncoderBlock", _expand_vit_encoder_block)):
    hub_kind(_name, output_mask=no_mask, expand=_expand)(
        lambda node: [(first_input(node).shape, compute_dtype(node))])


# ---------------------------------------------------------------------- DeiT

DEIT_LAYERS = "keras_hub.src.models.deit.deit_layers"


def _deit_embedding_weights(node):
    """patch_embedding kernel (patch h, patch w, channels, hidden) and bias; the mask
    token (1, 1, hidden) with ``use_mask_token``, the class and distillation tokens
    (1, 1, hidden), the position table (1, num_positions, hidden), in build order."""
    config = node.config
    hidden, (height, width) = config["hidden_dim"], config["patch_size"]
    tokens = (["mask_token"] if config.get("use_mask_token") else []) + [
        "class_token", "distillation_token"]
    specs = [WeightSpec("patch_embedding/kernel", "patch_embedding/vars/0",
                        (height, width, config["num_channels"], hidden)),
             WeightSpec("patch_embedding/bias", "patch_embedding/vars/1", (hidden,))]
    specs += [WeightSpec(token, f"vars/{i}", (1, 1, hidden)) for i, token in enumerate(tokens)]
    return specs + [WeightSpec("position_embedding", f"vars/{len(tokens)}",
                               (1, config["num_positions"], hidden))]


@hub_kind("DeiTEmbeddings", signature=("inputs", "bool_masked_pos"),
          weights=_deit_embedding_weights, output_mask=no_mask)
def deit_embeddings(node):
    """patches = Conv2D(hidden, kernel = strides = patch_size)(images) flattened row by
    row; the class and distillation tokens prepended; plus the position table."""
    return [((first_input(node).shape[0], node.config["num_positions"],
              node.config["hidden_dim"]), compute_dtype(node))]


def _expand_deit_encoder(node, e) -> list:
    """KerasHub's DeiTEncoder without masks: ``num_layers`` DeiTEncoderBlocks (weights
    under ``encoder_layers/dei_t_encoder_block[_i]``), then LayerNormalization ``ln``;
    its other outputs (hidden states, scores) are empty."""
    return _vit_style_encoder(node, e, "DeiTEncoderBlock", DEIT_LAYERS,
                              "encoder_layers/dei_t_encoder_block",
                              ("num_heads", "hidden_dim", "intermediate_dim", "use_mha_bias",
                               "dropout_rate", "attention_dropout", "layer_norm_epsilon"))


def _expand_deit_encoder_block(node, e) -> list:
    """KerasHub's DeiTEncoderBlock without a mask: ``_vit_style_block`` with its MLP
    DeiTIntermediate ``mlp/dense`` (intermediate_dim, exact gelu) and DeiTOutput
    ``output_layer/dense``, both biased."""
    return _vit_style_block(node, e, e.config["intermediate_dim"], True,
                            ("mlp/dense", "output_layer/dense"))


hub_kind("DeiTEncoder", signature=("hidden_states", "attention_masks",
                                   "output_hidden_states", "return_attention_scores"),
         output_mask=no_mask, expand=_expand_deit_encoder)(
    lambda node: [(first_input(node).shape, compute_dtype(node))])
hub_kind("DeiTEncoderBlock", signature=("hidden_states", "attention_mask",
                                        "return_attention_scores"),
         output_mask=no_mask, expand=_expand_deit_encoder_block)(
    lambda node: [(first_input(node).shape, compute_dtype(node))])


# ---------------------------------------------------------------------- DINOV2

DINOV2_LAYERS = "keras_hub.src.models.dinov2.dinov2_layers"


def _dinov2_embedding_weights(node):
    """patch_embeddings/projection kernel (patch, patch, channels, hidden) and bias; then
    in build order the class token (1, 1, hidden), the mask token (1, hidden) with
    ``use_mask_token``, the register tokens (1, num_register_tokens, hidden) when there
    are any, the interpolated position table (1, patches + 1, hidden), then the
    pretraining one (1, pretraining patches + 1, hidden): Keras saves trainable variables
    before non-trainable ones, and only the pretraining table is not trainable."""
    config = node.config
    hidden, patch = config["hidden_dim"], config["patch_size"]
    registers = config.get("num_register_tokens", 0)
    (height, width), (pre_height, pre_width) = (config["image_shape"],
                                                config["position_embedding_shape"])
    own = [("cls_token", (1, 1, hidden))]
    if config.get("use_mask_token", True):
        own.append(("mask_token", (1, hidden)))
    if registers:
        own.append(("register_tokens", (1, registers, hidden)))
    own += [("interpolated_position_embeddings",
             (1, (height // patch) * (width // patch) + 1, hidden)),
            ("position_embeddings", (1, (pre_height // patch) * (pre_width // patch) + 1,
                                     hidden))]
    return [WeightSpec("projection/kernel", "patch_embeddings/projection/vars/0",
                       (patch, patch, first_input(node).shape[-1], hidden)),
            WeightSpec("projection/bias", "patch_embeddings/projection/vars/1", (hidden,))] + [
        WeightSpec(name, f"vars/{i}", shape) for i, (name, shape) in enumerate(own)]


@hub_kind("DINOV2Embedding", signature=("inputs", "masks"),
          weights=_dinov2_embedding_weights, output_mask=no_mask)
def dinov2_embedding(node):
    """patches = Conv2D(hidden, kernel = strides = patch_size)(images) flattened row by
    row; the class token prepended; plus the position table; the register tokens
    inserted after the class token."""
    config = node.config
    height, width = config["image_shape"]
    patches = (height // config["patch_size"]) * (width // config["patch_size"])
    return [((first_input(node).shape[0], 1 + config.get("num_register_tokens", 0) + patches,
              config["hidden_dim"]), compute_dtype(node))]


@hub_kind("DINOV2LayerScale",
          weights=lambda node: [WeightSpec("lambda1", "vars/0", (node.config["hidden_dim"],))],
          output_mask=no_mask)
def dinov2_layer_scale(node):
    """x * lambda1 (hidden,)."""
    return [(first_input(node).shape, compute_dtype(node))]


def _expand_dinov2_encoder(node, e) -> list:
    """KerasHub's DINOV2Encoder: ``num_layers`` DINOV2Layers ``layers_<i>`` (weights
    under ``layers/dinov2_layer[_i]``); its second output (the per-stage outputs) is not
    a model output."""
    config = e.config
    block = {key: config[key] for key in ("hidden_dim", "num_heads", "intermediate_dim",
                                          "layer_scale_init_value", "use_swiglu_ffn",
                                          "dropout_rate", "drop_path_rate")}
    x = first_input(node)
    for i in range(config["num_layers"]):
        name = f"layers_{i}"
        layer = e.sublayer(f"layers_{i}", "DINOV2Layer", dict(block, name=name),
                           module=DINOV2_LAYERS,
                           prefixes=(f"{name}/",
                                     "layers/dinov2_layer" + (f"_{i}/" if i else "/")))
        x = e.call(layer, x)[0]
    return [x]


def _dinov2_swiglu(e, h):
    """DINOV2SwiGLUFFN: weights_out(silu(x1) * x2), x1, x2 the halves of weights_in(h)
    (2 d units, d = (int(intermediate_dim * 2 / 3) + 7) // 8 * 8): two Dense reading the
    halves of weights_in's kernel and bias."""
    d = (int(e.config["intermediate_dim"] * 2 / 3) + 7) // 8 * 8
    own = e.node.layer.weights

    def half(index):
        pieces = slice(index * d, (index + 1) * d)
        weights = None if own is None else e.derived_weights(own.layout, {
            "vars/0": (own, "mlp/weights_in/vars/0", lambda kernel: kernel[:, pieces]),
            "vars/1": (own, "mlp/weights_in/vars/1", lambda bias: bias[pieces])})
        return e.sublayer(f"mlp/weights_in/half_{index}", "Dense",
                          {"name": f"weights_in_{index}", "units": d}, weights=weights)

    gate = e.op("Silu", e.call(half(0), h)[0], label="mlp/gate")
    gated = e.op("Multiply", gate, e.call(half(1), h)[0], label="mlp/gated")
    out = e.sublayer("mlp/weights_out", "Dense", {"name": "weights_out",
                                                   "units": e.config["hidden_dim"]},
                     prefixes=("mlp/weights_out/", "mlp/weights_out/"))
    return e.call(out, gated)[0]


def _expand_dinov2_layer(node, e) -> list:
    """KerasHub's DINOV2Layer: h = x + layer_scale1(attention(norm1(x))) (self-attention,
    biased, key_dim hidden / heads); h + layer_scale2(mlp(norm2(h))), mlp DINOV2MLP
    (fc2(fc1(.)), fc1 exact gelu) or, with ``use_swiglu_ffn``, ``_dinov2_swiglu``.
    Norms LayerNormalization(1e-6); dropout and drop path are the identity at
    inference."""
    config = e.config
    heads, hidden = config["num_heads"], config["hidden_dim"]

    def sublayer(path, class_name, layer_config, module="keras.layers"):
        return e.sublayer(path, class_name,
                          dict(layer_config, name=path.rsplit("/", 1)[-1]), module=module,
                          prefixes=(f"{path}/", f"{path}/"))

    def norm(name):
        return sublayer(name, "LayerNormalization", {"axis": -1, "epsilon": 1e-6})

    def scale(name):
        return sublayer(name, "DINOV2LayerScale", {"hidden_dim": hidden}, DINOV2_LAYERS)

    attention = sublayer("attention/attention", "MultiHeadAttention",
                         {"num_heads": heads, "key_dim": hidden // heads,
                          "dropout": config["dropout_rate"]})
    x = first_input(node)
    h = e.call(norm("norm1"), x)[0]
    h = e.call(scale("layer_scale1"), e.call(attention, query=h, value=h, key=h)[0])[0]
    x = e.op("Add", h, x, label="attention_residual")
    h = e.call(norm("norm2"), x)[0]
    if config["use_swiglu_ffn"]:
        h = _dinov2_swiglu(e, h)
    else:
        h = e.call(sublayer("mlp/fc1", "Dense", {"units": config["intermediate_dim"],
                                                  "activation": "gelu"}), h)[0]
        h = e.call(sublayer("mlp/fc2", "Dense", {"units": hidden}), h)[0]
    h = e.call(scale("layer_scale2"), h)[0]
    return [e.op("Add", h, x, label="mlp_residual")]


for _name, _expand in (("DINOV2Encoder", _expand_dinov2_encoder),
                       ("DINOV2Layer", _expand_dinov2_layer)):
    hub_kind(_name, output_mask=no_mask, expand=_expand)(
        lambda node: [(first_input(node).shape, compute_dtype(node))])


# ---------------------------------------------------------------------- Llama 3.1 rotary

# LlamaRotaryEmbedding's Llama 3.1 arguments (its decoder's and backbone's, prefixed rope_)
LLAMA3_ROPE_KEYS = ("frequency_adjustment_factor", "low_freq_factor", "high_freq_factor",
                    "pretraining_sequence_length")


@hub_kind("LlamaRotaryEmbedding", signature=("inputs", "start_index", "positions"),
          output_mask=no_mask)
def llama_rotary_embedding(node):
    """RotaryEmbedding with θ_j = 1 / max_wavelength ** (2j / d), adjusted by band with
    Llama 3.1's ``frequency_adjustment_factor``, ``low_freq_factor``, ``high_freq_factor``
    and ``pretraining_sequence_length`` (see ``emit.keras_hub.llama_inverse_frequencies``).
    """
    return [(first_input(node).shape, compute_dtype(node))]


# ---------------------------------------------------------------------- Phi-3

PHI3 = "keras_hub.src.models.phi3."
PHI3_ROPE_TYPES = (None, "su")


@hub_kind("Phi3SuScaledRotaryEmbedding", signature=("inputs", "start_index", "positions"),
          output_mask=no_mask)
def phi3_su_scaled_rotary_embedding(node):
    """RotaryEmbedding with θ divided by the long or the short factors (the sequence
    longer than ``pretraining_sequence_length`` or not), cos and sin scaled when
    ``max_sequence_length`` exceeds it."""
    return [(first_input(node).shape, compute_dtype(node))]


def _phi3_rotary(e):
    """Phi3Attention's rotary embedding: RotaryEmbedding(rope_max_wavelength) without
    ``rope_scaling_type``, Phi3SuScaledRotaryEmbedding with "su"."""
    config = e.config
    axes = {"sequence_axis": 1, "feature_axis": -1}
    if config.get("rope_scaling_type") is None:
        return e.sublayer("attention/rotary_embedding_layer", "RotaryEmbedding",
                          {"max_wavelength": config.get("rope_max_wavelength", 10000),
                           "scaling_factor": 1.0, "name": "rotary_embedding", **axes},
                          module="keras_hub.src.layers.modeling.rotary_embedding")
    return e.sublayer("attention/rotary_embedding_layer", "Phi3SuScaledRotaryEmbedding",
                      {"max_wavelength": config.get("rope_max_wavelength", 10000),
                       "max_sequence_length": config.get("max_sequence_length", 4096),
                       "pretraining_sequence_length":
                           config.get("pretraining_sequence_length", 4096),
                       "inverese_freq_short_factor": config["rope_scaling_short_factor"],
                       "inverese_freq_long_factor": config["rope_scaling_long_factor"],
                       "name": "phi3_su_scaled_rotary_embedding", **axes},
                      module=PHI3 + "phi3_rotary_embedding")


def _expand_phi3_decoder(node, e) -> list:
    """KerasHub's Phi3Decoder.call without a cache: pre-norm (pre_attention_layernorm, an
    RMS norm) Phi3Attention (EinsumDense query / key / value, ``_phi3_rotary`` of query and
    key, ``_attention_core`` on the merged padding mask, causal, attention_output
    EinsumDense), residual; then ``_swiglu_block`` after post_attention_layernorm. Its
    dropouts are the identity at inference."""
    config = e.config
    if node.input("attention_cache") is not None:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: Phi3Decoder called "
                                    f"with a cache is not supported yet")
    for key, allowed in (("rope_scaling_type", PHI3_ROPE_TYPES), ("activation", ("silu",))):
        if config.get(key, allowed[0]) not in allowed:
            raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: Phi3Decoder "
                                        f"with {key} {config[key]!r} is not supported yet")
    x = node.input("decoder_sequence")
    hidden = x.shape[-1]
    heads, groups = config["num_query_heads"], config["num_key_value_heads"]
    head_dim = hidden // heads
    epsilon = config.get("layer_norm_epsilon", 1e-5)

    def norm(attribute):
        return e.sublayer(attribute, "RMSNormalization", {"epsilon": epsilon, "axis": -1})

    padding = _decoder_padding_mask(node, e, x)
    core = _attention_core(e, heads, groups, head_dim, None, attention="attention")
    rope = _phi3_rotary(e)
    h = e.call(norm("pre_attention_layernorm"), x)[0]
    query, key, value = _attention_qkv(e, h, heads, groups, head_dim, "bqm,muh->bquh",
                                       "bkm,mvh->bkvh")
    query, key = e.call(rope, query)[0], e.call(rope, key)[0]
    attended = e.call(core, query, key, value, attention_mask=padding,
                      use_causal_mask=True)[0]
    attended = e.call(_attention_projection(e, "output_dense", "attention_output",
                                            "bquh,uhm->bqm", [None, hidden]), attended)[0]
    x = e.op("Add", attended, x, label="attention_residual")
    return [_swiglu_block(e, x, norm("post_attention_layernorm"))]


hub_kind("Phi3Decoder",
         signature=("decoder_sequence", "decoder_padding_mask", "decoder_attention_mask",
                    "attention_cache", "attention_cache_update_index"),
         output_mask=lambda node: node.input("decoder_sequence").mask,
         expand=_expand_phi3_decoder)(
    lambda node: [(node.input("decoder_sequence").shape, compute_dtype(node))])


# ---------------------------------------------------------------------- DeBERTa-v3

DEBERTA_V3 = "keras_hub.src.models.deberta_v3."


def _relative_embedding_weights(node):
    """The table (2 bucket_size, hidden_dim) and its LayerNormalization's gamma, beta."""
    config = node.config
    hidden = config["hidden_dim"]
    return [WeightSpec("rel_embedding", "vars/0", (2 * config["bucket_size"], hidden)),
            WeightSpec("layer_norm/gamma", "layer_norm/vars/0", (hidden,)),
            WeightSpec("layer_norm/beta", "layer_norm/vars/1", (hidden,))]


@hub_kind("RelativeEmbedding", weights=_relative_embedding_weights, output_mask=no_mask)
def relative_embedding(node):
    """LayerNormalization(layer_norm_epsilon) of the (2 bucket_size, hidden_dim) table,
    repeated over the input's batch: (B, 2 bucket_size, hidden_dim)."""
    config = node.config
    return [((first_input(node).shape[0], 2 * config["bucket_size"], config["hidden_dim"]),
             compute_dtype(node))]


def _disentangled_attention_weights(node):
    """query / key / value EinsumDense kernels (hidden, heads, head size) and biases
    (heads, head size); the attention_output kernel (hidden, hidden) and bias."""
    config = node.config
    heads, hidden = config["num_heads"], config["hidden_dim"]
    specs = []
    for name in ("query", "key", "value"):
        specs += [WeightSpec(f"{name}/kernel", f"{name}_dense/vars/0",
                             (hidden, heads, hidden // heads)),
                  WeightSpec(f"{name}/bias", f"{name}_dense/vars/1", (heads, hidden // heads))]
    return specs + [WeightSpec("attention_output/kernel", "output_dense/vars/0",
                               (hidden, hidden)),
                    WeightSpec("attention_output/bias", "output_dense/vars/1", (hidden,))]


# DisentangledSelfAttention: content-to-content, content-to-position and
# position-to-content attention over relative-position buckets, lowered by hand
# (emit/keras_hub.py).
hub_kind("DisentangledSelfAttention",
         signature=("inputs", "rel_embeddings", "attention_mask", "return_attention_scores",
                    "training"),
         weights=_disentangled_attention_weights, output_mask=no_mask)(
    lambda node: [(first_input(node).shape[:-1] + (node.config["hidden_dim"],),
                   compute_dtype(node))])


def _expand_disentangled_encoder(node, e) -> list:
    """KerasHub's DisentangledAttentionEncoder.call: DisentangledSelfAttention on the
    inputs, the relative embeddings and the merged padding / attention mask, dropout,
    residual, LayerNormalization; then the feed-forward block (Dense(intermediate_dim,
    activation), Dense(hidden), dropout, residual, norm): TransformerEncoder's post-norm
    blocks around another attention."""
    config, inputs = e.config, node.input("inputs")
    hidden = inputs.shape[-1]
    epsilon, dropout = config.get("layer_norm_epsilon", 1e-5), config.get("dropout", 0)

    def norm(attribute):
        return e.sublayer(attribute, "LayerNormalization", {"epsilon": epsilon, "axis": -1})

    def drop(attribute):
        return e.sublayer(attribute, "Dropout", {"rate": dropout})

    attention = e.sublayer("_self_attention_layer", "DisentangledSelfAttention",
                           {"num_heads": config["num_heads"], "hidden_dim": hidden,
                            "max_position_embeddings": config.get("max_position_embeddings",
                                                                  512),
                            "bucket_size": config.get("bucket_size", 256),
                            "dropout": dropout},
                           module=DEBERTA_V3 + "disentangled_self_attention")
    layers = {"_self_attention_layer_norm": norm("_self_attention_layer_norm"),
              "_self_attention_dropout": drop("_self_attention_dropout"),
              "_feedforward_layer_norm": norm("_feedforward_layer_norm"),
              "_feedforward_intermediate_dense": e.sublayer(
                  "_feedforward_intermediate_dense", "Dense",
                  {"units": config["intermediate_dim"],
                   "activation": config.get("activation", "relu")}),
              "_feedforward_output_dense": e.sublayer("_feedforward_output_dense", "Dense",
                                                      {"units": hidden}),
              "_feedforward_dropout": drop("_feedforward_dropout")}
    mask = _merged_attention_mask(e, inputs, node.input("padding_mask"),
                                  node.input("attention_mask"), "self_attention_mask")

    def attend(h):
        return e.call(attention, h, rel_embeddings=node.input("rel_embeddings"),
                      attention_mask=mask)[0], None

    h = _residual_block(e, layers, "_self_attention", inputs, attend)[0]
    return [_feedforward(e, layers, h)]


hub_kind("DisentangledAttentionEncoder",
         signature=("inputs", "rel_embeddings", "padding_mask", "attention_mask"),
         output_mask=lambda node: node.input("inputs").mask,
         expand=_expand_disentangled_encoder)(
    lambda node: [(node.input("inputs").shape, compute_dtype(node))])
