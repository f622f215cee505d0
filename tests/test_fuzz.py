"""Fuzzing the contract: damaged and hostile files made at test time from the committed
fixtures, by seeded mutations, in both dialects and the three saved forms (.keras, .h5,
JSON + weights). For every case, ``convert`` and ``inspect`` through the command line:

- exit status 0, or 2 with exactly one line on stderr, ``error: <file>: ...``, and no
  traceback; 2 whenever the mutation makes a file Keras could not have written;
- nothing written on failure (no ONNX file, no temporary file beside it);
- code planted in the model never runs.

The command line runs in-process (Click's runner) to keep the suite fast; a few cases run
in a real subprocess to show the process behaves the same.
"""
from __future__ import annotations

import base64
import copy
import io
import json
import marshal
import os
import random
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from kerasonnx.cli import main
from conftest import FIXTURES, ROOT

OK, ERROR = 0, 2
EITHER = {OK, ERROR}


@dataclass(frozen=True)
class Base:
    """A committed fixture to mutate: its form, model file and (JSON) weights file."""

    dialect: str
    form: str  # "keras", "h5" or "json"
    model: str
    weights: str = None

    @property
    def id(self) -> str:
        return f"{self.dialect}-{Path(self.model).stem}-{self.form}"


BASES = [
    Base("keras3", "keras", "keras3/three_attention.keras"),
    Base("keras3", "keras", "keras3/masked_encoder.keras"),
    Base("keras3", "keras", "keras3/nested_twice.keras"),
    Base("keras3", "keras", "keras3/bilstm_attention.keras"),
    Base("keras3", "h5", "keras3/three_attention.h5"),
    Base("keras3", "json", "keras3/three_attention.json", "keras3/three_attention.weights.h5"),
    Base("keras2", "h5", "keras2/three_attention.h5"),
    Base("keras2", "h5", "keras2/masked_encoder.h5"),
    Base("keras2", "h5", "keras2/kmh_attention.h5"),
    Base("keras2", "h5", "keras2/nested_twice.h5"),
    Base("keras2", "keras", "keras2/three_attention.keras"),
    Base("keras2", "json", "keras2/three_attention.json", "keras2/three_attention_weights.h5"),
]


# ---------------------------------------------------------------- reading and writing


def read_config(base: Base) -> dict:
    path = FIXTURES / base.model
    if base.form == "keras":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    if base.form == "h5":
        with h5py.File(path) as f:
            return json.loads(f.attrs["model_config"])
    return json.loads(path.read_text())


def rewrite_zip(source: Path, target: Path, replace: dict) -> None:
    """Copy a zip, replacing members by name (bytes, or a callable writing a stream)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename not in replace:
                new.writestr(info, old.read(info))
        for name, data in replace.items():
            if callable(data):  # streamed and deflated: a small file that inflates hugely
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with new.open(info, "w", force_zip64=True) as member:
                    data(member)
            else:
                new.writestr(name, data)


def write_config(base: Base, folder: Path, text: str) -> tuple:
    """The base with its config replaced by ``text``: (model path, weights path)."""
    model = folder / Path(base.model).name
    if base.form == "keras":
        rewrite_zip(FIXTURES / base.model, model, {"config.json": text.encode()})
    elif base.form == "h5":
        shutil.copy(FIXTURES / base.model, model)
        with h5py.File(model, "r+") as f:
            f.attrs["model_config"] = text
    else:
        model.write_text(text)
    return model, weights_copy(base, folder)


def weights_copy(base: Base, folder: Path):
    if base.weights is None:
        return None
    target = folder / Path(base.weights).name
    if not target.exists():
        shutil.copy(FIXTURES / base.weights, target)
    return target


def edit_weights(base: Base, folder: Path, edit) -> tuple:
    """The base with ``edit(h5py.File)`` applied to the HDF5 file holding its weights."""
    model = folder / Path(base.model).name
    if base.form == "keras":
        with zipfile.ZipFile(FIXTURES / base.model) as archive:
            raw = archive.read("model.weights.h5")
        inner = folder / "model.weights.h5"
        inner.write_bytes(raw)
        with h5py.File(inner, "r+") as f:
            edit(f)
        rewrite_zip(FIXTURES / base.model, model, {"model.weights.h5": inner.read_bytes()})
        inner.unlink()
        return model, None
    if base.form == "h5":
        shutil.copy(FIXTURES / base.model, model)
        with h5py.File(model, "r+") as f:
            edit(f)
        return model, None
    shutil.copy(FIXTURES / base.model, model)
    weights = weights_copy(base, folder)
    with h5py.File(weights, "r+") as f:
        edit(f)
    return model, weights


def layer_datasets(f: h5py.File) -> list:
    """The weight datasets of the model's layers, sorted by path."""
    names = []
    root = f["model_weights"] if "model_weights" in f else f

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and "seed_generator" not in name:
            names.append(f"{root.name.rstrip('/')}/{name}")

    root.visititems(visit)
    return sorted(names)


