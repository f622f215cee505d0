"""``convert(..., with_past=True)``: causal decoders with a key/value cache. Each model is
converted at opsets 23 and 17 and run as a generation loop (a 3-token prompt on an empty
cache, then 2 tokens, then 1 at a time), batch 1 and 3; every step's outputs must equal
the full Keras model run on the prefix, at the new positions. Models that are not causal
decoders are refused with a message saying why."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import kerasonnx
from conftest import requires_keras
from keras_check import Cases, assert_same, keras_outputs, model_cache, randomize
from kerasonnx.cli import main
from kerasonnx.convert import WITH_PAST_KEY
from kerasonnx.emit.precision import TOLERANCES
from kerasonnx import NotCausalDecoderError
from kerasonnx.with_past import decode_incrementally

VOCAB, MAX_LENGTH = 20, 16
CHUNKS = (3, 2, 1, 1)  # prompt, then a 2-token step, then single tokens
DECODERS = Cases()
REFUSED = Cases()


def token_inputs(k, *names):
    return [k.Input((None,), dtype="int32", name=name) for name in names]


def embedded(k, tokens, positions):
    """Token Embedding plus a learned position Embedding of the positions input."""
    return k.layers.Add()([k.layers.Embedding(VOCAB, 16)(tokens),
                           k.layers.Embedding(MAX_LENGTH, 16)(positions)])


def post_norm_block(k, x, memory=None):
    """Causal self-attention (and cross attention to ``memory``), residual, LayerNorm,
    ReLU feed-forward."""
    L = k.layers
    attention = L.MultiHeadAttention(2, 8)(x, x, use_causal_mask=True)
    x = L.LayerNormalization()(L.Add()([x, attention]))
    if memory is not None:
        cross = L.MultiHeadAttention(2, 8)(query=x, value=memory, key=memory)
        x = L.LayerNormalization()(L.Add()([x, cross]))
    h = L.Dense(16)(L.Dense(32, activation="relu")(x))
    return L.LayerNormalization()(L.Add()([x, h]))


@DECODERS.register()
def mha_decoder(k):
    """GPT-style: tokens and positions embedded, two causal MultiHeadAttention blocks."""
    tokens, positions = token_inputs(k, "tokens", "positions")
    x = embedded(k, tokens, positions)
    for _ in range(2):
        x = post_norm_block(k, x)
    return k.Model([tokens, positions], k.layers.Dense(VOCAB, name="logits")(x))


@DECODERS.register("keras3")
def gqa_decoder(k):
    """Llama-style: RMSNormalization pre-norms, GroupQueryAttention (4 query heads, 2
    key/value heads; the second block with a sliding window of 3), SwiGLU from keras.ops."""
    from keras import ops
    L = k.layers
    tokens, positions = token_inputs(k, "tokens", "positions")
    x = embedded(k, tokens, positions)
    for window in (None, 3):
        h = L.RMSNormalization(epsilon=1e-5)(x)
        attention = L.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2,
                                          sliding_window=window)
        x = L.Add()([x, attention(h, h, use_causal_mask=True)])
        h = L.RMSNormalization(epsilon=1e-5)(x)
        gate, up = L.Dense(24, use_bias=False)(h), L.Dense(24, use_bias=False)(h)
        x = L.Add()([x, L.Dense(16, use_bias=False)(ops.multiply(ops.silu(gate), up))])
    return k.Model([tokens, positions], L.Dense(VOCAB)(L.RMSNormalization()(x)))


@DECODERS.register()
def encoder_decoder(k):
    """A translation model: a non-causal encoder over the source, two decoder blocks with
    causal self-attention (cached) and cross attention to the encoder (recomputed; the
    second block's queries depend on the first's cross attention)."""
    L = k.layers
    source, tokens, positions = token_inputs(k, "source", "tokens", "positions")
    memory = L.Embedding(VOCAB, 16)(source)
    encoded = L.MultiHeadAttention(2, 8)(memory, memory)
    memory = L.LayerNormalization()(L.Add()([memory, encoded]))
    x = post_norm_block(k, embedded(k, tokens, positions), memory)
    x = post_norm_block(k, x, memory)
    return k.Model([source, tokens, positions], L.Dense(VOCAB)(x))


def masked_block(k, x, **attention):
    """Causal self-attention on Embedding(mask_zero=True)'s mask, residual, LayerNorm."""
    attended = k.layers.MultiHeadAttention(2, 8, **attention)(x, x, use_causal_mask=True)
    return k.layers.LayerNormalization()(k.layers.Add()([x, attended]))


