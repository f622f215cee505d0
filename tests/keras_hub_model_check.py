"""Shared by the KerasHub backbone and task-model tests: tiny configs built with real
keras_hub 0.32, weights randomized, saved as ``.keras`` once per test module, converted and
run in onnxruntime at batch 1 and 3 and two sequence lengths on padded inputs, every output
compared with keras_hub's by name."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import requires_keras
from keras_check import ATOL, assert_same, randomize, run_onnx

from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from kerasonnx.model import load

requires_keras_hub = [requires_keras, pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None, reason="needs keras-hub")]

OPSETS = (23, 17)
BATCHES = (1, 3)
LENGTHS = (5, 9)
VOCABULARY = 40
MASKS_PER_SEQUENCE = 3
SMALL = {"vocabulary_size": VOCABULARY, "num_layers": 2, "num_heads": 2, "hidden_dim": 8,
         "intermediate_dim": 16, "max_sequence_length": 12}


def saved_model_cache(folder, builders: dict, scale: float = 0.5):
    """``get(name)``: (model, path) of ``builders[name](keras_hub)``, built once with seed 7,
    weights randomized (normal * ``scale``), saved as ``folder/<name>.keras``."""
    cache = {}

    def get(name: str):
        if name not in cache:
            import keras
            import keras_hub
            keras.utils.set_random_seed(7)
            model = builders[name](keras_hub)
            randomize(model, scale=scale)
            path = folder / f"{name}.keras"
            model.save(path)
            cache[name] = (model, path)
        return cache[name]

    return get


def saved_models_fixture(folder: str, builders: dict, scale: float = 0.5):
    """A module-scoped pytest fixture giving ``saved_model_cache(builders, scale)`` in a new
    temporary folder named after ``folder``: a test module's ``saved_models``."""

    @pytest.fixture(scope="module")
    def saved_models(tmp_path_factory):
        return saved_model_cache(tmp_path_factory.mktemp(folder), builders, scale)

    return saved_models


def token_inputs(model, batch: int, length: int, rng) -> dict:
    """Token ids with padding zeros (row 1 padded at its tail, row 2 all padding but its
    first token), their padding mask, and segment ids where the model takes them."""
    ids = rng.integers(1, VOCABULARY, size=(batch, length)).astype("int32")
    if batch > 1:
        ids[1, -2:] = 0
    if batch > 2:
        ids[2, 1:] = 0
    arrays = {"token_ids": ids, "padding_mask": (ids != 0).astype("int32")}
    names = {t.name.split(":")[0] for t in model.inputs}
    if "segment_ids" in names:
        arrays["segment_ids"] = rng.integers(0, 3, size=(batch, length)).astype("int32")
    return arrays


def head_padded_inputs(model, batch: int, length: int, rng) -> dict:
    """``token_inputs``, and at batch 3 the first row padded at its head: its first query
    attends no key, which Gemma's attention zeroes."""
    arrays = token_inputs(model, batch, length, rng)
    if batch > 2:
        arrays["token_ids"][0, :2] = 0
        arrays["padding_mask"][0, :2] = 0
    return arrays


def masked_inputs(model, batch: int, length: int, rng) -> dict:
    """``token_inputs`` and, where the model takes them, ``mask_positions``: random
    positions in the sequence, padding ones included, a position repeated in the first
    row."""
    arrays = token_inputs(model, batch, length, rng)
    if "mask_positions" in {t.name.split(":")[0] for t in model.inputs}:
        positions = rng.integers(0, length, size=(batch, MASKS_PER_SEQUENCE)).astype("int32")
        positions[0, -1] = positions[0, 0]
        arrays["mask_positions"] = positions
    return arrays


def check_by_name(model, path, opset: int, inputs=token_inputs, lengths=LENGTHS,
                  atol: float = ATOL) -> None:
    """Convert ``path`` at ``opset`` and compare every output, by name, with ``model`` on
    ``inputs(model, batch, length, rng)`` for each batch size and length."""
    onnx_model = convert(path, opset=opset).model
    assert "Einsum" not in {n.op_type for n in onnx_model.graph.node}
    session_inputs = [i.name for i in onnx_model.graph.input]
    output_names = [o.name for o in onnx_model.graph.output]
    rng = np.random.default_rng(5)
    for batch in BATCHES:
        for length in lengths:
            arrays = inputs(model, batch, length, rng)
            assert sorted(session_inputs) == sorted(arrays)
            expected = model(arrays, training=False)
            if not isinstance(expected, dict):
                expected = {output_names[0]: expected}
            assert sorted(output_names) == sorted(expected)
            actual = run_onnx(onnx_model, [arrays[name] for name in session_inputs])
            assert_same([np.asarray(expected[name]) for name in output_names], actual,
                        f"{path.name} opset {opset} batch {batch} length {length}", atol)


def resaved(path, tmp_path, change):
    """A copy of the saved model whose config.json ``change(config)`` edits (the model's
    constructor arguments: ``config["config"]``)."""
    with zipfile.ZipFile(path) as source:
        entries = {name: source.read(name) for name in source.namelist()}
    config = json.loads(entries["config.json"])
    change(config)
    entries["config.json"] = json.dumps(config).encode()
    copy = tmp_path / path.name
    with zipfile.ZipFile(copy, "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)
    return copy


def assert_config_error(path, tmp_path, change, message: str) -> None:
    """Converting the copy of the saved model ``change`` edits (see ``resaved``) is a
    one-line ConversionError containing ``message``."""
    with pytest.raises(ConversionError, match=re.escape(message)) as raised:
        convert(resaved(path, tmp_path, change))
    assert "\n" not in str(raised.value)


def output_names_fresh_and_converted(paths) -> tuple:
    """(the first output name of each saved model as a fresh process loading it names it,
    the output names kerasonnx gives them): Keras numbers operation names per process, so
    a model built in the test process may carry other ones."""
    script = ("import sys, keras, keras_hub\n"
              "for path in sys.argv[1:]:\n"
              "    keras.backend.clear_session()  # names numbered as in a fresh process\n"
              "    print(keras.saving.load_model(path).output_names[0])\n")
    fresh = subprocess.run([sys.executable, "-c", script, *map(str, paths)],
                           capture_output=True, text=True, check=True).stdout.split()
    converted = []
    for path in paths:
        with load(path) as graph:
            converted += graph.output_names
    return fresh, converted
