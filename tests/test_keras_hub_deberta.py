"""KerasHub's DeBERTa-v3 backbone and task models (Keras 3 only), rebuilt from their
constructor config: tiny configs built with real keras_hub 0.32, weights randomized, saved
as ``.keras``, converted at opset 23 and 17, run in onnxruntime at batch 1 and 3 and two
sequence lengths on padded token ids (and random mask positions), every output compared
with keras_hub's by name within 1e-5. The longer length (12) exceeds bucket_size / 2, so
relative distances fall into the log buckets, up to max_sequence_length - 1."""
from __future__ import annotations

import io

import numpy as np
import pytest

from keras_check import run_onnx
from keras_hub_model_check import (OPSETS, SMALL, assert_config_error, check_by_name,
                                   masked_inputs, requires_keras_hub, saved_models_fixture)

import kerasonnx.emit.keras_hub as keras_hub_emitters
from kerasonnx.model import load
from kerasonnx.report import inspect

# a single-output backbone's output compared as check_by_name compares it
pytestmark = [*requires_keras_hub, pytest.mark.filterwarnings(
    "ignore:The structure of `inputs` doesn't match the expected structure")]

LENGTHS = (5, 12)
BUCKETS = 6  # log buckets beyond a distance of 3


def deberta_v3_backbone(keras_hub, **options):
    return keras_hub.models.DebertaV3Backbone(**{**SMALL, "bucket_size": BUCKETS, **options})


def tokenizer(keras_hub):
    """A DebertaV3Tokenizer over a word-level sentencepiece model trained on the spot."""
    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["the quick brown fox", "the lazy dog"]), model_writer=proto,
        vocab_size=12, model_type="WORD", pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
        user_defined_symbols="[MASK]")
    return keras_hub.models.DebertaV3Tokenizer(proto=proto.getvalue())


def deberta_v3_text_classifier(keras_hub):
    """A pooler narrower (6) than the backbone, softmax probabilities, with a real
    preprocessor, which is left out."""
    preprocessor = keras_hub.models.DebertaV3TextClassifierPreprocessor(
        tokenizer(keras_hub), sequence_length=12)
    return keras_hub.models.DebertaV3TextClassifier(
        deberta_v3_backbone(keras_hub), num_classes=3, preprocessor=preprocessor,
        activation="softmax", hidden_dim=6, dropout=0.1)


def deberta_v3_masked_lm(keras_hub):
    """Wider buckets (8) over a longer maximum (16), one layer of four heads."""
    return keras_hub.models.DebertaV3MaskedLM(
        deberta_v3_backbone(keras_hub, num_layers=1, num_heads=4, bucket_size=8,
                            max_sequence_length=16), preprocessor=None)


MODELS = {"deberta_v3_backbone": deberta_v3_backbone,
          "deberta_v3_text_classifier": deberta_v3_text_classifier,
          "deberta_v3_masked_lm": deberta_v3_masked_lm}


saved_models = saved_models_fixture("keras_hub_deberta", MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset, inputs=masked_inputs, lengths=LENGTHS)


def test_the_longer_length_reaches_the_log_buckets(saved_models):
    """At the longer test length keras_hub's buckets differ from the plain relative
    positions: the log buckets are compared too."""
    model, _ = saved_models("deberta_v3_backbone")
    attention = model.get_layer("disentangled_attention_encoder_layer_0")._self_attention_layer
    length = max(LENGTHS)
    buckets = np.asarray(attention._get_rel_pos(length))[0, 0]
    distances = np.arange(length)[:, None] - np.arange(length)[None, :]
    assert (buckets != distances).any()


def run_bucket_indices(geometry: dict, length: int, opset: int) -> tuple:
    """The c2p / p2c indices ``relative_position_indices`` computes in onnxruntime for a
    (1, length, 1) input."""
    from onnx import TensorProto, helper

    from kerasonnx.emit.builder import Builder

    b = Builder(opset)
    outputs = keras_hub_emitters.relative_position_indices(b, "x", geometry, "rel")
    graph = helper.make_graph(
        b.nodes, "buckets", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(name, TensorProto.INT64, None) for name in outputs],
        list(b.initializers.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=8)
    return tuple(run_onnx(model, [np.zeros((1, length, 1), np.float32)]))