@DECODERS.register()
def masked_decoder(k):
    """Token ids with padding (0, Embedding(mask_zero=True)): Keras' masks on the query and
    the cached keys and values (fused path in Keras 3: a padded query averages every key,
    as in Keras 2, which adds -1e9)."""
    tokens, = token_inputs(k, "tokens")
    x = masked_block(k, k.layers.Embedding(VOCAB, 16, mask_zero=True)(tokens))
    return k.Model(tokens, k.layers.Dense(VOCAB)(k.layers.Dense(32, activation="relu")(x)))


@DECODERS.register("keras3")
def masked_dropout_decoder(k):
    """Keras 3, two blocks: the first masked on its explicit path (dropout: a padded query
    gives zeros, so its row does not depend on later keys), the second unmasked (Keras 3's
    MultiHeadAttention takes the mask off its inputs: the residual Add has none)."""
    tokens, = token_inputs(k, "tokens")
    x = masked_block(k, k.layers.Embedding(VOCAB, 16, mask_zero=True)(tokens), dropout=0.1)
    return k.Model(tokens, k.layers.Dense(VOCAB)(masked_block(k, x)))


@DECODERS.register("keras3")
def masked_gqa_decoder(k):
    """GroupQueryAttention (a sliding window of 3) on Embedding(mask_zero=True)'s mask."""
    tokens, = token_inputs(k, "tokens")
    x = k.layers.Embedding(VOCAB, 16, mask_zero=True)(tokens)
    attention = k.layers.GroupQueryAttention(head_dim=4, num_query_heads=4,
                                             num_key_value_heads=2, sliding_window=3)
    x = k.layers.Add()([x, attention(x, x, use_causal_mask=True)])
    return k.Model(tokens, k.layers.Dense(VOCAB)(k.layers.RMSNormalization()(x)))


requires_keras_hub = pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None,
                                        reason="needs keras-hub")


@DECODERS.register("keras3")
def hub_decoder(k):
    """KerasHub: TokenAndPositionEmbedding (learned positions), a post-norm and a pre-norm
    gelu TransformerDecoder (CachedMultiHeadAttention inside)."""
    import keras_hub
    H = keras_hub.layers
    tokens, = token_inputs(k, "tokens")
    x = H.TokenAndPositionEmbedding(VOCAB, MAX_LENGTH, 16)(tokens)
    x = H.TransformerDecoder(32, 2)(x)
    x = H.TransformerDecoder(32, 2, normalize_first=True, activation="gelu")(x)
    return k.Model(tokens, k.layers.Dense(VOCAB)(x))


@DECODERS.register("keras3")
def hub_sine_rotary_translator(k):
    """KerasHub: a TransformerEncoder over the source; the target embedded plus a sine
    position encoding, rotated by a RotaryEmbedding, then a TransformerDecoder with cross
    attention to the encoder."""
    import keras_hub
    H, L = keras_hub.layers, k.layers
    source, tokens = token_inputs(k, "source", "tokens")
    memory = H.TransformerEncoder(32, 2)(L.Embedding(VOCAB, 16)(source))
    y = L.Embedding(VOCAB, 16)(tokens)
    y = H.RotaryEmbedding(max_wavelength=100)(L.Add()([y, H.SinePositionEncoding()(y)]))
    y = H.TransformerDecoder(32, 2)(y, memory)
    return k.Model([source, tokens], L.Dense(VOCAB)(y))


@DECODERS.register("keras3")
def gpt2_causal_lm(k):
    """KerasHub's GPT2CausalLM (token_ids and a padding_mask) on a tiny GPT2Backbone."""
    import keras_hub
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16,
                                             max_sequence_length=MAX_LENGTH)
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)


@DECODERS.register("keras3")
def llama_causal_lm(k):
    """KerasHub's LlamaCausalLM: rotary query and key, grouped key/value heads."""
    import keras_hub
    backbone = keras_hub.models.LlamaBackbone(vocabulary_size=VOCAB, num_layers=2,
                                              num_query_heads=4, num_key_value_heads=2,
                                              hidden_dim=16, intermediate_dim=24)
    return keras_hub.models.LlamaCausalLM(backbone, preprocessor=None)