def model_layers(config: dict, rng: random.Random, classes=None) -> list:
    """(model body, layer entry) pairs over the model and nested models."""
    found = []

    def walk(model):
        for layer in model.get("config", {}).get("layers", []):
            if classes is None or layer.get("class_name") in classes:
                found.append((model, layer))
            if layer.get("class_name") in ("Functional", "Sequential", "Model"):
                walk(layer)

    walk(config)
    return found


# ---------------------------------------------------------------- mutations
# Each returns (model path, weights path, expected exit statuses).

WRONG_VALUES = [None, "abc", -3, 0, -1, 10**15, 2.5, True, [], {}, [1, "x"], {"a": 1}]
DIM_KEYS = ("units", "num_heads", "key_dim", "head_num", "output_dim", "input_dim")


def truncate(base: Base, folder: Path, rng: random.Random):
    target_weights = base.weights is not None and rng.random() < 0.5
    source = FIXTURES / (base.weights if target_weights else base.model)
    data = source.read_bytes()
    cut = rng.randrange(0, len(data))
    model, weights = write_copy(base, folder)
    (weights if target_weights else model).write_bytes(data[:cut])
    return model, weights, {ERROR}


def write_copy(base: Base, folder: Path) -> tuple:
    model = folder / Path(base.model).name
    shutil.copy(FIXTURES / base.model, model)
    return model, weights_copy(base, folder)


def flip_bytes(base: Base, folder: Path, rng: random.Random):
    """Flip bytes inside the HDF5 data, through the zip when it is a .keras (the zip's CRC
    is recomputed, so only HDF5 sees the damage)."""
    model, weights = write_copy(base, folder)
    if base.form == "keras":
        with zipfile.ZipFile(model) as archive:
            raw = bytearray(archive.read("model.weights.h5"))
    else:
        target = weights if base.form == "json" else model
        raw = bytearray(target.read_bytes())
    # Half the cases hit the first 4 KB, where HDF5 keeps superblock and object headers.
    span = min(len(raw), 4096) if rng.random() < 0.5 else len(raw)
    for _ in range(rng.randint(1, 16)):
        raw[rng.randrange(span)] ^= 1 << rng.randrange(8)
    if base.form == "keras":
        rewrite_zip(FIXTURES / base.model, model, {"model.weights.h5": bytes(raw)})
    else:
        target.write_bytes(bytes(raw))
    return model, weights, EITHER


def config_type(base: Base, folder: Path, rng: random.Random):
    """A key of a layer's config gets a value of another JSON type or range."""
    config = read_config(base)
    _, layer = rng.choice(model_layers(config, rng))
    body = layer["config"]
    known = [k for k in DIM_KEYS if k in body]
    if known and rng.random() < 0.6:
        key = rng.choice(known)
        value = rng.choice([None, "8", -2, 0, 10**12, 3.5, [4]])
        expected = {ERROR}
    else:
        key = rng.choice(sorted(body))
        value = rng.choice(WRONG_VALUES)
        expected = EITHER
    body[key] = value
    return (*write_config(base, folder, json.dumps(config)), expected)


