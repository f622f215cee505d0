"""KerasHub's layers (``keras_hub``, Keras 3 only): every case of ``keras_hub_cases`` built
with real KerasHub, weights randomized, saved as ``.keras``, converted at opset 23 and 17,
run in onnxruntime at batch 1 and 3 and two lengths, and every element compared with
Keras; plus what the composite expansion looks like to inspect and verify."""
from __future__ import annotations

import importlib.util

import pytest

from conftest import requires_keras
from keras_check import check_conversion
from keras_hub_cases import CASES

import kerasonnx
from kerasonnx.convert import convert
from kerasonnx.model import load

pytestmark = [requires_keras, pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None, reason="needs keras-hub")]

OPSETS = (23, 17)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    return CASES.cache(tmp_path_factory.mktemp("keras_hub_models"))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_hub_matches_keras(saved_models, name, opset):
    model, path = saved_models(name, "keras3")
    check_conversion(model, path, opsets=(opset,), **CASES[name].check)


def test_encoder_expands_into_known_layers(saved_models):
    """A TransformerEncoder call becomes inner calls named after its sublayers, each
    reading its weights under the encoder's; the composite call itself is kept apart."""
    _, path = saved_models("text_classifier", "keras3")
    with load(path) as graph:
        inner = [(n.name, n.class_name) for n in graph.nodes
                 if n.name.startswith("transformer_encoder/_")]
        assert inner == [
            ("transformer_encoder/_self_attention_layer", "MultiHeadAttention"),
            ("transformer_encoder/_self_attention_dropout", "Dropout"),
            ("transformer_encoder/_self_attention_layer_norm", "LayerNormalization"),
            ("transformer_encoder/_feedforward_intermediate_dense", "Dense"),
            ("transformer_encoder/_feedforward_output_dense", "Dense"),
            ("transformer_encoder/_feedforward_dropout", "Dropout"),
            ("transformer_encoder/_feedforward_layer_norm", "LayerNormalization")]
        attention = graph.node("transformer_encoder/_self_attention_layer")
        assert attention.layer.weights.shape("query_dense/vars/0") == (8, 2, 4)
        assert attention.input("attention_mask") is not None
        assert [c.name for c in graph.composites] == [
            "token_and_position_embedding", "transformer_encoder"]
        encoder = graph.composites[1]
        assert encoder.outputs[0].name == "transformer_encoder"
        assert encoder.outputs[0].producer.name == "transformer_encoder/_feedforward_layer_norm"
        # the encoder's output carries the token embedding's mask, as in Keras
        assert encoder.outputs[0].mask.name == "token_and_position_embedding/token_embedding/mask"


def test_inspect_groups_inner_calls(saved_models):
    _, path = saved_models("text_classifier", "keras3")
    report = kerasonnx.inspect(path)
    by_name = {n["name"]: n for n in report["nodes"]}
    encoder = by_name["transformer_encoder"]
    assert encoder["composite"] and encoder["depth"] == 0 and encoder["params"] == 600
    inner = by_name["transformer_encoder/_self_attention_layer"]
    assert inner["inside"] == "transformer_encoder" and inner["depth"] == 1
    names = [n["name"] for n in report["nodes"]]
    assert names.index("transformer_encoder") < names.index(
        "transformer_encoder/_self_attention_layer")
    from kerasonnx.report import render_text
    text = render_text(report)
    assert "\n  transformer_encoder  TransformerEncoder  params 600" in text
    assert "\n      transformer_encoder/_self_attention_layer  MultiHeadAttention" in text


def test_verify_runs_keras_hub_models(saved_models, tmp_path):
    """verify imports keras_hub in its Keras process and compares the composite calls'
    outputs (the encoder's as a whole) with Keras' layers; generated lengths stay within
    the position table (16 rows)."""
    _, path = saved_models("text_classifier", "keras3")
    report = kerasonnx.verify(path, convert(path).model, batches=(2,), lengths=(5, 32),
                              per_layer=True)
    assert report.passed, report.summary()
    assert [run.length for run in report.runs] == [5, 16]
    assert any("capped at 16" in note for note in report.notes)
    compared = {c.name for c in report.runs[0].layers}
    assert {"token_and_position_embedding", "transformer_encoder"} <= compared