@DECODERS.register("keras3")
def mistral_backbone(k):
    """KerasHub's MistralBackbone with a sliding window of 3 positions."""
    import keras_hub
    return keras_hub.models.MistralBackbone(vocabulary_size=VOCAB, num_layers=1,
                                            num_query_heads=4, num_key_value_heads=1,
                                            hidden_dim=16, intermediate_dim=24,
                                            sliding_window=3)


@DECODERS.register("keras3")
def qwen3_causal_lm(k):
    """KerasHub's Qwen3CausalLM: query and key RMS-normalized per head, a head_dim of its
    own, rotary scaling, a sliding window (3) shorter than the decoded length."""
    import keras_hub
    backbone = keras_hub.models.Qwen3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=8, intermediate_dim=16, head_dim=6, rope_max_wavelength=500,
        rope_scaling_factor=2.0, sliding_window_size=3, layer_norm_epsilon=1e-5)
    return keras_hub.models.Qwen3CausalLM(backbone, preprocessor=None)


@DECODERS.register("keras3")
def llama31_causal_lm(k):
    """KerasHub's Llama3CausalLM with Llama 3.1's rotary frequency adjustment (a
    pretraining length of 100: its frequencies in all three bands)."""
    import keras_hub
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=32, intermediate_dim=16, rope_max_wavelength=10000,
        rope_frequency_adjustment_factor=8.0, rope_low_freq_factor=1.0,
        rope_high_freq_factor=4.0, rope_pretraining_sequence_length=100)
    return keras_hub.models.Llama3CausalLM(backbone, preprocessor=None)


@DECODERS.register("keras3")
def gemma_causal_lm(k):
    """KerasHub's GemmaCausalLM with Gemma 2's options: attention and final logit soft
    caps, a sliding window (3, shorter than the decoded length) on the even blocks, post
    norms; 2 query heads over 1 key/value head."""
    import keras_hub
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=8, intermediate_dim=12, head_dim=4, query_head_dim_normalize=False,
        use_post_ffw_norm=True, use_post_attention_norm=True, attention_logit_soft_cap=2.0,
        final_logit_soft_cap=3.0, use_sliding_window_attention=True, sliding_window_size=3)
    return keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)


@DECODERS.register("keras3")
def gemma3_causal_lm(k):
    """KerasHub's Gemma3CausalLM: five local blocks (sliding window 3, rotary wavelength
    10^4, scaling 2), then a global one (10^6, scaling 4); query / key norms, soft caps."""
    import keras_hub
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCAB, image_size=None, num_layers=6, num_query_heads=2, num_key_value_heads=1, hidden_dim=8, intermediate_dim=8,
        head_dim=4, use_post_ffw_norm=True, use_post_attention_norm=True,
        attention_logit_soft_cap=2.0, final_logit_soft_cap=3.0,
        use_sliding_window_attention=True, sliding_window_size=3,
        local_rope_scaling_factor=2.0, global_rope_scaling_factor=4.0)
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)


def phi3_su_causal_lm(pretraining_length: int):
    """KerasHub's Phi3CausalLM with su-scaled rotary embeddings: the short factors up to
    ``pretraining_length`` positions, the long ones beyond, cos and sin scaled."""
    import keras_hub
    backbone = keras_hub.models.Phi3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=32, intermediate_dim=16, rope_max_wavelength=500,
        pretraining_sequence_length=pretraining_length, max_sequence_length=28,
        rope_scaling_type="su", rope_scaling_short_factor=[1.0, 1.5, 2.0, 4.0],
        rope_scaling_long_factor=[1.0, 3.0, 8.0, 16.0])
    return keras_hub.models.Phi3CausalLM(backbone, preprocessor=None)


@DECODERS.register("keras3")
def mixtral_causal_lm(k):
    """KerasHub's MixtralCausalLM: Mistral's attention with a sliding window (3) shorter
    than the decoded length, a sparse mixture of 4 experts (top 2) as feed-forward."""
    import keras_hub
    backbone = keras_hub.models.MixtralBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=8, intermediate_dim=12, num_experts=4, top_k=2, sliding_window=3)
    return keras_hub.models.MixtralCausalLM(backbone, preprocessor=None)


@DECODERS.register("keras3")
def phi3_long_causal_lm(k):
    """Phi-3 past its pretraining length (2) from the prompt on: the long factors at every
    step, as in the full model."""
    return phi3_su_causal_lm(2)


