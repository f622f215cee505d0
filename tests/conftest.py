"""Shared test helpers: the committed fixtures and their manifest (written by real Keras)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import kerasonnx

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def load_manifest(folder: Path = FIXTURES) -> dict:
    with open(folder / "manifest.json") as f:
        return json.load(f)


def model_files(entry: dict, folder: Path = FIXTURES) -> list:
    """``(format, model path, weights path or None)`` for every saved form of a fixture."""
    files = entry["files"]
    forms = []
    for fmt in ("keras", "h5", "json"):
        if fmt in files:
            weights = folder / files["weights"] if fmt == "json" else None
            forms.append((fmt, folder / files[fmt], weights))
    return forms


def fixture_cells(folder: Path = FIXTURES) -> list:
    """pytest params: one per fixture, dialect and saved format."""
    return [pytest.param(entry, fmt, path, weights,
                         id=f"{entry['dialect']}-{entry['name']}-{fmt}")
            for entry in load_manifest(folder)["fixtures"]
            for fmt, path, weights in model_files(entry, folder)]


def fixture_path(dialect: str, name: str, fmt: str = None) -> Path:
    fmt = fmt or ("keras" if dialect == "keras3" else "h5")
    return FIXTURES / dialect / f"{name}.{fmt}"


def keras_available() -> bool:
    try:
        import importlib.util
        return all(importlib.util.find_spec(m) is not None
                   for m in ("tensorflow", "keras", "tf_keras"))
    except ValueError:
        return False


requires_keras = pytest.mark.skipif(
    not keras_available() and not os.environ.get("CI"),
    reason="needs tensorflow, keras and tf_keras (pip install -e '.[test]')")


# Keras 3.15 reports a static scores shape of (B, heads, T, T) when the key is longer than
# the query; the arrays Keras really returns are (B, heads, T, S), which is what we give.
KERAS_STATIC_SHAPE_BUGS = {("keras3", "mha_keywords", "mha")}


def assert_inspect_matches_keras(entry: dict, path, weights, folder: Path = FIXTURES):
    """inspect's view of a saved model equals what live Keras recorded in the manifest."""
    report = kerasonnx.inspect(path, weights)
    reference = np.load(folder / entry["npz"])

    assert report["dialect"] == entry["dialect"]
    assert [(t["name"], t["shape"], t["dtype"]) for t in report["inputs"]] == [
        (t["name"], t["shape"], t["dtype"]) for t in entry["inputs"]]

    assert [o["name"] for o in report["outputs"]] == [
        o["key"].removeprefix("output/") for o in entry["outputs"]]
    for ours, theirs in zip(report["outputs"], entry["outputs"]):
        actual = reference[theirs["key"]]
        assert len(ours["shape"]) == actual.ndim
        assert all(d is None or d == a for d, a in zip(ours["shape"], actual.shape)), (
            ours, actual.shape)
        assert ours["dtype"] == theirs["dtype"] == str(actual.dtype)

    assert report["unsupported"] == []
    calls = {}
    for node in report["nodes"]:
        calls.setdefault(node["layer"], []).append(node)
    for layer in entry["layers"]:
        if layer["class_name"] in ("InputLayer", "Functional", "Sequential"):
            continue
        nodes = calls[layer["name"]]
        assert {n["params"] for n in nodes} == {layer["params"]}, layer["name"]
        ours = [[o["shape"] for o in n["outputs"]] for n in nodes]
        ours_dtypes = [[o["dtype"] for o in n["outputs"]] for n in nodes]
        if (entry["dialect"], entry["name"], layer["name"]) in KERAS_STATIC_SHAPE_BUGS:
            continue
        if "/" in layer["name"]:
            # Inside a nested model Keras has one call; we inline every call of the model.
            assert all(shapes == layer["output_shapes"][0] for shapes in ours)
            assert all(d == layer["output_dtypes"][0] for d in ours_dtypes)
        else:
            assert ours == layer["output_shapes"], layer["name"]
            assert ours_dtypes == layer["output_dtypes"], layer["name"]
