"""The command line: inspect output, JSON, errors without tracebacks, --help."""
from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from kerasonnx.cli import main
from conftest import FIXTURES, ROOT, fixture_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_inspect_text_shows_roles_from_keras2_kwargs():
    result = run("inspect", fixture_path("keras2", "three_attention"))
    assert result.exit_code == 0, result.output
    assert "query=input_1 value=input_2 key=input_2" in result.output
    assert "(None, 8, 16)  float32" in result.output


def test_inspect_json():
    result = run("inspect", fixture_path("keras2", "masked_encoder"), "--format", "json")
    report = json.loads(result.output)
    mha = next(n for n in report["nodes"] if n["name"] == "mha")
    assert mha["masks"] == {"query_mask": "embedding/mask", "value_mask": "embedding/mask",
                            "key_mask": "embedding/mask"}
    assert mha["params"] == 288


def test_json_model_with_weights_option():
    result = run("inspect", FIXTURES / "keras3" / "three_attention.json",
                 "--weights", FIXTURES / "keras3" / "three_attention.weights.h5")
    assert result.exit_code == 0, result.output
    assert "params 284" in result.output


def test_user_error_is_one_line_exit_2_without_traceback(tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(fixture_path("keras2", "three_attention").read_bytes()[:5000])
    process = subprocess.run([sys.executable, "-m", "kerasonnx", "inspect", str(broken)],
                             capture_output=True, text=True)
    assert process.returncode == 2
    assert process.stdout == ""
    assert process.stderr.startswith("error: ") and process.stderr.count("\n") == 1
    assert "Traceback" not in process.stderr


def test_help_explains_inputs():
    result = run("inspect", "--help")
    assert "--weights" in result.output and "--format" in result.output
    assert "query=" in result.output


def test_convert_writes_a_model_onnxruntime_runs(tmp_path):
    import numpy as np
    import onnxruntime as ort

    output = tmp_path / "model.onnx"
    result = run("convert", fixture_path("keras2", "three_attention"), "-o", output)
    assert result.exit_code == 0, result.output
    assert f"wrote {output}" in result.output
    reference = np.load(FIXTURES / "keras2" / "three_attention.npz")
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input_1": reference["input/input_1"],
                                 "input_2": reference["input/input_2"]})
    assert [o.name for o in session.get_outputs()] == [
        "attention", "additive_attention", "multi_head_attention"]
    assert np.abs(outputs[2] - reference["output/multi_head_attention"]).max() <= 1e-5


def test_convert_default_output_next_to_model(tmp_path):
    model = tmp_path / "encoder.keras"
    model.write_bytes(fixture_path("keras3", "three_attention").read_bytes())
    assert run("convert", model).exit_code == 0
    assert (tmp_path / "encoder.onnx").exists()


def test_convert_opset_below_17_is_refused(tmp_path):
    result = run("convert", fixture_path("keras3", "mha_causal"), "-o", tmp_path / "m.onnx",
                 "--opset", "16")
    assert result.exit_code == 2
    assert "opset 16 is not supported: choose 17 to 24" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_convert_lists_every_unsupported_layer_and_writes_nothing(tmp_path):
    import keras

    x = keras.Input((4, 6), name="x")
    y = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    y = keras.layers.Discretization(bin_boundaries=[0.0], name="bins")(y)
    y = keras.layers.Lambda(lambda t: t + 1.0, name="shift")(y)
    keras.Model(x, y).save(tmp_path / "model.keras")
    output = tmp_path / "m.onnx"
    output.write_bytes(b"previous")
    result = run("convert", tmp_path / "model.keras", "-o", output)
    assert result.exit_code == 2
    assert ("3 layer(s) cannot be converted yet: bins (Discretization), double (Lambda), "
            "shift (Lambda); double, shift: Lambda layers hold Python code, which kerasonnx "
            "never runs") in result.stderr
    assert output.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "model.keras"]


def test_convert_json_with_weights(tmp_path):
    import numpy as np
    import onnxruntime as ort

    output = tmp_path / "model.onnx"
    result = run("convert", FIXTURES / "keras3" / "three_attention.json", "--weights",
                 FIXTURES / "keras3" / "three_attention.weights.h5", "-o", output, "--opset", "17")
    assert result.exit_code == 0, result.output
    reference = np.load(FIXTURES / "keras3" / "three_attention.npz")
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input_1": reference["input/input_1"],
                                 "input_2": reference["input/input_2"]})
    for output_array, name in zip(outputs, ("attention", "additive_attention",
                                            "multi_head_attention")):
        assert np.abs(output_array - reference[f"output/{name}"]).max() <= 1e-5