HUB_DECODERS = ("hub_decoder", "hub_sine_rotary_translator", "gpt2_causal_lm",
                "llama_causal_lm", "mistral_backbone", "qwen3_causal_lm", "llama31_causal_lm",
                "gemma_causal_lm", "gemma3_causal_lm", "phi3_long_causal_lm",
                "mixtral_causal_lm")


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    return DECODERS.cache(tmp_path_factory.mktemp("with_past"))


# Padded token ids (0) of a model with Embedding(mask_zero=True), by row: the prompt's end
# and a later step; the first 2 (left padding); the prompt's middle.
PADDED_POSITIONS = ([2, 5], [0, 1], [1])


def generation_inputs(model, batch: int, length: int, rng) -> dict:
    """Token ids for every input, positions 0 ... length - 1 for ``positions``; a
    ``padding_mask`` pads row 1 on the left (its first 2 tokens), as batched generation
    does; a model that masks zeros (``mask_zero``) gets the ``PADDED_POSITIONS``."""
    arrays = {}
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        arrays[name] = (np.tile(np.arange(length, dtype="int32"), (batch, 1))
                        if name == "positions"
                        else rng.integers(1, VOCAB, size=(batch, length)).astype("int32"))
    if "padding_mask" in arrays:
        arrays["padding_mask"] = np.ones((batch, length), "int32")
        if batch > 1:
            arrays["padding_mask"][1, :2] = arrays["token_ids"][1, :2] = 0
    if any(getattr(layer, "mask_zero", False) for layer in model.layers):
        for row, padded in zip(range(batch), PADDED_POSITIONS):
            arrays["tokens"][row, padded] = 0
    return arrays


def check_decoding(model, path, opsets=(23, 17), batches=(1, 3), precision: str = "keras",
                   tolerance: dict = None) -> None:
    """Every step of the generation loop equals Keras on the prefix, at the new positions
    (within ``tolerance``, atol / rtol, where given: a half-precision conversion)."""
    sessions = []
    for opset in opsets:
        result = kerasonnx.convert(path, opset=opset, with_past=True, precision=precision)
        recorded = next(json.loads(p.value) for p in result.model.metadata_props
                        if p.key == WITH_PAST_KEY)
        sessions.append((opset, ort.InferenceSession(result.model.SerializeToString(),
                                                     providers=["CPUExecutionProvider"]),
                         recorded))
    rng = np.random.default_rng(1)
    for batch in batches:
        arrays = generation_inputs(model, batch, sum(CHUNKS), rng)
        names = [t.name.split(":")[0] for t in model.inputs]
        expected = {}
        for opset, session, recorded in sessions:
            sliced = recorded["decoder_inputs"] + recorded["past_and_new_inputs"]
            steps = decode_incrementally(session, arrays, recorded["decoder_inputs"], CHUNKS,
                                         recorded["past_and_new_inputs"])
            for start, end, outputs in steps:
                if end not in expected:
                    prefix = {n: arrays[n][:, :end] if n in sliced else arrays[n]
                              for n in names}
                    prefix = prefix if isinstance(model.input, dict) else list(
                        prefix.values())
                    expected[end] = [o[:, start:end] for o in keras_outputs(model, prefix)]
                assert_same(expected[end], outputs,
                            f"{path.name} opset {opset} batch {batch} positions {start}-{end}",
                            **(tolerance or {}))


@requires_keras
@pytest.mark.parametrize("name,dialect", [
    pytest.param(name, dialect, marks=[requires_keras_hub] if name in HUB_DECODERS else [])
    for name, dialect in DECODERS.params()])
def test_incremental_decoding_equals_keras_at_every_step(decoders, name, dialect):
    check_decoding(*decoders(name, dialect))


@requires_keras
@pytest.mark.parametrize("name", ["mha_decoder", "masked_decoder"])
def test_half_precision_decoding_follows_keras(decoders, name):
    """--precision float16 with a cache: its past_length is computed before any layer
    (once a KeyError in the precision pass); every step within float16's tolerance."""
    atol, rtol = TOLERANCES["float16"]
    check_decoding(*decoders(name, "keras3"), precision="float16",
                   tolerance={"atol": atol, "rtol": rtol})


