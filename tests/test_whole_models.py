"""Every committed fixture, whole models included, converts and matches Keras: against the
Keras outputs stored with the fixture (no TensorFlow needed) at opsets 23 and 17, and
against live Keras through verify at two batch sizes and two sequence lengths."""
from __future__ import annotations

import numpy as np
import pytest

import kerasonnx
from conftest import FIXTURES, load_manifest, requires_keras
from keras_check import assert_same, run_onnx

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
