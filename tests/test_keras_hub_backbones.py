"""KerasHub backbones and task models (Keras 3 only), rebuilt from their constructor config:
tiny configs built with real keras_hub 0.32, weights randomized, saved as ``.keras``,
converted at opset 23 and 17, run in onnxruntime at batch 1 and 3 and two sequence
lengths on padded token ids, every output compared with keras_hub's by name."""
from __future__ import annotations

import numpy as np
import pytest

from keras_hub_model_check import (OPSETS, SMALL, VOCABULARY, assert_config_error,
                                   check_by_name, requires_keras_hub, saved_models_fixture)

from kerasonnx.convert import convert
from kerasonnx.model import load

pytestmark = requires_keras_hub


def bert_backbone(keras_hub):
    return keras_hub.models.BertBackbone(**SMALL, num_segments=3)


def gpt2_backbone(keras_hub):
    return keras_hub.models.GPT2Backbone(**SMALL)


def distil_bert_backbone(keras_hub):
    return keras_hub.models.DistilBertBackbone(**SMALL)


def roberta_backbone(keras_hub):
    return keras_hub.models.RobertaBackbone(**SMALL)


def electra_backbone(keras_hub):
    """A narrower embedding than hidden_dim: the embeddings_projection Dense is built."""
    config = dict(SMALL, vocab_size=SMALL["vocabulary_size"], embedding_dim=6)
    del config["vocabulary_size"]
    return keras_hub.models.ElectraBackbone(**config, num_segments=3)


def albert_backbone(keras_hub):
    """Two groups of two shared encoders, each group called twice in turn."""
    return keras_hub.models.AlbertBackbone(**dict(SMALL, num_layers=4), embedding_dim=6,
                                           num_groups=2, num_inner_repetitions=2,
                                           num_segments=3, dropout=0.1)


def opt_backbone(keras_hub):
    return keras_hub.models.OPTBackbone(**SMALL)


def llama_backbone(keras_hub):
    """Grouped-query attention (4 query heads over 2 key/value heads), untied embedding."""
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=8, intermediate_dim=16, rope_max_wavelength=500,
        rope_position_scaling_factor=2.0, layer_norm_epsilon=1e-5)


def mistral_backbone(keras_hub):
    """A sliding window shorter than the longer test sequence, a head_dim of its own."""
    return keras_hub.models.MistralBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=8, intermediate_dim=16, rope_max_wavelength=500, rope_scaling_factor=2.0,
        sliding_window=3, head_dim=4, layer_norm_epsilon=1e-5)


def qwen_backbone(keras_hub):
    """Qwen 2: biased query / key / value, tied embedding, rotary scaling."""
    return keras_hub.models.QwenBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=8, intermediate_dim=16, rope_max_wavelength=500, rope_scaling_factor=2.0,
        layer_norm_epsilon=1e-5)


def bert_text_classifier(keras_hub):
    """With a real preprocessor (a word-piece vocabulary of its own), which is left out."""
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
        f"w{i}" for i in range(VOCABULARY - 5)]
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=12)
    return keras_hub.models.BertTextClassifier(bert_backbone(keras_hub), num_classes=3,
                                               preprocessor=preprocessor,
                                               activation="softmax", dropout=0.2)


def albert_text_classifier(keras_hub):
    return keras_hub.models.AlbertTextClassifier(albert_backbone(keras_hub), num_classes=2,
                                                 preprocessor=None, dropout=0.1)


def distil_bert_text_classifier(keras_hub):
    """A pooled_dense narrower than the backbone (hidden_dim), exact-gelu encoders."""
    return keras_hub.models.DistilBertTextClassifier(
        distil_bert_backbone(keras_hub), num_classes=4, preprocessor=None, hidden_dim=6)


def roberta_text_classifier(keras_hub):
    return keras_hub.models.RobertaTextClassifier(roberta_backbone(keras_hub), num_classes=3,
                                                  preprocessor=None, activation="softmax")


def gpt2_causal_lm(keras_hub):
    return keras_hub.models.GPT2CausalLM(gpt2_backbone(keras_hub), preprocessor=None)


def opt_causal_lm(keras_hub):
    return keras_hub.models.OPTCausalLM(opt_backbone(keras_hub), preprocessor=None)


def llama_causal_lm(keras_hub):
    return keras_hub.models.LlamaCausalLM(llama_backbone(keras_hub), preprocessor=None)


def mistral_causal_lm(keras_hub):
    return keras_hub.models.MistralCausalLM(mistral_backbone(keras_hub), preprocessor=None)


def qwen_causal_lm(keras_hub):
    return keras_hub.models.QwenCausalLM(qwen_backbone(keras_hub), preprocessor=None)