@requires_keras
@requires_keras_hub
def test_phi3_su_factors_follow_keras_hubs_cached_call(tmp_path):
    """keras_hub's cached Phi-3 picks the su factors by past + new positions for the new
    ones only: after the 3-token prompt (short factors) the steps to 5, 6, 7 exceed the
    pretraining length 4 (long factors) while the cached keys keep their short-factor
    rotation. Every step equals Phi3CausalLM.call_with_cache, at opsets 23 and 17."""
    from keras import ops
    model, path = model_cache(tmp_path, {"phi3": lambda k: phi3_su_causal_lm(4)})(
        "phi3", "keras3")
    backbone, length = model.backbone, sum(CHUNKS)
    head_dim = backbone.hidden_dim // backbone.num_query_heads
    tokens = np.random.default_rng(5).integers(1, VOCAB, (3, length)).astype("int32")
    cache = ops.zeros((3, backbone.num_layers, 2, length, backbone.num_key_value_heads,
                       head_dim))
    expected, start = [], 0
    for chunk in CHUNKS:
        logits, _, cache = model.call_with_cache(tokens[:, start:start + chunk], cache, start)
        expected.append(ops.convert_to_numpy(logits))
        start += chunk
    arrays = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
    for opset in (23, 17):
        session = ort.InferenceSession(
            kerasonnx.convert(path, opset=opset, with_past=True).model.SerializeToString(),
            providers=["CPUExecutionProvider"])
        steps = decode_incrementally(session, arrays, ["token_ids"], CHUNKS, ["padding_mask"])
        for want, (start, end, outputs) in zip(expected, steps):
            assert_same([want], outputs, f"opset {opset} positions {start}-{end}")


@requires_keras
@requires_keras_hub
def test_padding_mask_covers_past_and_new_positions(decoders):
    """GPT2's padding_mask is fed up to the last new position; token_ids the new ones."""
    _, path = decoders("gpt2_causal_lm", "keras3")
    model = kerasonnx.convert(path, with_past=True).model
    recorded = next(json.loads(p.value) for p in model.metadata_props if p.key == WITH_PAST_KEY)
    assert recorded == {"decoder_inputs": ["token_ids"], "past_and_new_inputs": ["padding_mask"]}


@requires_keras
def test_cache_interface_uses_optimum_names(decoders):
    """Inputs past_key_values.{i}.key/value (batch, kv_heads, past, head_dim) after the
    Keras inputs, outputs present.{i}.key/value after Keras' outputs; cross attention has
    no cache; the sequence axes are dynamic."""
    _, path = decoders("encoder_decoder", "keras3")
    graph = kerasonnx.convert(path, with_past=True).model.graph
    dims = {i.name: [d.dim_value or None for d in i.type.tensor_type.shape.dim]
            for i in graph.input}
    assert list(dims) == ["source", "tokens", "positions", "past_key_values.0.key",
                          "past_key_values.0.value", "past_key_values.1.key",
                          "past_key_values.1.value"]
    assert dims["past_key_values.0.key"] == [None, 2, None, 8]
    assert dims["tokens"] == [None, None]
    assert [o.name for o in graph.output][1:] == ["present.0.key", "present.0.value",
                                                  "present.1.key", "present.1.value"]


@requires_keras
@pytest.mark.parametrize("dialect", ["keras3", "keras2"])
def test_keras_mask_is_cached_with_the_keys(decoders, dialect):
    """Embedding(mask_zero=True)'s mask on the cached keys: input past_key_values.0.mask
    (batch, past) bool after the layer's keys and values, output present.0.mask."""
    _, path = decoders("masked_decoder", dialect)
    graph = kerasonnx.convert(path, with_past=True).model.graph
    bool_type = onnx.TensorProto.BOOL

    def signature(values):
        return {v.name: (v.type.tensor_type.elem_type,
                         [d.dim_value or None for d in v.type.tensor_type.shape.dim])
                for v in values}

    inputs, outputs = signature(graph.input), signature(graph.output)
    assert list(inputs) == ["tokens", "past_key_values.0.key", "past_key_values.0.value",
                            "past_key_values.0.mask"]
    assert inputs["past_key_values.0.mask"] == (bool_type, [None, None])
    assert list(outputs)[1:] == ["present.0.key", "present.0.value", "present.0.mask"]
    assert outputs["present.0.mask"] == (bool_type, [None, None])