def config_structure(base: Base, folder: Path, rng: random.Random):
    """Surgery Keras could not have done: null configs, missing class names, negative or
    string input shapes, duplicate names, empty models, references out of range."""
    config = read_config(base)
    layers = model_layers(config, rng)
    what = rng.choice(["null_config", "class_name", "batch_shape", "negative_dim",
                       "duplicate", "empty", "node_index", "tensor_index", "layer_type",
                       "inbound_type", "drop_required"])
    model, layer = rng.choice(layers)
    if what == "null_config":
        layer["config"] = None
    elif what == "class_name":
        layer["class_name"] = rng.choice([None, 7, "", ["Dense"]])
    elif what in ("batch_shape", "negative_dim"):
        inputs = model_layers(config, rng, classes=("InputLayer",))
        _, layer = rng.choice(inputs)
        key = "batch_shape" if "batch_shape" in layer["config"] else "batch_input_shape"
        if what == "batch_shape":
            layer["config"][key] = rng.choice(["(None, 8, 16)", 16, {"a": 1}, [None, "8"]])
        else:
            shape = list(layer["config"][key])
            shape[rng.randrange(1, len(shape))] = rng.choice([-1, -7, -(10**6), 10**13])
            layer["config"][key] = shape
    elif what == "duplicate":
        named = [l for _, l in layers if l.get("class_name") != "InputLayer"]
        first, second = rng.sample(named, 2) if len(named) > 1 else (named[0], named[0])
        if first is second:
            model["config"]["layers"].append(copy.deepcopy(first))
        else:
            name = first.get("name") or first["config"]["name"]
            second["name"] = second["config"]["name"] = name
    elif what == "empty":
        config["config"]["layers"] = []
    elif what in ("node_index", "tensor_index"):
        if not mutate_reference(config, rng, what):
            config["config"]["layers"] = []
    elif what == "layer_type":
        model["config"]["layers"][model["config"]["layers"].index(layer)] = rng.choice(
            [None, "Dense", 3, ["Dense"]])
    elif what == "inbound_type":
        layer["inbound_nodes"] = rng.choice(["x", 5, {"args": 3}, [[["ghost"]]]])
        if layer.get("class_name") == "InputLayer":
            layer["config"] = None
    else:  # drop a key Keras always writes
        dims = [(l, k) for _, l in layers for k in ("units", "num_heads", "key_dim",
                                                    "head_num", "batch_shape",
                                                    "batch_input_shape")
                if k in l.get("config", {})]
        if dims:
            owner, key = rng.choice(dims)
            owner["config"][key] = None
        else:
            layer["config"] = None
    return (*write_config(base, folder, json.dumps(config)), {ERROR})


def mutate_reference(config: dict, rng: random.Random, what: str) -> bool:
    """Point one tensor reference (Keras 2 list or Keras 3 keras_history) at a node or a
    tensor index the layer does not have."""
    refs = []

    def walk(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if isinstance(
                value.get("config"), dict) else None
            if value.get("class_name") == "__keras_tensor__" and history:
                refs.append(history)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            if (len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int)
                    and isinstance(value[2], int)):
                refs.append(value)
            for item in value:
                walk(item)

    for _, layer in model_layers(config, rng):
        walk(layer.get("inbound_nodes"))
    if not refs:
        return False
    ref = rng.choice(refs)
    slot = 1 if what == "node_index" else 2
    ref[slot] = rng.choice([5, 17, -1, -4])
    return True


def config_depth(base: Base, folder: Path, rng: random.Random):
    """JSON nested far deeper than any Keras config, up to 100,000 levels."""
    depth = rng.choice([250, 1000, 5000, 100_000])
    config = read_config(base)
    _, layer = rng.choice(model_layers(config, rng))
    layer["config"]["deep"] = "@@DEEP@@"
    bracket = rng.choice(["[]", "{}"])
    if bracket == "[]":
        nested = "[" * depth + "]" * depth
    else:
        nested = '{"a":' * depth + "1" + "}" * depth
    text = json.dumps(config).replace('"@@DEEP@@"', nested)
    return (*write_config(base, folder, text), {ERROR})


