"""``verify``: prove an ONNX file computes what its Keras model computes.

Inputs come from the model's signature (or a user's ``.npz``), Keras runs in a process of its
own (``verify_keras``, with the Keras that wrote the file), onnxruntime runs here, and every
output is compared element by element. When an output differs, every layer output kerasonnx
recorded in the ONNX file (``kerasonnx.keras_tensors`` metadata) is compared with the same
layer in Keras, and the FIRST layer whose output diverges is named.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
import onnx

from .convert import PRECISION_KEY, TENSOR_MAP_KEY, WITH_PAST_KEY
from .emit.precision import TOLERANCES, keras_compute_dtypes, tolerance_dtype
from .errors import ConversionError, ModelFileError, reports_errors
from .ir import Graph, Tensor
from .layers.keras_hub import is_keras_hub
from .model import load
from .with_past import PAST_PREFIX, decode_incrementally

REPORT_SCHEMA = "kerasonnx.verify/2"
BFLOAT16_PROBE = "/kerasonnx_float32"
PAST_STEPS = 4  # positions decoded one at a time after a prompt of the given length
KERAS_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verify_keras.py")


@dataclass
class Comparison:
    """One Keras tensor against its ONNX counterpart."""

    name: str
    passed: bool
    keras_shape: list
    onnx_shape: list
    keras_dtype: str
    onnx_dtype: str
    max_abs_error: Optional[float]
    max_rel_error: Optional[float]
    over_tolerance: int
    elements: int


@dataclass
class Run:
    """One set of inputs: its size, where it came from, and what was compared."""

    batch: int
    length: Optional[int]
    inputs: str  # "generated" or the .npz path
    outputs: list = field(default_factory=list)  # Comparison per model output
    layers: list = field(default_factory=list)  # Comparison per layer output, when compared
    first_divergence: Optional[Comparison] = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.outputs)


@dataclass
class VerifyReport:
    keras_model: str
    onnx_model: Optional[str]
    atol: float
    rtol: float
    runs: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    # What was compared: the ONNX file's precision mode, the dtypes each side computes in,
    # and the dtype whose default tolerance applied (None: the caller gave atol/rtol).
    precision: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(run.passed for run in self.runs)

    def to_json(self) -> dict:
        """The stable, documented JSON form (``schema``: kerasonnx.verify/2)."""
        return {
            "schema": REPORT_SCHEMA,
            "passed": self.passed,
            "keras_model": self.keras_model,
            "onnx_model": self.onnx_model,
            "atol": self.atol,
            "rtol": self.rtol,
            "precision": self.precision,
            "notes": self.notes,
            "runs": [{"batch": r.batch, "length": r.length, "inputs": r.inputs,
                      "passed": r.passed,
                      "outputs": [asdict(c) for c in r.outputs],
                      "layers": [asdict(c) for c in r.layers],
                      "first_divergence": (None if r.first_divergence is None
                                           else asdict(r.first_divergence))}
                     for r in self.runs],
        }

    def compared(self) -> str:
        """``float16 graph against Keras' float16, `` and where the tolerance came from."""
        p = self.precision
        if not p:
            return ""
        graph, keras = ("/".join(p.get(k) or ["float32"]) for k in ("graph", "keras"))
        given = ("the " + p["tolerance_for"] + " default, " if p.get("tolerance_for")
                 else "given ")
        return (f"{p.get('mode', 'keras')} precision: {graph} graph against Keras' {keras}; "
                f"{given}")

    def summary(self) -> str:
        """A table for people."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"verify {self.keras_model} against {self.onnx_model or 'the ONNX model'}: "
                 f"{verdict} ({self.compared()}atol {self.atol:g}, rtol {self.rtol:g})",
                 f"{'batch':>5} {'length':>6}  {'output':<28} {'shape':<18} {'max abs':>9} "
                 f"{'max rel':>9} {'over tol':>10}"]
        for run in self.runs:
            for c in run.outputs:
                lines.append(_row(run, c))
        for run in self.runs:
            where = f"batch {run.batch}" + ("" if run.length is None else f", length {run.length}")
            if run.first_divergence is not None:
                d = run.first_divergence
                lines.append(f"first diverging layer ({where}): {d.name}  max abs error "
                             f"{_number(d.max_abs_error)}, {d.over_tolerance}/{d.elements} "
                             f"over tolerance")
            elif run.layers:
                lines.append(f"every layer output agrees ({where}): "
                             + ", ".join(f"{c.name} {_number(c.max_abs_error)}"
                                         for c in run.layers))
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _row(run: Run, c: Comparison) -> str:
    shape = str(tuple(c.keras_shape))
    if c.keras_shape != c.onnx_shape:
        shape += f" vs {tuple(c.onnx_shape)}"
    length = "-" if run.length is None else run.length
    mark = "" if c.passed else "  DIFFERS"
    return (f"{run.batch:>5} {length:>6}  {c.name:<28} {shape:<18} "
            f"{_number(c.max_abs_error):>9} {_number(c.max_rel_error):>9} "
            f"{c.over_tolerance:>5}/{c.elements:<4}{mark}")


def _number(value) -> str:
    return "-" if value is None else f"{value:.2e}"


# ---------------------------------------------------------------------- entry point


@reports_errors
def verify(keras_model, onnx_model, *, weights=None, inputs=None, batches=(1, 4),
           lengths=(7, 32), atol: Optional[float] = None, rtol: Optional[float] = None,
           per_layer: bool = False, seed: int = 0,
           progress: Optional[Callable[[str], None]] = None,
           with_past: bool = False) -> VerifyReport:
    """Compare the ONNX model (a ``ModelProto`` or a path) with the saved Keras model.

    ``inputs``: an ``.npz`` path or a dict of arrays named after the model inputs, used as
    given; otherwise inputs are generated from the signature for every batch size in
    ``batches`` and, when the model has ``None`` dims, every length in ``lengths``.
    ``per_layer`` compares every recorded layer output even when the outputs agree.
    ``atol``/``rtol`` left None take the default of the least precise dtype either side
    computes in (``TOLERANCES``: float32 1e-5/1e-4; float16 and bfloat16 larger).

    ``with_past``: the ONNX model was converted ``with_past``; it runs as a generation loop
    (``with_past.decode_incrementally``): a prompt of the shortest of ``lengths`` (given
    inputs: all but their last 4 positions) on an empty cache, then one position at a time
    up to the longest (4 more past a single length), every step compared with Keras run
    on the whole prefix."""
    say = progress or (lambda message: None)
    proto, onnx_path = _read_onnx(onnx_model)
    cache_inputs = _cache_inputs(proto, with_past)
    with load(keras_model, weights) as graph:
        precision = _precision(proto, graph)
        dtype = tolerance_dtype(precision)
        precision["tolerance_for"] = dtype if atol is None and rtol is None else None
        atol = TOLERANCES[dtype][0] if atol is None else atol
        rtol = TOLERANCES[dtype][1] if rtol is None else rtol
        report = VerifyReport(os.fspath(keras_model), onnx_path, atol, rtol,
                              precision=precision)
        if inputs is None:
            lengths = _within_limits(graph, lengths, report)
        prompt = None if inputs is not None else min(lengths)
        if with_past and inputs is None:
            lengths = [max(lengths) if len(set(lengths)) > 1 else prompt + PAST_STEPS]
        input_sets = (_given_inputs(inputs, graph) if inputs is not None
                      else _generated_inputs(graph, batches, lengths, seed))
        if with_past:
            sequences = input_sets
            input_sets, chunks = _decoding_steps(graph, sequences, cache_inputs, prompt)
        tensor_map = _tensor_map(proto)
        if not tensor_map:
            report.notes.append("the ONNX file has no kerasonnx layer map: per-layer "
                                "comparison is not possible (was it written by kerasonnx?)")
        layer_names = _layer_names(graph, tensor_map)
        saved = graph.source
        request = {"model": saved.source, "format": saved.format, "dialect": graph.dialect,
                   "weights": None if weights is None else os.fspath(weights),
                   "families": sorted({layer.kind.family for layer in graph.layers.values()
                                       if layer.kind is not None}),
                   "keras_hub": any(is_keras_hub(layer.module or layer.class_name)
                                    for layer in graph.layers.values()),
                   "input_names": [t.name for t in graph.inputs],
                   "output_names": list(graph.output_names)}
        say(f"running {keras_model} in Keras ({graph.dialect}) on {len(input_sets)} input set(s)")
        keras_results = _run_keras(request, [arrays for *_, arrays in input_sets],
                                   layer_names if per_layer else [])
        say("running the ONNX model in onnxruntime")
        session = _session(proto, onnx_path)
        _check_signature(session, graph)
        if with_past:
            actual_runs = _decode(session, graph, sequences, chunks, cache_inputs)
            report.notes.append("with a key/value cache: each run is one decoding step, "
                                "compared at its new positions; no per-layer comparison")
        for (batch, length, origin, arrays), expected in zip(input_sets, keras_results):
            run = Run(batch, length, origin)
            if with_past:
                actual, start = next(actual_runs)
                expected = {key: value[:, start:] for key, value in expected.items()}
            else:
                actual = _run_onnx(session, arrays)
            names = [o.name for o in session.get_outputs()]
            run.outputs = [_compare(name, expected[f"output/{i}"], value, atol, rtol)
                           for i, (name, value) in enumerate(zip(names, actual))]
            report.runs.append(run)
        if tensor_map and (per_layer or not report.passed) and not with_past:
            say("comparing every layer output to find where they diverge")
            if not per_layer:
                keras_results = _run_keras(request, [a for *_, a in input_sets], layer_names)
            _compare_layers(report, proto, onnx_path, graph, tensor_map, input_sets,
                            keras_results)
    return report


# ---------------------------------------------------------------------- inputs


def _given_inputs(inputs, graph: Graph) -> list:
    if not isinstance(inputs, dict):
        path = os.fspath(inputs)
        try:
            with np.load(path) as data:
                arrays_by_name = {key.removeprefix("input/"): data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{path}: cannot read the inputs ({exc}); pass an .npz file "
                                 f"with one array per model input, named after it") from None
        origin = path
    else:
        arrays_by_name, origin = inputs, "given"
    names = [t.name for t in graph.inputs]
    missing = [n for n in names if n not in arrays_by_name]
    if missing:
        raise ConversionError(f"{origin}: no array for input(s) {', '.join(missing)}; the model "
                              f"takes {', '.join(names)}")
    arrays = [np.asarray(arrays_by_name[n]) for n in names]
    lengths = {a.shape[1] for a in arrays if a.ndim > 1}
    return [(int(arrays[0].shape[0]), lengths.pop() if len(lengths) == 1 else None, origin,
             arrays)]


def _within_limits(graph: Graph, lengths, report: VerifyReport) -> list:
    """Generated lengths no longer than any call accepts (a learned position table of
    KerasHub's PositionEmbedding has ``sequence_length`` rows)."""
    limits = [node.layer.kind.max_length(node) for node in graph.nodes
              if node.layer.kind is not None and node.layer.kind.max_length is not None]
    if not limits or max(lengths) <= min(limits):
        return list(lengths)
    report.notes.append(f"generated lengths capped at {min(limits)}, the longest sequence "
                        f"the model's position embeddings cover")
    return sorted({min(length, min(limits)) for length in lengths})


# Layers that look token ids up in a table of ``input_dim`` rows (the keras-bert,
# keras-embed-sim and KerasHub ones are Keras' Embedding under another name).
TOKEN_LAYERS = ("Embedding", "TokenEmbedding", "EmbeddingRet", "ReversibleEmbedding")


def _generated_inputs(graph: Graph, batches, lengths, seed: int) -> list:
    dynamic = any(d is None for t in graph.inputs for d in t.shape[1:])
    sets = []
    rng = np.random.default_rng(seed)
    for batch in batches:
        for length in (lengths if dynamic else [None]):
            arrays = [_input_array(graph, t, batch, length, rng) for t in graph.inputs]
            sets.append((batch, length, "generated", arrays))
    return sets


def _input_array(graph: Graph, tensor: Tensor, batch: int, length, rng) -> np.ndarray:
    """Seeded values that make sense for how the input is used: token ids inside the
    vocabulary of the Embedding they feed (with padding tails when it masks zeros),
    attention masks that let every query attend at least one key, else a normal."""
    shape = [batch] + [length if d is None else d for d in tensor.shape[1:]]
    uses = [(node, role) for node in graph.consumers(tensor) for role, t in node.input_tensors()
            if t is tensor]
    embedding = next((node for node, _ in uses if node.class_name in TOKEN_LAYERS), None)
    if embedding is not None:
        low = 1 if embedding.config.get("mask_zero") else 0
        ids = rng.integers(low, embedding.config["input_dim"], size=shape)
        if embedding.config.get("mask_zero") and len(shape) > 1:
            for row in range(batch):
                ids[row, shape[1] - (row * (shape[1] - 1)) // max(batch - 1, 1):] = 0
        return ids.astype(tensor.dtype)
    if tensor.dtype == "bool" or any(role == "attention_mask" for _, role in uses):
        attend = rng.random(shape) < 0.6
        attend[..., 0] = True
        return attend.astype(tensor.dtype)
    if tensor.dtype.startswith(("int", "uint")):
        return rng.integers(0, 2, size=shape).astype(tensor.dtype)
    return rng.normal(size=shape).astype(tensor.dtype)


def _cache_inputs(proto: onnx.ModelProto, with_past: bool) -> dict:
    """What a ``with_past`` model's conversion recorded: ``decoder_inputs`` (fed the new
    positions) and ``past_and_new_inputs`` (padding masks, fed up to the last position)."""
    recorded = next((json.loads(p.value) for p in proto.metadata_props
                     if p.key == WITH_PAST_KEY), None)
    if with_past and recorded is None:
        raise ConversionError("the ONNX model has no key/value cache: convert it with "
                              "--with-past, or verify without --with-past")
    if recorded is not None and not with_past:
        raise ConversionError("the ONNX model has a key/value cache (converted with "
                              "--with-past): verify it with --with-past")
    return recorded or {}


def _decoding_steps(graph: Graph, sequences: list, cache_inputs: dict, prompt) -> tuple:
    """Keras' input sets of a generation loop over each sequence: the prefix up to the end
    of the prompt (``prompt`` positions; None: all but ``PAST_STEPS``), then one position
    longer each step. Returns (input sets, the chunk lengths of each sequence)."""
    names = [t.name for t in graph.inputs]
    decoder_inputs = cache_inputs["decoder_inputs"]
    sliced = decoder_inputs + cache_inputs["past_and_new_inputs"]
    steps, chunks = [], []
    for batch, _, origin, arrays in sequences:
        total = next(a.shape[1] for n, a in zip(names, arrays) if n in decoder_inputs)
        first = prompt if prompt is not None else max(total - PAST_STEPS, 1)
        chunks.append([first] + [1] * (total - first))
        for end in range(first, total + 1):
            start = 0 if end == first else end - 1
            steps.append((batch, end, f"{origin}, positions {start}-{end - 1}",
                          [a[:, :end] if n in sliced else a
                           for n, a in zip(names, arrays)]))
    return steps, chunks


def _decode(session, graph: Graph, sequences: list, chunks: list, cache_inputs: dict):
    """(outputs, start) of each step of the generation loop over each sequence."""
    names = [t.name for t in graph.inputs]
    for (*_, arrays), lengths in zip(sequences, chunks):
        with _onnxruntime_errors():
            for start, _, outputs in decode_incrementally(
                    session, dict(zip(names, arrays)), cache_inputs["decoder_inputs"], lengths,
                    cache_inputs["past_and_new_inputs"]):
                yield outputs, start


# ---------------------------------------------------------------------- running


def _read_onnx(onnx_model) -> tuple:
    if isinstance(onnx_model, onnx.ModelProto):
        if _uses_external_data(onnx_model):
            raise ConversionError("the ONNX model keeps its weights in an external data file: "
                                  "save it (ConversionResult.save) and pass its path")
        return onnx_model, None
    path = os.fspath(onnx_model)
    try:  # weights in an external data file stay there: onnxruntime reads them itself
        return onnx.load(path, load_external_data=False), path
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except Exception as exc:  # protobuf decode errors have no common base class
        raise ModelFileError(f"{path}: not a readable ONNX model ({exc})") from None


def _session(proto: onnx.ModelProto, path: Optional[str]):
    import onnxruntime as ort  # only verify needs it: `kerasonnx convert` starts faster

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if _uses_external_data(proto):  # only ever given by path (see _read_onnx)
        options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                         os.path.dirname(os.path.abspath(path)))
    try:
        return ort.InferenceSession(proto.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ConversionError(f"onnxruntime cannot load the ONNX model ({exc})") from None


def _uses_external_data(proto: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def _check_signature(session, graph: Graph) -> None:
    onnx_inputs = [i.name for i in session.get_inputs() if not i.name.startswith(PAST_PREFIX)]
    keras_inputs = [t.name for t in graph.inputs]
    if onnx_inputs != keras_inputs:
        raise ConversionError(f"the ONNX model takes inputs ({', '.join(onnx_inputs)}) but the "
                              f"Keras model takes ({', '.join(keras_inputs)}); are they the same "
                              f"model? Convert it again with kerasonnx convert")


def _run_onnx(session, arrays: list) -> list:
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
    with _onnxruntime_errors():
        return session.run(None, feeds)


@contextlib.contextmanager
def _onnxruntime_errors():
    """onnxruntime's failures to run the model (its own exception types) as one-line
    ConversionErrors."""
    try:
        yield
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot run the ONNX model on these inputs "
                              f"({exc})") from None


def _run_keras(request: dict, input_sets: list, layers: list) -> list:
    """Keras' results for every input set, computed in a process of its own."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ConversionError("verify runs the model in real Keras and needs TensorFlow: "
                              "pip install 'kerasonnx[verify]'")
    with tempfile.TemporaryDirectory(prefix="kerasonnx-verify-") as folder:
        runs = []
        for i, arrays in enumerate(input_sets):
            inputs_path = os.path.join(folder, f"inputs{i}.npz")
            np.savez(inputs_path, **{f"input/{j}": a for j, a in enumerate(arrays)})
            runs.append([inputs_path, os.path.join(folder, f"results{i}.npz")])
        request_path = os.path.join(folder, "request.json")
        with open(request_path, "w") as f:
            json.dump(dict(request, runs=runs, layers=layers), f)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1" if request["dialect"] == "keras2" else "0",
                   TF_CPP_MIN_LOG_LEVEL="3")
        process = subprocess.run([sys.executable, KERAS_RUNNER, request_path], env=env,
                                 capture_output=True, text=True)
        if process.returncode != 0:
            if "safe_mode" in process.stderr:
                raise ConversionError(f"{request['model']}: the model contains code (a Lambda "
                                      f"layer or a lambda function); verify never runs code "
                                      f"from a model file")
            last = [line for line in process.stderr.strip().splitlines() if line.strip()]
            raise ConversionError(f"{request['model']}: Keras could not run the model: "
                                  f"{last[-1] if last else 'no message'}")
        results = []
        for _, results_path in runs:
            with np.load(results_path) as data:
                results.append({key: data[key] for key in data.files})
        return results


# ---------------------------------------------------------------------- comparing


def _compare(name: str, expected: np.ndarray, actual: np.ndarray, atol: float,
             rtol: float) -> Comparison:
    expected, actual = np.asarray(expected), np.asarray(actual)
    keras_dtype = str(expected.dtype)
    if expected.dtype.name in ("bfloat16", "float16") and actual.dtype == np.float32:
        # A half Keras value held in float32 (bfloat16 outputs, --precision float32)
        expected = expected.astype(np.float32)
    common = dict(name=name, keras_shape=list(expected.shape), onnx_shape=list(actual.shape),
                  keras_dtype=keras_dtype, onnx_dtype=str(actual.dtype),
                  elements=int(expected.size))
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return Comparison(passed=False, max_abs_error=None, max_rel_error=None,
                          over_tolerance=int(expected.size), **common)
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    # where() keeps 0-d layer outputs (tf.shape(x)[1]) arrays
    difference = np.where(np.isnan(e) & np.isnan(a), 0.0, np.abs(e - a))
    over = int(np.count_nonzero(~(difference <= atol + rtol * np.abs(e))))
    relative = difference / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    return Comparison(passed=over == 0,
                      max_abs_error=float(difference.max()) if difference.size else 0.0,
                      max_rel_error=float(relative.max()) if relative.size else 0.0,
                      over_tolerance=over, **common)


def _precision(proto: onnx.ModelProto, graph: Graph) -> dict:
    """The precision the ONNX file records (``kerasonnx.precision``; a file without it
    computes in float32) and the dtypes Keras computes the model in."""
    recorded = next((json.loads(p.value) for p in proto.metadata_props
                     if p.key == PRECISION_KEY), {})
    return {"mode": recorded.get("precision", "keras"),
            "graph": recorded.get("graph_computes", ["float32"]),
            "keras": keras_compute_dtypes(graph)}


def _tensor_map(proto: onnx.ModelProto) -> dict:
    for prop in proto.metadata_props:
        if prop.key == TENSOR_MAP_KEY:
            return json.loads(prop.value)
    return {}


def _layer_names(graph: Graph, tensor_map: dict) -> list:
    """Top-level layers called once whose output the ONNX file records, in graph order."""
    return [node.name for node, _ in graph.calls()
            if "/" not in node.name and node.outputs and node.outputs[0].name in tensor_map]


def _compare_layers(report: VerifyReport, proto, path: Optional[str], graph: Graph,
                    tensor_map: dict, input_sets: list, keras_results: list) -> None:
    wanted = []
    for node, _ in graph.calls():
        for i, tensor in enumerate(node.outputs):
            if tensor.name in tensor_map and "/" not in node.name:
                wanted.append((node.name, i, tensor.name, tensor_map[tensor.name]))
    probe = _with_outputs(proto, [value for *_, value in wanted])
    session = _session(probe, path)
    names = [o.name for o in session.get_outputs()]
    for run, (*_, arrays), expected in zip(report.runs, input_sets, keras_results):
        values = dict(zip(names, _run_onnx(session, arrays)))
        for layer, i, tensor_name, value in wanted:
            key = f"layer/{layer}/{i}"
            value = value if value in values else value + BFLOAT16_PROBE
            if key not in expected or value not in values:
                continue
            comparison = _compare(tensor_name, expected[key], values[value], report.atol,
                                  report.rtol)
            run.layers.append(comparison)
            if not comparison.passed and run.first_divergence is None:
                run.first_divergence = comparison


def _with_outputs(proto: onnx.ModelProto, values: list) -> onnx.ModelProto:
    """A copy of the model that also outputs the named intermediate values."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    known = {v.name: v for v in probe.graph.value_info}
    if not all(v in known for v in values):
        inferred = onnx.shape_inference.infer_shapes(probe)
        known = {v.name: v for v in inferred.graph.value_info}
    present = {o.name for o in probe.graph.output} | {i.name for i in probe.graph.input}
    for value in values:
        if value not in present and value in known:
            info = known[value]
            if info.type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16:
                # onnxruntime's Python API cannot return bfloat16: fetch it as float32 (exact)
                probe.graph.node.append(onnx.helper.make_node(
                    "Cast", [value], [value + BFLOAT16_PROBE], to=onnx.TensorProto.FLOAT))
                info = onnx.helper.make_tensor_value_info(value + BFLOAT16_PROBE,
                                                          onnx.TensorProto.FLOAT, None)
            probe.graph.output.append(info)
            present.add(value)
    return probe
