"""KerasHub masked LMs, text embedders and XLM-RoBERTa's task models rebuilt from their
constructor config (Keras 3 only): tiny configs built with real keras_hub 0.32, weights
randomized, saved as ``.keras``, converted at opset 23 and 17, run in onnxruntime at batch 1
and 3 and two sequence lengths on padded token ids and random mask positions, every output
compared with keras_hub's by name."""
from __future__ import annotations

import numpy as np
import pytest

from keras_hub_model_check import (OPSETS, SMALL, VOCABULARY, assert_config_error,
                                   check_by_name, masked_inputs,
                                   output_names_fresh_and_converted, requires_keras_hub,
                                   saved_models_fixture)

from kerasonnx.model import load
from kerasonnx.report import inspect

pytestmark = requires_keras_hub

def bert_masked_lm(keras_hub):
    """With a real preprocessor (a word-piece vocabulary of its own), which is left out."""
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
        f"w{i}" for i in range(VOCABULARY - 5)]
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=12)
    return keras_hub.models.BertMaskedLM(
        keras_hub.models.BertBackbone(**SMALL, num_segments=3), preprocessor=preprocessor)


def roberta_masked_lm(keras_hub):
    return keras_hub.models.RobertaMaskedLM(keras_hub.models.RobertaBackbone(**SMALL),
                                            preprocessor=None)


def xlm_roberta_masked_lm(keras_hub):
    return keras_hub.models.XLMRobertaMaskedLM(keras_hub.models.XLMRobertaBackbone(**SMALL),
                                               preprocessor=None)


def distil_bert_masked_lm(keras_hub):
    return keras_hub.models.DistilBertMaskedLM(keras_hub.models.DistilBertBackbone(**SMALL),
                                               preprocessor=None)


def albert_masked_lm(keras_hub):
    """An embedding narrower than hidden_dim (the head projects back onto it), shared
    encoders, the tanh-approximate gelu in the head."""
    backbone = keras_hub.models.AlbertBackbone(
        **dict(SMALL, num_layers=4), embedding_dim=6, num_groups=2, num_inner_repetitions=2,
        num_segments=3)
    return keras_hub.models.AlbertMaskedLM(backbone, preprocessor=None)


def xlm_roberta_text_classifier(keras_hub):
    return keras_hub.models.XLMRobertaTextClassifier(
        keras_hub.models.XLMRobertaBackbone(**SMALL), num_classes=3, preprocessor=None,
        hidden_dim=6, dropout=0.1)


def bert_text_embedder(keras_hub):
    """Mean pooling over the padding mask, L2-normalized (the defaults)."""
    return keras_hub.models.BertTextEmbedder(
        keras_hub.models.BertBackbone(**SMALL, num_segments=3), preprocessor=None)


def bert_cls_text_embedder(keras_hub):
    """The first token, not normalized."""
    return keras_hub.models.BertTextEmbedder(
        keras_hub.models.BertBackbone(**SMALL, num_segments=3), preprocessor=None,
        pooling_mode="cls", normalize=False)


def bert_max_text_embedder(keras_hub):
    """The maximum over the kept positions, normalized."""
    return keras_hub.models.BertTextEmbedder(
        keras_hub.models.BertBackbone(**SMALL, num_segments=3), preprocessor=None,
        pooling_mode="max")


def xlm_roberta_text_embedder(keras_hub):
    """Mean pooling (its count floored at 1e-5, not BERT's 1e-9), not normalized."""
    return keras_hub.models.XLMRobertaTextEmbedder(
        keras_hub.models.XLMRobertaBackbone(**SMALL), preprocessor=None, normalize=False)


MODELS = {"bert_masked_lm": bert_masked_lm, "roberta_masked_lm": roberta_masked_lm,
          "xlm_roberta_masked_lm": xlm_roberta_masked_lm,
          "distil_bert_masked_lm": distil_bert_masked_lm, "albert_masked_lm": albert_masked_lm,
          "xlm_roberta_text_classifier": xlm_roberta_text_classifier,
          "bert_text_embedder": bert_text_embedder,
          "bert_cls_text_embedder": bert_cls_text_embedder,
          "bert_max_text_embedder": bert_max_text_embedder,
          "xlm_roberta_text_embedder": xlm_roberta_text_embedder}