def weight_surgery(base: Base, folder: Path, rng: random.Random):
    """A weight stored as bytes or strings, reshaped, deleted, or declaring a size the file
    does not hold."""
    what = rng.choice(["bytes", "strings", "shape", "rank", "missing", "huge"])

    def edit(f):
        name = rng.choice(layer_datasets(f))
        dataset = f[name]
        shape, dtype = dataset.shape, dataset.dtype
        del f[name]
        if what == "bytes":
            f.create_dataset(name, data=np.full(shape, b"abcd", dtype="S4"))
        elif what == "strings":
            f.create_dataset(name, data=np.array(["w"] * int(np.prod(shape)), dtype=object)
                             .reshape(shape), dtype=h5py.string_dtype())
        elif what == "shape":
            wrong = (shape[0] + 1,) + shape[1:] if shape else (2,)
            f.create_dataset(name, data=np.zeros(wrong, dtype))
        elif what == "rank":
            f.create_dataset(name, data=np.zeros(shape + (2,), dtype))
        elif what == "huge":
            # Declared, never written: HDF5 would return fill values for 4 TB.
            f.create_dataset(name, shape=(2**20,) * 2 + tuple(shape[2:]), dtype="float32")

    return (*edit_weights(base, folder, edit), {ERROR})


def planted_code(base: Base, folder: Path, rng: random.Random):
    """A Lambda layer whose marshal'd code would create a marker file if it ever ran."""
    marker = folder / "CODE_RAN"
    code = compile(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]",
                   "<planted>", "eval")
    function = code.co_consts[0] if rng.random() < 0.5 else code
    payload = base64.b64encode(marshal.dumps(function)).decode()
    config = read_config(base)
    model, layer = rng.choice([(m, l) for m, l in model_layers(config, rng)
                               if l.get("class_name") != "InputLayer"] or
                              model_layers(config, rng))
    body = layer["config"]
    if base.dialect == "keras3":
        body["function"] = {"class_name": "__lambda__",
                            "config": {"code": payload, "defaults": None, "closure": None}}
    else:
        body["function"] = [payload, None, None]
        body["function_type"] = "lambda"
    layer["class_name"] = "Lambda"
    layer.pop("module", None)
    layer.pop("registered_name", None)
    # inspect shows a Lambda like any layer it cannot convert; convert refuses it.
    return (*write_config(base, folder, json.dumps(config)),
            {"convert": {ERROR}, "inspect": EITHER})


def hostile_size(base: Base, folder: Path, rng: random.Random):
    """Absurd sizes: dims no tensor has, and (for the zip) a member that would inflate
    past the limits."""
    config = read_config(base)
    what = rng.choice(["dim", "input_dim", "weights_bomb"] if base.form == "keras"
                      else ["dim", "input_dim"])
    if what == "weights_bomb":
        zeros = b"\0" * 2**20

        def bomb(stream):
            for _ in range(300):
                stream.write(zeros)

        model = folder / Path(base.model).name
        rewrite_zip(FIXTURES / base.model, model, {"model.weights.h5": bomb})
        return model, None, {ERROR}
    if what == "dim":
        dims = [(l, k) for _, l in model_layers(config, rng) for k in DIM_KEYS
                if k in l["config"]]
        owner, key = rng.choice(dims)
        owner["config"][key] = rng.choice([2**31, 10**12, 2**62])
    else:
        _, layer = rng.choice(model_layers(config, rng, classes=("InputLayer",)))
        key = "batch_shape" if "batch_shape" in layer["config"] else "batch_input_shape"
        shape = list(layer["config"][key])
        shape[-1] = rng.choice([2**31, 10**15])
        layer["config"][key] = shape
    return (*write_config(base, folder, json.dumps(config)), {ERROR})


FAMILIES = {
    "truncate": (truncate, 5),
    "flip": (flip_bytes, 6),
    "config_type": (config_type, 6),
    "config_structure": (config_structure, 8),
    "config_depth": (config_depth, 2),
    "weights": (weight_surgery, 5),
    "planted_code": (planted_code, 2),
    "hostile_size": (hostile_size, 2),
}

CASES = [pytest.param(family, base, seed, id=f"{family}-{base.id}-{seed}")
         for family, (_, count) in FAMILIES.items()
         for base in BASES
         for seed in range(count)]


# ---------------------------------------------------------------- the contract


def run_cli(args: list):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_contract(result, expected: set, model: Path, what: str) -> None:
    """Exit status as expected; on error one ``error: <file>:`` line, no traceback."""
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), f"{what}: raised {result.exception!r}"
    assert result.exit_code in expected, (
        f"{what}: exit {result.exit_code}, expected {sorted(expected)}; "
        f"stderr {result.stderr!r}")
    if result.exit_code == ERROR:
        assert result.stderr.startswith("error: "), result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
        assert "Traceback" not in result.stderr
        assert str(model.parent) in result.stderr or "error: " in result.stderr
        assert result.stdout == ""
    else:
        assert result.stderr == "", result.stderr