def test_attention_operator_at_opset_23(saved_models):
    _, path = saved_models("miniature_gpt", "keras3")
    assert "Attention" in {n.op_type for n in convert(path, opset=23).model.graph.node}
    assert "Attention" not in {n.op_type for n in convert(path, opset=17).model.graph.node}


def test_keras_nlp_names(saved_models, tmp_path):
    """Files from keras_nlp (KerasHub's former name) carry keras_nlp modules and
    ``keras_nlp>`` registered names: the same layers, the same numbers."""
    import json
    import zipfile

    import numpy as np

    from keras_check import assert_same, run_onnx
    from keras_hub_cases import hub_inputs

    model, path = saved_models("translator", "keras3")
    renamed = tmp_path / "keras_nlp.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(renamed, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                text = data.decode().replace("keras_hub.src.", "keras_nlp.src.")
                data = text.replace('"keras_hub>', '"keras_nlp>').encode()
                assert "keras_hub" not in data.decode()
            target.writestr(item, data)
    with load(renamed) as graph:
        assert {c.class_name for c in graph.composites} >= {"TransformerDecoder"}
    arrays = hub_inputs(model, 3, 6, np.random.default_rng(1))
    expected = [np.asarray(model(arrays, training=False))]
    for opset in OPSETS:
        assert_same(expected, run_onnx(convert(renamed, opset=opset).model, arrays),
                    f"keras_nlp names, opset {opset}")


def test_keras_hub_classes_told_apart_from_same_named_ones():
    """A class named like a KerasHub one but from another package is not claimed."""
    from kerasonnx.layers import kind_for
    for class_name, module in (("RMSNormalization", "keras.layers"),
                               ("PositionEmbedding", "keras_pos_embd.pos_embd")):
        kind = kind_for(class_name, module, {})
        assert kind is None or kind.family != "keras_hub"
    hub = kind_for("PositionEmbedding", "keras_hub.src.layers.modeling.position_embedding",
                   {"sequence_length": 4})
    nlp = kind_for("PositionEmbedding", "keras_nlp>PositionEmbedding", {"sequence_length": 4})
    assert hub is nlp is not None and hub.family == "keras_hub"


@pytest.mark.parametrize("name", ["translator", "text_classifier"])
def test_legacy_h5_written_by_keras3(saved_models, tmp_path, name):
    """Keras 3's legacy .h5 names a KerasHub class by its registered name alone and its
    sublayers' weights by their layer names (``decoder/self_attention/query/kernel``)."""
    import numpy as np

    from keras_check import assert_same, run_onnx
    from keras_hub_cases import hub_inputs

    model, _ = saved_models(name, "keras3")
    path = tmp_path / f"{name}.h5"
    model.save(path)
    arrays = hub_inputs(model, 3, 5, np.random.default_rng(2))
    expected = [np.asarray(model(arrays if len(arrays) > 1 else arrays[0], training=False))]
    for opset in OPSETS:
        assert_same(expected, run_onnx(convert(path, opset=opset).model, arrays),
                    f"{name}.h5 opset {opset}")


def test_verify_says_when_keras_hub_is_missing(saved_models, tmp_path, monkeypatch):
    """Where keras_hub cannot be imported, verify's Keras process says what to install."""
    import os

    from kerasonnx.errors import ConversionError

    _, path = saved_models("text_classifier", "keras3")
    blocker = tmp_path / "blocked" / "keras_hub"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no keras_hub here')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(blocker.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                 if p]))
    with pytest.raises(ConversionError, match="keras-hub is not installed here"):
        kerasonnx.verify(path, convert(path).model, batches=(1,), lengths=(4,))