MODELS = {"bert_backbone": bert_backbone, "gpt2_backbone": gpt2_backbone,
          "distil_bert_backbone": distil_bert_backbone, "roberta_backbone": roberta_backbone,
          "electra_backbone": electra_backbone, "opt_backbone": opt_backbone,
          "albert_backbone": albert_backbone, "llama_backbone": llama_backbone,
          "mistral_backbone": mistral_backbone, "mistral_causal_lm": mistral_causal_lm,
          "qwen_backbone": qwen_backbone, "qwen_causal_lm": qwen_causal_lm,
          "albert_text_classifier": albert_text_classifier,
          "distil_bert_text_classifier": distil_bert_text_classifier,
          "roberta_text_classifier": roberta_text_classifier,
          "bert_text_classifier": bert_text_classifier, "gpt2_causal_lm": gpt2_causal_lm,
          "opt_causal_lm": opt_causal_lm, "llama_causal_lm": llama_causal_lm}


saved_models = saved_models_fixture("keras_hub_backbones", MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_backbone_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset)


def test_bert_keeps_keras_hub_names_and_weight_paths(saved_models):
    """The rebuilt graph has keras_hub's layer names, its inputs and outputs, and reads
    every weight the file holds."""
    _, path = saved_models("bert_backbone")
    with load(path) as graph:
        assert [t.name for t in graph.inputs] == ["token_ids", "segment_ids", "padding_mask"]
        assert graph.output_names == ["sequence_output", "pooled_output"]
        names = {node.name for node in graph.nodes + graph.composites}
        assert {"token_embedding", "segment_embedding", "embeddings_layer_norm",
                "transformer_layer_0", "transformer_layer_1", "pooled_dense"} <= names
        attention = graph.node("transformer_layer_1/_self_attention_layer")
        assert attention.layer.weights.shape("query_dense/vars/0") == (8, 2, 4)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["config"].update(rope_theta=10000), "config key 'rope_theta' is not one"),
    (lambda c: c["config"].update(num_heads=3),
     "'hidden_dim' (8) is not a multiple of num_heads"),
    (lambda c: c["config"].update(num_layers=0), "config key 'num_layers' is 0"),
    (lambda c: c["config"].update(dtype="bfloat16"), "config key 'dtype' is 'bfloat16'"),
    (lambda c: c.update(class_name="FalconBackbone"),
     "'FalconBackbone' is a KerasHub model kerasonnx cannot rebuild from its config; it "
     "rebuilds AlbertBackbone, "),
])
def test_unknown_config_is_one_line_error(saved_models, tmp_path, change, message):
    _, path = saved_models("gpt2_backbone")
    assert_config_error(path, tmp_path, change, message)


def test_task_model_says_its_preprocessor_was_left_out(saved_models, tmp_path):
    from click.testing import CliRunner

    from kerasonnx.cli import main
    from kerasonnx.report import inspect

    _, path = saved_models("bert_text_classifier")
    note = ("BertTextClassifier's preprocessor BertTextClassifierPreprocessor (tokenizer / "
            "packer) is not a layer and was left out: the model takes token_ids, "
            "segment_ids, padding_mask")
    assert inspect(path)["notes"] == [note]
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [f"note: {note}"]
    _, path = saved_models("gpt2_causal_lm")  # saved without one: nothing to say
    assert inspect(path)["notes"] == []


def test_causal_lm_reads_the_tied_embedding_under_the_backbone(saved_models):
    _, path = saved_models("gpt2_causal_lm")
    with load(path) as graph:
        assert graph.output_names == ["logits"]
        logits = graph.node("token_embedding")
        assert logits.arguments.get("reverse") is True
        backbone = graph.nodes[0].name.split("/")[0]  # gpt2_backbone, _n when not the first
        table = graph.node(f"{backbone}/token_embedding").layer.weights.get("vars/0")
        assert np.array_equal(logits.layer.weights.get("vars/0"), table)


def test_verify_feeds_and_compares_by_name(saved_models, tmp_path):
    """verify runs the backbone on its dict inputs and compares its dict outputs by name,
    and its layers by their keras_hub names."""
    from kerasonnx.verify import verify

    _, path = saved_models("bert_backbone")
    onnx_path = tmp_path / "bert.onnx"
    convert(path).save(onnx_path)
    report = verify(path, onnx_path, batches=(2,), lengths=(6,), per_layer=True)
    assert report.passed
    assert [c.name for c in report.runs[0].outputs] == ["sequence_output", "pooled_output"]
    assert "transformer_layer_1" in {c.name for c in report.runs[0].layers}