def check_case(model: Path, weights, expected, folder: Path) -> None:
    if not isinstance(expected, dict):
        expected = {"convert": expected, "inspect": expected}
    extra = ["--weights", weights] if weights is not None else []
    out = folder / "out"
    out.mkdir()
    before = sorted(p.name for p in folder.iterdir())
    converted = run_cli(["convert", model, "-o", out / "model.onnx", *extra])
    assert_contract(converted, expected["convert"], model, "convert")
    if converted.exit_code == OK:
        assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
        onnx.checker.check_model(onnx.load(out / "model.onnx"))
    else:
        assert list(out.iterdir()) == [], "convert left files behind after an error"
    assert sorted(p.name for p in folder.iterdir()) == before, "files appeared"
    inspected = run_cli(["inspect", model, "--format", "json", *extra])
    assert_contract(inspected, expected["inspect"], model, "inspect")
    if inspected.exit_code == OK:
        json.loads(inspected.stdout)
    assert not (folder / "CODE_RAN").exists(), "code from the model file ran"


@pytest.mark.parametrize("family, base, seed", CASES)
def test_mutation_gets_the_contract(tmp_path, family, base, seed):
    mutate, _ = FAMILIES[family]
    rng = random.Random(f"{family}/{base.id}/{seed}")
    folder = tmp_path / "case"
    folder.mkdir()
    model, weights, expected = mutate(base, folder, rng)
    check_case(model, weights, expected, folder)


def test_enough_cases():
    assert len(CASES) >= 300
    assert {b.dialect for b in BASES} == {"keras2", "keras3"}
    assert {b.form for b in BASES} == {"keras", "h5", "json"}


# ---------------------------------------------------------------- beyond the mutations


def test_inflated_config_is_refused_with_a_bounded_read(tmp_path):
    """A config.json inflating to 300 MB of whitespace around an empty layer list."""
    base = BASES[0]
    chunk = b" " * 2**20

    def config(stream):
        stream.write(b'{"class_name": "Functional", "config": {"layers": [')
        for _ in range(300):
            stream.write(chunk)
        stream.write(b"]}}")

    model = tmp_path / "bomb.keras"
    rewrite_zip(FIXTURES / base.model, model, {"config.json": config})
    assert model.stat().st_size < 5 * 2**20
    for command in (["convert", model, "-o", tmp_path / "out.onnx"], ["inspect", model]):
        result = run_cli(command)
        assert_contract(result, {ERROR}, model, command[0])
        assert "config.json" in result.stderr and "inflates" in result.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_huge_json_file_is_refused(tmp_path):
    model = tmp_path / "big.json"
    with open(model, "wb") as f:
        f.write(b'{"class_name": "Functional", "config": {"layers": []}}')
        f.truncate(40 * 2**20)  # sparse: 40 MB of NUL bytes after the JSON
    result = run_cli(["inspect", model])
    assert_contract(result, {ERROR}, model, "inspect")


def test_reversed_config_does_not_take_quadratic_time(tmp_path):
    """Thousands of layers listed last-first: resolved in linear time, not a pass each."""
    import time

    count = 3000
    layers = [{"class_name": "InputLayer", "name": "x", "config": {
        "name": "x", "batch_input_shape": [None, 4], "dtype": "float32"}, "inbound_nodes": []}]
    previous = "x"
    chain = []
    for i in range(count):
        name = f"relu_{i}"
        chain.append({"class_name": "ReLU", "name": name, "config": {"name": name},
                      "inbound_nodes": [[[previous, 0, 0, {}]]]})
        previous = name
    layers += reversed(chain)
    config = {"class_name": "Functional", "config": {
        "name": "deep", "layers": layers, "input_layers": [["x", 0, 0]],
        "output_layers": [[previous, 0, 0]]}, "keras_version": "2.15.0"}
    model = tmp_path / "reversed.json"
    model.write_text(json.dumps(config))
    start = time.perf_counter()
    result = run_cli(["inspect", model])
    assert_contract(result, {OK}, model, "inspect")
    assert time.perf_counter() - start < 30