saved_models = saved_models_fixture("keras_hub_masked_lm", MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_task_model_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset, inputs=masked_inputs)


def test_masked_lm_keeps_keras_hub_names_and_reads_the_tied_table(saved_models):
    """keras_hub's inputs (mask_positions among them) and its output ``mlm_head``; the
    head's projection is the backbone's token embedding transposed."""
    _, path = saved_models("roberta_masked_lm")
    with load(path) as graph:
        assert sorted(t.name for t in graph.inputs) == ["mask_positions", "padding_mask",
                                                         "token_ids"]
        assert graph.output_names == ["mlm_head"]
        backbone = graph.nodes[0].name.split("/")[0]
        table = graph.layers[f"{backbone}/embeddings/token_embedding"].weights.get("vars/0")
        projection = graph.layers["mlm_head/output_projection"].weights.get("vars/0")
        assert np.array_equal(projection, table.T)


def test_masked_lm_says_its_preprocessor_was_left_out(saved_models):
    _, path = saved_models("bert_masked_lm")
    assert inspect(path)["notes"] == [
        "BertMaskedLM's preprocessor BertMaskedLMPreprocessor (tokenizer / packer) is not a "
        "layer and was left out: the model takes token_ids, segment_ids, padding_mask, "
        "mask_positions"]
    _, path = saved_models("albert_masked_lm")  # saved without one: nothing to say
    assert inspect(path)["notes"] == []


@pytest.mark.parametrize("change, message", [
    (lambda c: c["config"].update(mask_selection_rate=0.15),
     "AlbertMaskedLM config key 'mask_selection_rate' is not one kerasonnx knows"),
    (lambda c: c["config"]["backbone"].update(class_name="BertBackbone"),
     "AlbertMaskedLM config key 'backbone' is a 'BertBackbone'; kerasonnx rebuilds "
     "AlbertMaskedLM over a AlbertBackbone"),
    (lambda c: c["config"]["backbone"]["config"].update(num_groups=3),
     "AlbertBackbone config key 'num_layers' is not a multiple of num_groups (3)"),
    (lambda c: c["config"]["backbone"]["config"].update(dtype="float16"),
     "AlbertBackbone config key 'dtype' is 'float16'"),
])
def test_masked_lm_config_contract(saved_models, tmp_path, change, message):
    _, path = saved_models("albert_masked_lm")
    assert_config_error(path, tmp_path, change, message)


def test_text_embedder_outputs_are_named_as_a_fresh_load_names_them(saved_models):
    """Keras numbers operation names per process (the models built here carry numbered
    ones): the converted output has the name a fresh process loading the file gives."""
    names = ["bert_text_embedder", "bert_cls_text_embedder", "bert_max_text_embedder",
             "xlm_roberta_text_embedder"]
    fresh, converted = output_names_fresh_and_converted([saved_models(n)[1] for n in names])
    assert converted == fresh


@pytest.mark.parametrize("change, message", [
    (lambda c: c["config"].update(pooling_mode="sum"),
     "BertTextEmbedder config key 'pooling_mode' is 'sum'; kerasonnx rebuilds it for "
     "'mean', 'cls' or 'max'"),
    (lambda c: c["config"].update(normalize=1),
     "BertTextEmbedder config key 'normalize' is 1; kerasonnx rebuilds it for a bool"),
    (lambda c: c["config"].update(truncate_dim=4),
     "BertTextEmbedder config key 'truncate_dim' is not one kerasonnx knows"),
])
def test_text_embedder_config_contract(saved_models, tmp_path, change, message):
    _, path = saved_models("bert_text_embedder")
    assert_config_error(path, tmp_path, change, message)