@requires_keras
def test_fixed_length_decoder_gets_a_dynamic_sequence_axis(tmp_path):
    """A model saved for 8 tokens exactly: with the cache its token axis is dynamic, and
    (the model being causal) every step equals Keras' full 8-token run at its positions."""
    import keras
    keras.utils.set_random_seed(3)
    tokens, positions = (keras.Input((8,), dtype="int32", name=n) for n in ("tokens", "positions"))
    x = post_norm_block(keras, embedded(keras, tokens, positions))
    model = keras.Model([tokens, positions], keras.layers.Dense(VOCAB)(x))
    randomize(model)
    path = tmp_path / "fixed.keras"
    model.save(path)
    arrays = generation_inputs(model, 3, 8, np.random.default_rng(4))
    expected = keras_outputs(model, [arrays["tokens"], arrays["positions"]])[0]
    for opset in (23, 17):
        onnx_model = kerasonnx.convert(path, opset=opset, with_past=True).model
        assert [d.dim_param for d in onnx_model.graph.input[0].type.tensor_type.shape.dim] == [
            "batch", "tokens_dim1"]
        session = ort.InferenceSession(onnx_model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        for start, end, actual in decode_incrementally(session, arrays, ["tokens", "positions"],
                                                       CHUNKS + (1,)):
            assert_same([expected[:, start:end]], actual, f"opset {opset} {start}-{end}")


@requires_keras
def test_gqa_cache_has_the_key_value_heads(decoders):
    _, path = decoders("gqa_decoder", "keras3")
    graph = kerasonnx.convert(path, with_past=True).model.graph
    shapes = {i.name: [d.dim_value or None for d in i.type.tensor_type.shape.dim]
              for i in graph.input}
    assert shapes["past_key_values.1.value"] == [None, 2, None, 4]


# ---------------------------------------------------------------------- refused models


@REFUSED.register("keras3")
def encoder_only(k):
    tokens, = token_inputs(k, "tokens")
    x = k.layers.Embedding(VOCAB, 16)(tokens)
    return k.Model(tokens, k.layers.MultiHeadAttention(2, 8)(x, x))


@REFUSED.register("keras3")
def causal_then_bidirectional(k):
    tokens, = token_inputs(k, "tokens")
    x = k.layers.Embedding(VOCAB, 16)(tokens)
    x = k.layers.MultiHeadAttention(2, 8)(x, x, use_causal_mask=True)
    return k.Model(tokens, k.layers.MultiHeadAttention(2, 8, name="bidirectional")(x, x))


@REFUSED.register("keras3")
def causal_then_convolution(k):
    tokens, = token_inputs(k, "tokens")
    x = k.layers.Embedding(VOCAB, 16)(tokens)
    x = k.layers.MultiHeadAttention(2, 8)(x, x, use_causal_mask=True)
    return k.Model(tokens, k.layers.Conv1D(16, 3, padding="same", name="convolution")(x))


@REFUSED.register()
def masked_then_attended(k):
    """A padded query of the masked layer averages every key, later ones included (Keras
    2 adds -1e9; Keras 3's fused path), and the second layer attends its output."""
    tokens, = token_inputs(k, "tokens")
    x = k.layers.Embedding(VOCAB, 16, mask_zero=True)(tokens)
    x = k.layers.MultiHeadAttention(2, 8, name="masked")(x, x, use_causal_mask=True)
    return k.Model(tokens, k.layers.MultiHeadAttention(2, 8)(x, x, use_causal_mask=True))


@REFUSED.register("keras3")
def causal_attention_mask_input(k):
    tokens, = token_inputs(k, "tokens")
    mask = k.Input((None, None), dtype="bool", name="attention_mask")
    x = k.layers.Embedding(VOCAB, 16)(tokens)
    return k.Model([tokens, mask], k.layers.MultiHeadAttention(2, 8, name="given_mask")(
        x, x, attention_mask=mask))


@REFUSED.register("keras3")
def causal_dot_attention(k):
    tokens, = token_inputs(k, "tokens")
    x = k.layers.Embedding(VOCAB, 16)(tokens)
    x = k.layers.MultiHeadAttention(2, 8)(x, x, use_causal_mask=True)
    return k.Model(tokens, k.layers.Attention(name="dot")([x, x], use_causal_mask=True))


@REFUSED.register("keras3")
def qwen3_5_causal_lm(k):
    """Qwen 3.5's linear-attention layers (gated delta nets) carry a recurrent state, not
    keys and values."""
    import keras_hub
    backbone = keras_hub.models.Qwen3_5Backbone(
        vocabulary_size=VOCAB, hidden_dim=8, intermediate_dim=16, linear_key_head_dim=4,
        num_layers=2, layer_types=["linear_attention", "full_attention"],
        num_query_heads=2, num_key_value_heads=2, head_dim=4, partial_rotary_factor=1.0,
        linear_num_key_heads=2, linear_num_value_heads=2, linear_value_head_dim=4)
    return keras_hub.models.Qwen3_5CausalLM(backbone, preprocessor=None)


HUB_REFUSED = ("qwen3_5_causal_lm",)

REFUSALS = {
    "encoder_only": "has no causal self-attention",
    "causal_then_bidirectional": "'bidirectional' (MultiHeadAttention) attends over the "
                                 "decoder's positions without use_causal_mask=True",
    "causal_then_convolution": "'convolution' (Conv1D) is not known to compute each position "
                               "from that position alone",
    "masked_then_attended": "'masked' (MultiHeadAttention) is masked by Keras masks",
    "causal_attention_mask_input": "an attention_mask passed in cannot be proven causal",
    "causal_dot_attention": "'dot' (Attention) is causal, but --with-past caches only "
                            "MultiHeadAttention and GroupQueryAttention",
    "qwen3_5_causal_lm": "(Qwen3_5GatedDeltaNet) is linear attention",
}


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    return REFUSED.cache(tmp_path_factory.mktemp("with_past_refused"))


@requires_keras
@pytest.mark.parametrize("name,dialect", [
    pytest.param(name, dialect, marks=[requires_keras_hub] if name in HUB_REFUSED else [])
    for name, dialect in REFUSED.params()])
def test_models_that_are_not_causal_decoders_are_refused(refused, name, dialect):
    _, path = refused(name, dialect)
    with pytest.raises(NotCausalDecoderError, match="--with-past") as error:
        kerasonnx.convert(path, with_past=True)
    assert REFUSALS[name] in str(error.value)
    kerasonnx.convert(path)  # without the cache it converts


# ---------------------------------------------------------------------- command line


@requires_keras
def test_cli_with_past_writes_the_cached_model(decoders, tmp_path):
    _, path = decoders("mha_decoder", "keras3")
    output = tmp_path / "decoder.onnx"
    result = CliRunner().invoke(main, ["convert", str(path), "--with-past", "-o", str(output)])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [
        "logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]


@requires_keras
def test_cli_with_past_refuses_an_encoder_in_one_line(refused, tmp_path):
    _, path = refused("encoder_only", "keras3")
    output = tmp_path / "encoder.onnx"
    result = CliRunner().invoke(main, ["convert", str(path), "--with-past", "-o", str(output)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: --with-past needs a "
                                                   f"causal decoder")
    assert not output.exists()


def test_cli_help_explains_with_past():
    result = CliRunner().invoke(main, ["convert", "--help"])
    assert "--with-past" in result.output and "past_key_values" in result.output


# ---------------------------------------------------------------------- verify


@requires_keras
@pytest.mark.parametrize("name,dialect", [
    ("mha_decoder", "keras2"), ("encoder_decoder", "keras3"), ("masked_decoder", "keras2"),
    pytest.param("gpt2_causal_lm", "keras3", marks=requires_keras_hub)])
def test_verify_with_past_compares_every_step(decoders, name, dialect):
    """A prompt of 3, then one token at a time to 5; Keras in its own process (GPT2: its
    padding_mask up to the last position; the masked decoder: padding tails, the cached
    key mask fed back)."""
    _, path = decoders(name, dialect)
    model = kerasonnx.convert(path, with_past=True).model
    report = kerasonnx.verify(path, model, batches=(1, 3), lengths=(3, 5), with_past=True)
    assert report.passed, report.summary()
    assert [(run.batch, run.length, run.outputs[0].keras_shape[1]) for run in report.runs] == [
        (1, 3, 3), (1, 4, 1), (1, 5, 1), (3, 3, 3), (3, 4, 1), (3, 5, 1)]


@requires_keras
def test_verify_with_past_fails_on_a_wrong_cache(decoders, tmp_path):
    """The same graph with every present value scaled: the prompt still agrees, the next
    steps do not."""
    _, path = decoders("mha_decoder", "keras3")
    model = kerasonnx.convert(path, with_past=True).model
    scaled = onnx.helper.make_tensor("scale", onnx.TensorProto.FLOAT, [], [1.5])
    model.graph.initializer.append(scaled)
    for node in model.graph.node:
        if "present.0.value" in node.output:
            node.output[:] = ["present.0.value/unscaled" if o == "present.0.value" else o
                              for o in node.output]
    model.graph.node.append(onnx.helper.make_node(
        "Mul", ["present.0.value/unscaled", "scale"], ["present.0.value"]))
    report = kerasonnx.verify(path, model, batches=(1,), lengths=(3, 4), with_past=True)
    assert [run.passed for run in report.runs] == [True, False]


@requires_keras
def test_verify_tells_which_mode_the_onnx_model_needs(decoders):
    _, path = decoders("mha_decoder", "keras3")
    with pytest.raises(kerasonnx.ConversionError, match="verify it with --with-past"):
        kerasonnx.verify(path, kerasonnx.convert(path, with_past=True).model)
    with pytest.raises(kerasonnx.ConversionError, match="convert it with --with-past"):
        kerasonnx.verify(path, kerasonnx.convert(path).model, with_past=True)


# ---------------------------------------------------------------------- keras-multi-head

# Built by tf_keras in a process of its own, which also records Keras' outputs on every
# prefix a generation loop in CHUNKS ends at, for batch 1 and 3.
KERAS_MULTI_HEAD_DECODER = """
import sys
import numpy as np
import keras_multi_head as kmh
import tf_keras as k
from keras_check import randomize
tokens = k.Input((None,), dtype="int32", name="tokens")
positions = k.Input((None,), dtype="int32", name="positions")
x = k.layers.Add()([k.layers.Embedding(20, 16)(tokens), k.layers.Embedding(16, 16)(positions)])
h = kmh.MultiHeadAttention(head_num=2, history_only=True, name="history")(x)
x = k.layers.LayerNormalization()(k.layers.Add()([x, h]))
h = kmh.MultiHeadAttention(head_num=4, history_only=True, activation="relu",
                           name="history_qkv")([x, x, x])
x = k.layers.LayerNormalization()(k.layers.Add()([x, h]))
model = k.Model([tokens, positions], k.layers.Dense(20)(x))
randomize(model)
model.save(sys.argv[1])
ends, length, rng, recorded = np.cumsum(eval(sys.argv[3])), int(sys.argv[4]), \
    np.random.default_rng(2), {}
for batch in (1, 3):
    ids = rng.integers(1, 20, (batch, length)).astype("int32")
    steps = np.tile(np.arange(length, dtype="int32"), (batch, 1))
    recorded[f"{batch}/tokens"], recorded[f"{batch}/positions"] = ids, steps
    for end in ends:
        recorded[f"{batch}/{end}"] = model([ids[:, :end], steps[:, :end]]).numpy()
np.savez(sys.argv[2], **recorded)
"""


@requires_keras
@pytest.mark.skipif(importlib.util.find_spec("keras_multi_head") is None,
                    reason="needs keras-multi-head")
def test_keras_multi_head_history_only_decoder(tmp_path):
    """keras-multi-head (tf_keras only): history_only attention is cached, at opsets 23
    and 17; every step of CHUNKS equals Keras on the prefix, and verify agrees."""
    path, outputs = tmp_path / "kmh_decoder.h5", tmp_path / "kmh_outputs.npz"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(Path(__file__).parent))
    built = subprocess.run([sys.executable, "-c", KERAS_MULTI_HEAD_DECODER, str(path),
                            str(outputs), repr(CHUNKS), str(sum(CHUNKS))],
                           env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    recorded = np.load(outputs)
    for opset in (23, 17):
        model = kerasonnx.convert(path, opset=opset, with_past=True).model
        assert [i.name for i in model.graph.input][2:] == [
            "past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key",
            "past_key_values.1.value"]
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        for batch in (1, 3):
            arrays = {n: recorded[f"{batch}/{n}"] for n in ("tokens", "positions")}
            for start, end, actual in decode_incrementally(
                    session, arrays, ["tokens", "positions"], CHUNKS):
                assert_same([recorded[f"{batch}/{end}"][:, start:end]], actual,
                            f"opset {opset} batch {batch} positions {start}-{end}")
    report = kerasonnx.verify(path, model, batches=(3,), lengths=(3, 5), with_past=True)
    assert report.passed, report.summary()