def test_unknown_layer_before_a_dense(tmp_path):
    """keras-self-attention's ResidualScaledDotProductAttention (not supported) before a
    Dense: named (class and module) by convert; inspect shows the rest with unknown shapes
    behind it."""
    base = BASES[6]  # keras2 three_attention.h5
    config = read_config(base)
    layers = config["config"]["layers"]
    source = next(l for l in layers if l["class_name"] == "InputLayer")["name"]
    layers.append({"class_name": "ResidualScaledDotProductAttention",
                   "name": "self_attention",
                   "module": "keras_self_attention.scaled_dot_attention",
                   "config": {"name": "self_attention", "return_attention": False},
                   "inbound_nodes": [[[source, 0, 0, {}]]]})
    layers.append({"class_name": "Dense", "name": "head", "config": {
        "name": "head", "units": 3, "use_bias": True, "activation": "linear"},
        "inbound_nodes": [[["self_attention", 0, 0, {}]]]})
    config["config"]["output_layers"].append(["head", 0, 0])
    model, _ = write_config(base, tmp_path, json.dumps(config))
    converted = run_cli(["convert", model, "-o", tmp_path / "out.onnx"])
    assert_contract(converted, {ERROR}, model, "convert")
    assert ("ResidualScaledDotProductAttention from keras_self_attention"
            in converted.stderr)
    inspected = run_cli(["inspect", model, "--format", "json"])
    assert_contract(inspected, {OK}, model, "inspect")
    report = json.loads(inspected.stdout)
    head = next(n for n in report["nodes"] if n["name"] == "head")
    assert head["outputs"][0]["shape"] is None
    assert report["unsupported"] == [{"layer": "self_attention",
                                      "class_name": "ResidualScaledDotProductAttention",
                                      "module": "keras_self_attention.scaled_dot_attention"}]


@pytest.mark.parametrize("dialect", ["keras2", "keras3"])
def test_unknown_layer_with_two_outputs(tmp_path, dialect):
    """Uses of output 1 of an unknown layer are not reported as a wrong index."""
    base = next(b for b in BASES if b.dialect == dialect and b.form == "json")
    config = read_config(base)
    layers = config["config"]["layers"]
    source = next(l for l in layers if l["class_name"] == "InputLayer")["name"]
    if dialect == "keras2":
        inbound = [[[source, 0, 0, {}]]]
        uses = [[["splitter", 0, 0, {}], ["splitter", 0, 1, {}]]]
    else:
        def tensor(name, index):
            return {"class_name": "__keras_tensor__", "config": {
                "shape": [None, 8, 16], "dtype": "float32", "keras_history": [name, 0, index]}}
        inbound = [{"args": [tensor(source, 0)], "kwargs": {}}]
        uses = [{"args": [[tensor("splitter", 0), tensor("splitter", 1)]], "kwargs": {}}]
    layers.append({"class_name": "Splitter", "name": "splitter", "module": "my_layers",
                   "config": {"name": "splitter"}, "inbound_nodes": inbound})
    layers.append({"class_name": "Add", "name": "joined", "config": {"name": "joined"},
                   "inbound_nodes": uses})
    config["config"]["output_layers"].append(["joined", 0, 0])
    model, weights = write_config(base, tmp_path, json.dumps(config))
    converted = run_cli(["convert", model, "--weights", weights, "-o", tmp_path / "o.onnx"])
    assert_contract(converted, {ERROR}, model, "convert")
    assert "Splitter from my_layers" in converted.stderr
    assert "output(s)" not in converted.stderr
    inspected = run_cli(["inspect", model, "--weights", weights])
    assert_contract(inspected, {OK}, model, "inspect")


