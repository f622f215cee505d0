"""KerasHub (``keras_hub``, formerly ``keras_nlp``): its transformer building blocks.

Its layers serialize with ``module: keras_hub.src.layers.modeling.<file>`` and
``registered_name: keras_hub>Class`` (older files: ``keras_nlp``); their configs hold the
constructor arguments, their weights sit under the attribute names of their sublayers
(``transformer_encoder/_self_attention_layer/query_dense/vars/0``). TransformerEncoder,
TransformerDecoder, TokenAndPositionEmbedding, MaskedLMHead and FNetEncoder are composite
layers (converter/composite.py): their calls expand into the Keras layers and operations
KerasHub's ``call`` runs. The position encodings, ReversibleEmbedding, RMSNormalization
and AlibiBias are lowered by hand (emit/keras_hub.py).

An expansion function is ``expand(node, e)``: ``e`` is the ``composite.Expansion`` that
makes the inner calls. Masks as KerasHub moves them: a TransformerEncoder/Decoder reads its
inputs' Keras mask (unless a padding mask is passed) and merges it into the attention mask
its attention layer gets (``merge_padding_and_attention_mask``); its output carries its
first input's mask.
"""
from __future__ import annotations

import math

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


@hub_kind("RMSNormalization", weights=lambda node: [
    WeightSpec("scale", "vars/0", (node.config["input_dim"],))])
def rms_normalization(node):
    """KerasHub's own (not Keras'): x * rsqrt(mean(x², last axis) + 1e-6) * scale, in
    float32."""
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
    """KerasHub's LlamaTransformerDecoder.call without a cache (see ``_gqa_decoder``).
    keras_hub 0.32's LlamaRotaryEmbedding overrides _get_inverse_freq with one that never
    divides by rope_position_scaling_factor: the factor does not change the graph."""
    if e.config.get("rope_frequency_adjustment_factor") is not None:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: Llama 3.1 rotary "
                                    f"frequency adjustment is not supported yet")
    return _gqa_decoder(node, e, None, 1.0, None)


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


def _gqa_decoder(node, e, head_dim, scaling: float, window, biases: bool = False) -> list:
    """Llama / Mistral / Qwen decoder block: pre-norm (an RMS norm) self-attention
    (EinsumDense query / key / value, biased with ``biases``, rotary embedding of query
    and key, then the attention core: softmax of q·k / sqrt(head_dim) on the merged padding
    AND causal (sliding ``window``) mask, each key/value head shared by a group of query
    heads, as kerasonnx's AttentionCore (which a key/value cache can extend); the
    attention_output EinsumDense), dropout, residual; then pre-norm SwiGLU feed-forward:
    output_dense(intermediate_dense(h) * silu(gate_dense(h))), residual."""
    config = e.config
    if node.input("self_attention_cache") is not None:
        raise UnsupportedLayerError(f"{e.source}: layer {node.name!r}: {node.class_name} "
                                    f"called with a cache is not supported yet")
    x = node.input("decoder_sequence")
    hidden = x.shape[-1]
    heads, groups = config["num_query_heads"], config["num_key_value_heads"]
    head_dim = head_dim or hidden // heads
    epsilon, dropout = config.get("layer_norm_epsilon", 1e-5), config.get("dropout", 0)

    def norm(attribute):
        return e.sublayer(attribute, "RMSNormalization", {"epsilon": epsilon, "axis": -1})

    def projection(attribute, equation, shape, bias_axes=None):
        return e.sublayer(f"_self_attention_layer/{attribute}", "EinsumDense",
                          {"equation": equation, "output_shape": shape,
                           "bias_axes": bias_axes if biases else None,
                           "name": attribute.lstrip("_")},
                          prefixes=(f"self_attention/{attribute.lstrip('_')}/",
                                    f"self_attention_layer/{attribute.lstrip('_')}/"))

    def dense(attribute, units):
        return e.sublayer(attribute, "Dense", {"units": units, "use_bias": False})

    mask = _merged_attention_mask(e, x, node.input("decoder_padding_mask"),
                                  node.input("decoder_attention_mask"), "self_attention_mask")
    core = e.sublayer("_self_attention_layer/attention_core", "AttentionCore",
                      {"num_query_heads": heads, "num_key_value_heads": groups,
                       "head_dim": head_dim, "scale": 1.0 / math.sqrt(head_dim),
                       "sliding_window": window}, module=INTERNAL_MODULE)
    rope = e.sublayer("_self_attention_layer/rotary_embedding_layer", "RotaryEmbedding",
                      {"max_wavelength": config.get("rope_max_wavelength", 10000),
                       "scaling_factor": scaling,
                       "sequence_axis": 1, "feature_axis": -1,
                       "name": "rotary_embedding_layer"},
                      module="keras_hub.src.layers.modeling.rotary_embedding")

    h = e.call(norm("_self_attention_layernorm"), x)[0]
    query = e.call(projection("_query_dense", "bqm,muh->bquh", [None, heads, head_dim],
                              "uh"), h)[0]
    key = e.call(projection("_key_dense", "bkm,mvh->bkvh", [None, groups, head_dim], "vh"),
                 h)[0]
    value = e.call(projection("_value_dense", "bkm,mvh->bkvh", [None, groups, head_dim],
                              "vh"), h)[0]
    query, key = e.call(rope, query)[0], e.call(rope, key)[0]
    attended = e.call(core, query, key, value, attention_mask=mask, use_causal_mask=True)[0]
    attended = e.call(projection("_output_dense", "bquh,uhm->bqm", [None, hidden]),
                      attended)[0]
    attended = e.call(e.sublayer("_self_attention_dropout", "Dropout", {"rate": dropout}),
                      attended)[0]
    x = e.op("Add", attended, x, label="self_attention_residual")

    h = e.call(norm("_feedforward_layernorm"), x)[0]
    gate = e.op("Silu", e.call(dense("_feedforward_gate_dense", config["intermediate_dim"]),
                               h)[0], label="gate_activation")
    h = e.call(dense("_feedforward_intermediate_dense", config["intermediate_dim"]), h)[0]
    h = e.call(dense("_feedforward_output_dense", hidden),
               e.op("Multiply", h, gate, label="gated"))[0]
    return [e.op("Add", h, x, label="feedforward_residual")]


for _name, _expand in (("LlamaTransformerDecoder", _expand_llama_decoder),
                      ("MistralTransformerDecoder", _expand_mistral_decoder),
                      ("QwenTransformerDecoder", _expand_qwen_decoder)):
    hub_kind(_name,
             signature=("decoder_sequence", "decoder_padding_mask", "decoder_attention_mask",
                        "self_attention_cache", "self_attention_cache_update_index",
                        "training"),
             output_mask=lambda node: node.input("decoder_sequence").mask,
             expand=_expand)(
        lambda node: [(node.input("decoder_sequence").shape, compute_dtype(node))])
