"""Every failure a user can cause is a one-line ConversionError naming the file or layer."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

import kerasonnx
from kerasonnx import ModelConfigError, ModelFileError, WeightError
from conftest import FIXTURES, fixture_path

K2_H5 = fixture_path("keras2", "three_attention")
K3_JSON = FIXTURES / "keras3" / "three_attention.json"
K3_WEIGHTS = FIXTURES / "keras3" / "three_attention.weights.h5"


def raises(error, match, path, weights=None):
    with pytest.raises(error, match=match) as info:
        kerasonnx.inspect(path, weights)
    message = str(info.value)
    assert "\n" not in message
    return message


def write_json(tmp_path, config, name="model.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def keras3_config():
    return json.loads(K3_JSON.read_text())


def layer(config, name):
    return next(l for l in config["config"]["layers"] if l["name"] == name)


def test_missing_file(tmp_path):
    raises(ModelFileError, "no such file", tmp_path / "nope.keras")


def test_directory(tmp_path):
    raises(ModelFileError, "is a directory", tmp_path)


@pytest.mark.parametrize("source", [fixture_path("keras3", "three_attention"), K2_H5])
def test_truncated_files(tmp_path, source):
    data = source.read_bytes()
    truncated = tmp_path / source.name
    truncated.write_bytes(data[: len(data) // 2])
    message = raises(ModelFileError, "truncated", truncated)
    assert str(truncated) in message


def test_not_a_model_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"\x00\x01 not a model \xff" * 10)
    raises(ModelFileError, "not a Keras model file", path)


def test_invalid_json(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{"class_name": "Functional", "config": {')
    raises(ModelFileError, "invalid JSON at line 1", path)


def test_json_that_is_not_a_model(tmp_path):
    raises(ModelConfigError, "not a Keras model", write_json(tmp_path, {"hello": 1}))


def test_subclassed_model(tmp_path):
    raises(ModelConfigError, "subclassed models",
           write_json(tmp_path, {"class_name": "MyModel", "config": {"layers": []}}))


def test_reference_to_missing_layer(tmp_path):
    config = keras3_config()
    node = layer(config, "attention")["inbound_nodes"][0]
    node["args"][0][1]["config"]["keras_history"] = ["ghost", 0, 0]
    message = raises(ModelConfigError, "'ghost'", write_json(tmp_path, config), K3_WEIGHTS)
    assert "'attention'" in message


def test_keras2_reference_to_missing_layer(tmp_path):
    with h5py.File(K2_H5) as f:
        config = json.loads(f.attrs["model_config"])
    layer(config, "multi_head_attention")["inbound_nodes"][0][0][3]["value"] = ["ghost", 0, 0]
    raises(ModelConfigError, "'ghost'", write_json(tmp_path, config))


def test_call_index_out_of_range(tmp_path):
    config = keras3_config()
    config["config"]["output_layers"][0] = ["attention", 3, 0]
    raises(ModelConfigError, "call 3 of layer 'attention'", write_json(tmp_path, config))


def test_cycle(tmp_path):
    config = keras3_config()
    attention = layer(config, "attention")["inbound_nodes"][0]["args"][0]
    additive = layer(config, "additive_attention")["inbound_nodes"][0]["args"][0]
    attention[0]["config"]["keras_history"] = ["additive_attention", 0, 0]
    additive[0]["config"]["keras_history"] = ["attention", 0, 0]
    message = raises(ModelConfigError, "cycle", write_json(tmp_path, config))
    assert "additive_attention, attention" in message


def test_weights_only_file_given_as_model():
    raises(ModelFileError, "weights only", FIXTURES / "keras2" / "three_attention_weights.h5")


def test_missing_legacy_weight(tmp_path):
    path = tmp_path / "model.h5"
    shutil.copy(K2_H5, path)
    with h5py.File(path, "r+") as f:
        del f["model_weights/multi_head_attention/multi_head_attention/query/kernel:0"]
    message = raises(WeightError, "'multi_head_attention'", path)
    assert "no weight 'query/kernel'" in message


def test_wrongly_shaped_keras3_weight(tmp_path):
    path = tmp_path / "model.weights.h5"
    shutil.copy(K3_WEIGHTS, path)
    with h5py.File(path, "r+") as f:
        del f["layers/multi_head_attention/key_dense/vars/0"]
        f["layers/multi_head_attention/key_dense/vars/0"] = np.zeros((16, 2, 3), "float32")
    message = raises(WeightError, "'key/kernel' has shape", K3_JSON, path)
    assert "(16, 2, 3)" in message and "(16, 2, 2)" in message


def test_weights_of_another_model(tmp_path):
    other = FIXTURES / "keras3" / "mha_keywords.weights.h5"
    raises(WeightError, "do not match the model config", K3_JSON, other)


def test_json_without_weights_still_inspects():
    report = kerasonnx.inspect(K3_JSON)
    assert {n["params"] for n in report["nodes"]} == {None}