def test_other_damage(tmp_path):
    """Damage of kinds the mutations do not make: a zip whose members are garbage, a zip
    with a corrupted deflate stream, an HDF5 file of random bytes after its signature, a
    JSON model that is a list, an empty file, a weights file that is a .keras, and weights
    given for another model."""
    rng = random.Random(7)
    keras_model = FIXTURES / BASES[0].model
    cases = []
    garbage = tmp_path / "garbage.keras"
    with zipfile.ZipFile(garbage, "w") as archive:
        archive.writestr("config.json", bytes(rng.randrange(256) for _ in range(500)))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    cases.append((garbage, None))
    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(keras_model) as old, zipfile.ZipFile(
            deflated, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info), zipfile.ZIP_DEFLATED)
    raw = bytearray(deflated.read_bytes())
    for offset in range(60, 200, 7):
        raw[offset] ^= 0x55
    deflated.write_bytes(bytes(raw))
    cases.append((deflated, None))
    noise = tmp_path / "noise.h5"
    noise.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(4000)))
    cases.append((noise, None))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2, 3]")
    cases.append((listed, None))
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    cases.append((empty, None))
    cases.append((FIXTURES / "keras3/three_attention.json", keras_model))
    cases.append((FIXTURES / "keras3/three_attention.json",
                  FIXTURES / "keras2/kmh_attention.h5"))
    for model, weights in cases:
        extra = ["--weights", weights] if weights else []
        for command in (["convert", model, "-o", tmp_path / "out.onnx", *extra],
                        ["inspect", model, *extra]):
            assert_contract(run_cli(command), {ERROR}, model, f"{command[0]} {model.name}")
    assert not (tmp_path / "out.onnx").exists()


def test_subprocess_behaves_the_same(tmp_path):
    """A few cases in a real process: exit 2, one stderr line, no traceback, nothing
    written beside the model (the default output path)."""
    rng = random.Random(11)
    made = []
    for i, (mutate, base) in enumerate([(config_depth, BASES[0]),
                                        (weight_surgery, BASES[11])]):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        made.append((folder, *mutate(base, folder, rng)))
    for folder, model, weights, _ in made:
        before = sorted(p.name for p in folder.iterdir())
        extra = ["--weights", str(weights)] if weights else []
        for command in ("convert", "inspect"):
            process = subprocess.run([sys.executable, "-m", "kerasonnx", command, str(model),
                                      *extra], capture_output=True, text=True, cwd=tmp_path,
                                     timeout=120)
            assert process.returncode == 2, process.stderr
            assert process.stdout == ""
            assert process.stderr.startswith(f"error: {folder}")
            assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr
        assert sorted(p.name for p in folder.iterdir()) == before


def test_debug_shows_the_traceback(tmp_path):
    model = tmp_path / "broken.json"
    model.write_text('{"class_name": "Functional", "config": {"layers": null}}')
    process = subprocess.run([sys.executable, "-m", "kerasonnx", "--debug", "inspect",
                              str(model)], capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert "Traceback" in process.stderr
    assert process.stderr.splitlines()[-1].startswith(f"error: {model}")


def test_output_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        result = run_cli(["convert", FIXTURES / BASES[0].model, "-o", tmp_path / "a.onnx"])
        os.umask(0o002)
        result2 = run_cli(["convert", FIXTURES / BASES[0].model, "-o", tmp_path / "b.onnx"])
    finally:
        os.umask(old)
    assert result.exit_code == 0 and result2.exit_code == 0
    assert (tmp_path / "a.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.onnx").stat().st_mode & 0o777 == 0o664
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]


def test_output_that_is_a_directory_or_unwritable(tmp_path):
    model = FIXTURES / BASES[0].model
    for output in (tmp_path, tmp_path / "missing" / "m.onnx"):
        result = run_cli(["convert", model, "-o", output])
        assert_contract(result, {ERROR}, model, "convert")
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_follow_the_contract():
    for args in (["convert"], ["inspect", "--format", "xml", "m.keras"], ["nonsense"],
                 ["convert", "m.keras", "--opset", "x"]):
        result = run_cli(args)
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


# ---------------------------------------------------------------- the examples


def keras3_json() -> Base:
    return next(b for b in BASES if b.dialect == "keras3" and b.form == "json")


def refused(tmp_path, config_or_text, base: Base = None, *needles) -> str:
    base = base or keras3_json()
    text = config_or_text if isinstance(config_or_text, str) else json.dumps(config_or_text)
    model, weights = write_config(base, tmp_path, text)
    extra = ["--weights", weights] if weights else []
    for command in ("convert", "inspect"):
        result = run_cli([command, model, *extra] + (["-o", tmp_path / "o.onnx"]
                                                     if command == "convert" else []))
        assert_contract(result, {ERROR}, model, command)
        for needle in needles:
            assert needle in result.stderr, result.stderr
    assert not (tmp_path / "o.onnx").exists()
    return result.stderr


