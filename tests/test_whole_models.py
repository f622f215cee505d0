"""Every committed fixture, whole models included, converts and matches Keras: against the
Keras outputs stored with the fixture (no TensorFlow needed) at opsets 23 and 17, and
against live Keras through verify at two batch sizes and two sequence lengths. Whole
models of Keras 3 only (a Llama-style decoder) are built here with live Keras and checked
at opsets 23 and 17, batch 1 and 3, two lengths, and through verify."""
from __future__ import annotations

import numpy as np
import pytest

import kerasonnx
from conftest import FIXTURES, load_manifest, requires_keras
from keras_check import Cases, assert_same, check_conversion, run_onnx

ENTRIES = [pytest.param(entry, id=f"{entry['dialect']}-{entry['name']}")
           for entry in load_manifest()["fixtures"]]


def primary_file(entry):
    files = entry["files"]
    return FIXTURES / files["keras" if entry["dialect"] == "keras3" and "keras" in files else "h5"]


@pytest.mark.parametrize("opset", (23, 17))
@pytest.mark.parametrize("entry", ENTRIES)
def test_fixture_matches_stored_keras_outputs(entry, opset):
    result = kerasonnx.convert(primary_file(entry), opset=opset)
    reference = np.load(FIXTURES / entry["npz"])
    arrays = [reference[i["key"]] for i in entry["inputs"]]
    expected = [reference[o["key"]] for o in entry["outputs"]]
    assert_same(expected, run_onnx(result.model, arrays), f"{entry['name']} opset {opset}")
    assert [o.name for o in result.model.graph.output] == [
        o["key"].removeprefix("output/") for o in entry["outputs"]]


@requires_keras
@pytest.mark.parametrize("entry", ENTRIES)
def test_fixture_matches_live_keras_at_two_sizes(entry):
    path = primary_file(entry)
    report = kerasonnx.verify(path, kerasonnx.convert(path).model, batches=(1, 3),
                              lengths=(5, 9))
    assert report.passed, report.summary()


LIVE = Cases()


def _llama_decoder(k, blocks=1, mask_zero=False, padding_mask=False):
    """A Llama-style decoder: token Embedding, then per block RMSNormalization pre-norm,
    causal GroupQueryAttention (no rotary embedding), residual Add, pre-norm again and a
    SwiGLU feed-forward W2(silu(x W1) * (x W3)) from Dense layers and keras.ops, residual
    Add; a final RMSNormalization and a Dense head over the vocabulary. ``padding_mask``
    passes the non-zero tokens as attention_mask (B, 1, S) next to the causal mask."""
    from keras import ops
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.layers.Embedding(20, 16, mask_zero=mask_zero)(tokens)
    call = {"use_causal_mask": True}
    if padding_mask:
        call["attention_mask"] = ops.expand_dims(ops.not_equal(tokens, 0), 1)
    for _ in range(blocks):
        h = k.layers.RMSNormalization(epsilon=1e-5)(x)
        attention = k.layers.GroupQueryAttention(head_dim=4, num_query_heads=4,
                                                 num_key_value_heads=2, use_bias=False)
        x = k.layers.Add()([x, attention(h, h, **call)])
        h = k.layers.RMSNormalization(epsilon=1e-5)(x)
        gate = k.layers.Dense(24, use_bias=False)(h)
        up = k.layers.Dense(24, use_bias=False)(h)
        down = k.layers.Dense(16, use_bias=False)(ops.multiply(ops.silu(gate), up))
        x = k.layers.Add()([x, down])
    x = k.layers.RMSNormalization(epsilon=1e-5)(x)
    return k.Model(tokens, k.layers.Dense(20, use_bias=False)(x))


@LIVE.register("keras3", tokens={"tokens": 20}, lengths=(5, 9))
def llama_decoder(k):
    return _llama_decoder(k)


@LIVE.register("keras3", tokens={"tokens": 20}, lengths=(5, 9))
def llama_decoder_two_blocks_masked_embedding(k):
    """Embedding(mask_zero=True): RMSNormalization does not support masking, so Keras drops
    the mask before the attention and every padded key is attended."""
    return _llama_decoder(k, blocks=2, mask_zero=True)


@LIVE.register("keras3", tokens={"tokens": 20}, lengths=(5, 9))
def llama_decoder_padding_mask(k):
    return _llama_decoder(k, padding_mask=True)


@pytest.fixture(scope="module")
def live_models(tmp_path_factory):
    return LIVE.cache(tmp_path_factory.mktemp("whole_models"))


@requires_keras
@pytest.mark.parametrize("name,dialect", LIVE.params())
def test_live_whole_model_matches_keras(live_models, name, dialect):
    model, path = live_models(name, dialect)
    check_conversion(model, path, **LIVE[name].check)
    report = kerasonnx.verify(path, kerasonnx.convert(path).model, batches=(1, 3),
                              lengths=(5, 9))
    assert report.passed, report.summary()


@requires_keras
def test_llama_decoder_uses_the_standard_operators(live_models):
    """Opset 23: causal-only attention is the Attention operator with is_causal, the
    norms are ONNX RMSNormalization."""
    _, path = live_models("llama_decoder", "keras3")
    nodes = kerasonnx.convert(path, opset=23).model.graph.node
    attention = [n for n in nodes if n.op_type == "Attention"]
    assert len(attention) == 1
    assert {a.name: a.i for a in attention[0].attribute}.get("is_causal") == 1
    assert sum(n.op_type == "RMSNormalization" for n in nodes) == 3
