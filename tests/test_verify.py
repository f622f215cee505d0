"""verify: passes on converted fixtures of both dialects, fails (exit 1) and names the
layer when an ONNX file is tampered with, generates sensible inputs, uses given ones,
and writes a stable JSON report."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import kerasonnx
from kerasonnx.cli import main
from conftest import FIXTURES, ROOT, fixture_path, requires_keras
from kerasonnx.verify import _generated_inputs

pytestmark = requires_keras


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("dialect, name, fmt", [
    ("keras2", "three_attention", "h5"), ("keras3", "three_attention", "keras"),
    ("keras2", "three_attention", "keras"), ("keras3", "mha_4d", "keras"),
    ("keras2", "mha_keywords", "h5")])
def test_verify_passes_on_converted_fixtures(dialect, name, fmt):
    path = fixture_path(dialect, name, fmt)
    for opset in (23, 17):
        report = kerasonnx.verify(path, kerasonnx.convert(path, opset=opset).model, batches=(2,))
        assert report.passed, report.summary()
        assert report.runs[0].outputs[0].max_abs_error <= 1e-5


def test_verify_json_model_with_weights():
    model = FIXTURES / "keras3" / "three_attention.json"
    weights = FIXTURES / "keras3" / "three_attention.weights.h5"
    result = kerasonnx.convert(model, weights)
    report = kerasonnx.verify(model, result.model, weights=weights, batches=(1,))
    assert report.passed, report.summary()


def perturbed(model: onnx.ModelProto, initializer_prefix: str) -> onnx.ModelProto:
    tampered = onnx.ModelProto()
    tampered.CopyFrom(model)
    (target,) = [i for i in tampered.graph.initializer if i.name.startswith(initializer_prefix)]
    array = numpy_helper.to_array(target).copy()
    array.flat[0] += 0.25
    target.CopyFrom(numpy_helper.from_array(array, target.name))
    return tampered


def test_perturbed_weight_fails_with_exit_1_and_names_the_layer(tmp_path):
    path = fixture_path("keras2", "three_attention")
    tampered = perturbed(kerasonnx.convert(path).model, "multi_head_attention/value/kernel")
    onnx.save(tampered, tmp_path / "tampered.onnx")
    result = cli("verify", path, tmp_path / "tampered.onnx", "--json", tmp_path / "r.json")
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    assert "first diverging layer (batch 1): multi_head_attention" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is False
    assert report["runs"][0]["first_divergence"]["name"] == "multi_head_attention"
    assert [o["passed"] for o in report["runs"][0]["outputs"]] == [True, True, False]


def test_changed_attribute_is_caught_at_its_layer():
    path = fixture_path("keras3", "mha_4d")
    model = kerasonnx.convert(path, opset=17).model
    (softmax,) = [n for n in model.graph.node if n.name.startswith("mha_axis_2/core/scores")]
    softmax.attribute[0].i = 2  # softmax over the queries instead of the keys
    report = kerasonnx.verify(path, model, batches=(1,))
    assert not report.passed
    assert report.runs[0].first_divergence.name == "mha_axis_2"
    assert [o.passed for o in report.runs[0].outputs] == [True, False, True]


def test_per_layer_on_request_when_passing():
    path = fixture_path("keras3", "three_attention")
    report = kerasonnx.verify(path, kerasonnx.convert(path).model, batches=(1,), per_layer=True)
    assert report.passed
    assert [c.name for c in report.runs[0].layers] == [  # in the order Keras 3 runs them
        "multi_head_attention", "additive_attention", "attention"]
    assert "every layer output agrees" in report.summary()


def test_generated_inputs_respect_vocabulary_padding_and_masks():
    with kerasonnx.load(fixture_path("keras2", "masked_encoder")) as graph:
        ((batch, length, origin, (tokens,)),) = _generated_inputs(graph, (4,), (9,), seed=1)
    assert (batch, length, origin) == (4, 9, "generated") and tokens.shape == (4, 9)
    assert tokens.dtype == np.int32 and tokens.min() >= 0 and tokens.max() < 30
    for row in tokens:  # real tokens first, padding zeros at the tail, never all padding
        real = np.count_nonzero(row)
        assert real >= 1 and (row[:real] > 0).all() and (row[real:] == 0).all()
    assert len({np.count_nonzero(row) for row in tokens}) > 1
    with kerasonnx.load(fixture_path("keras3", "mha_keywords")) as graph:
        sets = _generated_inputs(graph, (1, 3), (7,), seed=2)
    for _, _, _, (q, v, k, mask) in sets:
        assert mask.dtype == bool and mask.shape == (len(q), 5, 6) and mask.any(-1).all()


def test_user_inputs_used_as_given(tmp_path):
    path = fixture_path("keras2", "mha_keywords")
    reference = np.load(FIXTURES / "keras2" / "mha_keywords.npz")
    inputs = tmp_path / "batch.npz"
    np.savez(inputs, **{k.removeprefix("input/"): v for k, v in reference.items()
                        if k.startswith("input/")})
    report = kerasonnx.verify(path, kerasonnx.convert(path).model, inputs=inputs)
    assert report.passed
    (run,) = report.runs
    assert (run.batch, run.inputs) == (2, str(inputs))
    np.savez(inputs, q=reference["input/q"])
    with pytest.raises(kerasonnx.ConversionError, match="no array for input"):
        kerasonnx.verify(path, kerasonnx.convert(path).model, inputs=inputs)


def test_json_report_schema(tmp_path):
    path = fixture_path("keras3", "three_attention")
    kerasonnx.convert(path).save(tmp_path / "m.onnx")
    result = cli("verify", path, tmp_path / "m.onnx", "--batch", "1,2", "--json",
                 tmp_path / "r.json", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) == {"schema", "passed", "keras_model", "onnx_model", "atol", "rtol",
                           "precision", "notes", "runs"}
    assert report["schema"] == "kerasonnx.verify/2" and report["passed"] is True
    assert report["precision"] == {"mode": "keras", "graph": ["float32"], "keras": ["float32"],
                                   "tolerance_for": "float32"}
    assert [r["batch"] for r in report["runs"]] == [1, 2]
    run = report["runs"][0]
    assert set(run) == {"batch", "length", "inputs", "passed", "outputs", "layers",
                        "first_divergence"}
    assert set(run["outputs"][0]) == {"name", "passed", "keras_shape", "onnx_shape",
                                      "keras_dtype", "onnx_dtype", "max_abs_error",
                                      "max_rel_error", "over_tolerance", "elements"}
    assert run["outputs"][0]["keras_shape"] == [1, 8, 16]


def test_convert_then_verify_and_errors(tmp_path):
    path = fixture_path("keras3", "mha_keywords")
    result = cli("convert", path, "-o", tmp_path / "m.onnx", "--verify", "--quiet")
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output
    missing = cli("verify", path, tmp_path / "nope.onnx")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    other = cli("verify", fixture_path("keras2", "three_attention"), tmp_path / "m.onnx")
    assert other.exit_code == 2 and "are they the same model" in other.stderr


def test_verify_keeps_tensorflow_out_of_the_calling_process(tmp_path):
    code = ("import sys, kerasonnx\n"
            f"path = {str(fixture_path('keras2', 'three_attention'))!r}\n"
            "report = kerasonnx.verify(path, kerasonnx.convert(path).model, batches=(1,))\n"
            "assert report.passed\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_unsafe_model_is_never_deserialized(tmp_path):
    import keras

    inputs = keras.Input((3,), name="x")
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs)).save(
        tmp_path / "lambda.keras")
    onnx.save(kerasonnx.convert(fixture_path("keras3", "three_attention")).model,
              tmp_path / "other.onnx")
    result = cli("verify", tmp_path / "lambda.keras", tmp_path / "other.onnx")
    assert result.exit_code == 2
    assert "never runs code from a model file" in result.stderr