def find_layer(config: dict, class_name: str) -> dict:
    return next(l for _, l in model_layers(config, None) if l["class_name"] == class_name)


def test_null_key_dim_names_layer_and_key(tmp_path):
    config = read_config(keras3_json())
    find_layer(config, "MultiHeadAttention")["config"]["key_dim"] = None
    refused(tmp_path, config, None, "'multi_head_attention'", "'key_dim'")


@pytest.mark.parametrize("heads", [0, -2])
def test_zero_or_negative_heads(tmp_path, heads):
    config = read_config(keras3_json())
    find_layer(config, "MultiHeadAttention")["config"]["num_heads"] = heads
    refused(tmp_path, config, None, "'num_heads'")


def test_string_batch_shape_and_negative_dim(tmp_path):
    config = read_config(keras3_json())
    find_layer(config, "InputLayer")["config"]["batch_shape"] = "(None, 8, 16)"
    refused(tmp_path, config, None, "'batch_shape'")
    config = read_config(keras3_json())
    find_layer(config, "InputLayer")["config"]["batch_shape"] = [None, -8, 16]
    refused(tmp_path, config, None, "'batch_shape'")


def test_null_layer_config(tmp_path):
    config = read_config(keras3_json())
    find_layer(config, "Attention")["config"] = None
    refused(tmp_path, config, None, "'attention'", "'config'")


def test_json_nested_100000_levels(tmp_path):
    text = '{"class_name": "Functional", "config": {"layers": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    refused(tmp_path, text, None, "nested more than")


def test_duplicate_names_and_empty_model(tmp_path):
    config = read_config(keras3_json())
    layers = config["config"]["layers"]
    layers[-1]["name"] = layers[-1]["config"]["name"] = layers[-2]["name"]
    refused(tmp_path, config, None, "two layers named")
    config = read_config(keras3_json())
    config["config"]["layers"] = []
    refused(tmp_path, config, None, "empty model")


@pytest.mark.parametrize("dialect", ["keras2", "keras3"])
def test_node_index_out_of_range(tmp_path, dialect):
    base = next(b for b in BASES if b.dialect == dialect and b.form == "json")
    config = read_config(base)
    assert mutate_reference(config, random.Random(3), "node_index")
    refused(tmp_path, config, base)


def test_weight_stored_as_bytes(tmp_path):
    base = keras3_json()

    def edit(f):
        name = "layers/multi_head_attention/query_dense/vars/0"
        shape = f[name].shape
        del f[name]
        f.create_dataset(name, data=np.full(shape, b"abcd", dtype="S4"))

    model, weights = edit_weights(base, tmp_path, edit)
    result = run_cli(["convert", model, "--weights", weights, "-o", tmp_path / "o.onnx"])
    assert_contract(result, {ERROR}, model, "convert")
    assert "'multi_head_attention'" in result.stderr and "not as numbers" in result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_damaged_heap_that_libhdf5_loops_on_is_refused(tmp_path):
    """A global heap whose free-space entry is shortened so that a 0-byte entry follows:
    libhdf5 loops forever reading ``weight_names`` from it (found by this suite's flips)."""
    base = next(b for b in BASES if b.dialect == "keras2" and b.form == "json")
    weights = tmp_path / "weights.h5"
    raw = bytearray((FIXTURES / base.weights).read_bytes())
    heap = raw.find(b"GCOL")
    size = int.from_bytes(raw[heap + 8:heap + 16], "little")
    at = heap + 16
    while int.from_bytes(raw[at:at + 2], "little") != 0:  # to the free-space entry
        at += 16 + (int.from_bytes(raw[at + 8:at + 16], "little") + 7) // 8 * 8
    free = heap + size - at
    raw[at + 8:at + 16] = (free - 1024).to_bytes(8, "little")
    weights.write_bytes(bytes(raw))
    process = subprocess.run([sys.executable, "-m", "kerasonnx", "inspect",
                              str(FIXTURES / base.model), "--weights", str(weights)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    assert "heap" in process.stderr and process.stderr.count("\n") == 1