@pytest.mark.parametrize("buckets, longest, lengths", [
    (BUCKETS, 12, (5, 12, 20)), (8, 16, (12, 16, 30)),
    # the two float32 logarithms of distance 11 differ by an ulp: the bucket there is
    # 4, not the 3 of exact arithmetic
    (4, 12, (12, 30)),
    (256, 512, (300, 512, 700)),  # the released DeBERTa-v3 geometry
])
@pytest.mark.parametrize("opset", OPSETS)
def test_bucket_indices_are_keras_hubs(buckets, longest, lengths, opset):
    """The relative-position bucket indices at run time equal keras_hub's
    (``_get_rel_pos``, clipped as its c2p / p2c gathers clip them), element for element,
    at lengths up to and beyond max_sequence_length."""
    from keras_hub.src.models.deberta_v3.disentangled_self_attention import (
        DisentangledSelfAttention)

    attention = DisentangledSelfAttention(num_heads=1, hidden_dim=2, bucket_size=buckets,
                                          max_position_embeddings=longest)
    for length in lengths:
        expected = np.asarray(attention._get_rel_pos(length))[0, 0]
        c2p, p2c = run_bucket_indices({"bucket_size": buckets,
                                       "max_position_embeddings": longest}, length, opset)
        np.testing.assert_array_equal(c2p, np.clip(expected + buckets, 0, 2 * buckets - 1))
        np.testing.assert_array_equal(p2c, np.clip(buckets - expected, 0, 2 * buckets - 1))


@pytest.mark.parametrize("swap", [
    # c2p's bucket indices for p2c and p2c's for c2p
    lambda q, k, pq, pk, c2p, p2c: (q, k, pq, pk, p2c, c2p),
    # content-to-position from the position queries, position-to-content from the keys
    lambda q, k, pq, pk, c2p, p2c: (q, k, pk, pq, c2p, p2c),
])
def test_swapping_c2p_and_p2c_is_caught(saved_models, monkeypatch, swap):
    """The comparison tells content-to-position from position-to-content."""
    original = keras_hub_emitters.disentangled_scores

    def swapped(b, q, k, pq, pk, c2p, p2c, scale, base):
        return original(b, *swap(q, k, pq, pk, c2p, p2c), scale, base)

    monkeypatch.setattr(keras_hub_emitters, "disentangled_scores", swapped)
    model, path = saved_models("deberta_v3_backbone")
    with pytest.raises(AssertionError):
        check_by_name(model, path, 23, inputs=masked_inputs, lengths=LENGTHS)


def test_keeps_keras_hub_names_and_weight_paths(saved_models):
    """keras_hub's input names, the output named after the last encoder (as Keras names a
    single-output backbone's), the weights found by their saving paths."""
    _, path = saved_models("deberta_v3_backbone")
    with load(path) as graph:
        assert [t.name for t in graph.inputs] == ["token_ids", "padding_mask"]
        assert graph.output_names == ["disentangled_attention_encoder_layer_1"]
        attention = graph.node("disentangled_attention_encoder_layer_1/_self_attention_layer")
        assert attention.layer.weights.shape("query_dense/vars/0") == (8, 2, 4)
        assert graph.node("rel_embedding").layer.weights.shape("vars/0") == (2 * BUCKETS, 8)
        norm = graph.node("disentangled_attention_encoder_layer_0/_feedforward_layer_norm")
        assert norm.layer.config["epsilon"] == 1e-7


def test_preprocessor_note_names_the_tokenizer(saved_models):
    _, path = saved_models("deberta_v3_text_classifier")
    assert inspect(path)["notes"] == [
        "DebertaV3TextClassifier's preprocessor DebertaV3TextClassifierPreprocessor "
        "(tokenizer / packer) is not a layer and was left out: the model takes token_ids, "
        "padding_mask"]


@pytest.mark.parametrize("name, change, message", [
    ("deberta_v3_backbone", lambda c: c["config"].update(position_buckets=64),
     "DebertaV3Backbone config key 'position_buckets' is not one kerasonnx knows"),
    ("deberta_v3_backbone", lambda c: c["config"].update(bucket_size=1),
     "DebertaV3Backbone config key 'bucket_size' is 1; kerasonnx rebuilds it for an int "
     "of at least 2"),
    ("deberta_v3_backbone", lambda c: c["config"].update(bucket_size=24),
     "DebertaV3Backbone config key 'bucket_size' (24) leaves no log buckets below "
     "max_sequence_length (12)"),
    ("deberta_v3_backbone", lambda c: c["config"].pop("bucket_size"),
     "DebertaV3Backbone config has no 'bucket_size'"),
    ("deberta_v3_text_classifier", lambda c: c["config"].update(pooling="mean"),
     "DebertaV3TextClassifier config key 'pooling' is not one kerasonnx knows"),
    ("deberta_v3_text_classifier",
     lambda c: c["config"]["backbone"].update(class_name="BertBackbone"),
     "DebertaV3TextClassifier config key 'backbone' is a 'BertBackbone'; kerasonnx rebuilds "
     "DebertaV3TextClassifier over a DebertaV3Backbone"),
    ("deberta_v3_text_classifier", lambda c: c["config"].update(hidden_dim="6"),
     "DebertaV3TextClassifier config key 'hidden_dim' is '6'"),
    ("deberta_v3_masked_lm", lambda c: c["config"]["backbone"]["config"].update(
        dtype="bfloat16"), "DebertaV3Backbone config key 'dtype' is 'bfloat16'"),
])
def test_config_contract_is_one_line_error(saved_models, tmp_path, name, change, message):
    _, path = saved_models(name)
    assert_config_error(path, tmp_path, change, message)
