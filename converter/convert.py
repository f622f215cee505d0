"""Saved Keras model -> ONNX: walk the intermediate graph in order and let each layer's
emitter add its ONNX nodes."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

import onnx

from .emit import Builder, emitter_for
from .emit.attention import axis_length
from .emit.builder import ExternalData
from .emit.precision import MODES, apply_precision
from .errors import ConversionError, UnsupportedLayerError, describe_exception, reported
from .files import new_file
from .ir import Graph
from .layers.operations import kind_label
from .model import load
from .with_past import plan_cache

TENSOR_MAP_KEY = "kerasonnx.keras_tensors"
PRECISION_KEY = "kerasonnx.precision"
WITH_PAST_KEY = "kerasonnx.with_past"  # a cached decoder's with_past.CachePlan input names
MIN_OPSET = 17
DEFAULT_OPSET = 23
MAX_OPSET = 24
FUSED_ATTENTION_OPSET = 23  # the standard Attention operator
# Above this many bytes of weights a model keeps them in an external data file by default:
# a protobuf message cannot pass 2 GiB, and an inline model is held whole in memory (about
# 3x its weights at peak, while serializing). Measured on a 269 MiB model: inline peaked
# 865 MiB above the interpreter, external data 258 MiB (its biggest tensor) in less time.
EXTERNAL_DATA_THRESHOLD = 512 << 20


@dataclass
class ConversionResult:
    """A converted model: ``model`` is the ``onnx.ModelProto``. When ``data`` is set, its
    big tensors live in that external data file, which ``save`` puts next to the model."""

    model: onnx.ModelProto
    source: str
    opset: int
    data: Optional[ExternalData] = None
    notes: tuple = ()  # what the conversion left out (a KerasHub task's preprocessor)

    def save(self, path) -> None:
        """Write the model atomically (a temporary file beside ``path``, then renamed) and,
        with external data, its data file as ``<path>.data``, with the permissions the user's
        umask gives a new file; on any failure nothing is left behind and ``path`` is as it
        was."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise ConversionError(f"{path}: is a directory; pass the ONNX file to write "
                                  f"with -o")
        if self.data is not None:
            ExternalData.locate(self.model, path)
        data = self.model.SerializeToString()
        handle, temporary = _create_beside(path)
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            if self.data is not None:
                self.data.place(path)
            os.replace(temporary, path)
        except BaseException as exc:
            os.unlink(temporary)
            if isinstance(exc, OSError):
                raise ConversionError(f"{path}: cannot write there ({exc.strerror or exc})"
                                      ) from None
            raise


def _create_beside(path: str) -> tuple:
    """A new file next to ``path``, opened for writing (see ``files.new_file``)."""
    try:
        return new_file(os.path.dirname(os.path.abspath(path)), ".onnx")
    except OSError as exc:
        raise ConversionError(f"{path}: cannot write there ({exc.strerror})") from None


def convert(path, weights=None, opset: int = DEFAULT_OPSET, precision: str = "keras", *,
            external_data: Optional[bool] = None, data_folder=None,
            progress: Optional[Callable[[int, int], None]] = None,
            with_past: bool = False) -> ConversionResult:
    """Convert the saved Keras model at ``path`` (``weights`` for a JSON model) to ONNX.

    ``opset`` 23 or more uses the standard Attention operator where it computes exactly
    what Keras computes; 17 to 22 lower attention to MatMul/Softmax. ``precision``:
    ``"keras"`` computes in the dtypes the model's dtype policies say, ``"float32"``
    everything in float32, ``"float16"`` weights and compute in half (normalizations and
    softmax in float32) behind the model's own input and output dtypes. ``external_data``
    keeps the weights in a data file beside the model (default: when they pass
    ``EXTERNAL_DATA_THRESHOLD`` bytes); it is written while converting, in ``data_folder``
    (default: the system's temporary folder; the output's folder spares ``save`` a copy).
    ``progress(done, total)`` is told the weight bytes folded so far. ``with_past`` exports
    a causal decoder with a key/value cache (see ``with_past.py``): inputs
    ``past_key_values.{i}.key`` / ``.value``, outputs ``present.{i}.key`` / ``.value``."""
    check_opset(opset)
    check_precision(precision)
    with load(path, weights) as graph, reported(graph.source.source):
        total = weight_bytes(graph)
        if external_data is None:
            external_data = total > EXTERNAL_DATA_THRESHOLD
        data = _data_file(data_folder) if external_data else None
        try:
            model = to_onnx(graph, opset, precision, data, _counter(progress, total),
                            with_past)
        except BaseException as exc:
            if data is not None:
                data.discard()
            if isinstance(exc, OSError) and data is not None:  # the disk, not the model
                raise ConversionError(f"{data.path}: cannot write the external data "
                                      f"({exc.strerror})") from None
            raise
        return ConversionResult(model, graph.source.source, opset, data, tuple(graph.notes))


def weight_bytes(graph: Graph) -> int:
    """The bytes of all stored weights of the layers the graph calls."""
    return sum(layer.weights.nbytes() for layer in graph.layers.values()
               if layer.weights is not None)


def _data_file(folder) -> ExternalData:
    try:
        return ExternalData(None if folder is None else os.fspath(folder))
    except OSError as exc:
        raise ConversionError(f"{folder or tempfile.gettempdir()}: cannot write the external "
                              f"data file there ({exc.strerror})") from None


def _counter(progress, total: int):
    if progress is None:
        return None
    done = 0

    def count(nbytes: int) -> None:
        nonlocal done
        done += nbytes
        progress(done, total)

    return count


def check_precision(precision: str) -> None:
    if precision not in MODES:
        raise ConversionError(f"precision {precision!r} is not supported: choose "
                              f"{', '.join(MODES)}")


def check_opset(opset: int) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConversionError(f"opset {opset} is not supported: choose {MIN_OPSET} to "
                              f"{MAX_OPSET} ({DEFAULT_OPSET}, the default, uses ONNX's "
                              f"Attention operator; {MIN_OPSET}-22 use MatMul/Softmax)")


def to_onnx(graph: Graph, opset: int, precision: str = "keras",
            data: Optional[ExternalData] = None,
            progress: Optional[Callable[[int], None]] = None,
            with_past: bool = False) -> onnx.ModelProto:
    unsupported = sorted({f"{n.layer.name} ({_class_and_module(n.layer)})" for n in graph.nodes
                          if emitter_for(n.layer) is None})
    if unsupported:
        lambdas = sorted({n.layer.name for n in graph.nodes if n.class_name == "Lambda"})
        hint = (f"; {', '.join(lambdas)}: Lambda layers hold Python code, which kerasonnx "
                f"never runs from a model file (rebuild that part with built-in layers)"
                if lambdas else "")
        raise UnsupportedLayerError(
            f"{graph.source.source}: {len(unsupported)} layer(s) cannot be converted yet: "
            f"{', '.join(unsupported)}{hint}; see `kerasonnx layers` for what is supported")
    builder = Builder(opset, data, progress)
    plan = plan_cache(graph, graph.source.source) if with_past else None
    for tensor in graph.inputs:
        builder.bind(tensor, tensor.name)
    if plan is not None:
        builder.cache = plan.slots
        first_past = next(iter(plan.slots.values())).past_key.name
        past_length = axis_length(builder, first_past, 2, "past_length")
        builder.position_offsets = {node: past_length for node in plan.offset_positions}
    problems = []
    for node in graph.nodes:
        builder.emitting = node
        try:
            names = emitter_for(node.layer)(node, builder)
        except Exception as exc:
            # Carry on with placeholder values, so one run reports every problem.
            problems.append(str(exc) if isinstance(exc, ConversionError) else
                            f"layer {node.name!r} ({node.class_name}) failed to convert "
                            f"({describe_exception(exc)})")
            names = [builder.fresh(f"{t.name}/unconverted")
                     for t in node.outputs + node.mask_outputs]
        for tensor, name in zip(node.outputs + node.mask_outputs, names):
            builder.bind(tensor, name)
    if problems:
        raise ConversionError(f"{graph.source.source}: " + "; ".join(problems))
    dtypes = apply_precision(builder, graph, precision)
    model = builder.finish(graph, graph.name)
    _record_layer_outputs(model, graph, builder)
    model.metadata_props.add(key=PRECISION_KEY, value=json.dumps(dtypes, sort_keys=True))
    if plan is not None:
        model.metadata_props.add(key=WITH_PAST_KEY, value=json.dumps(
            {"decoder_inputs": plan.decoder_inputs,
             "past_and_new_inputs": plan.past_and_new_inputs}))
    return model


def _class_and_module(layer) -> str:
    """``SeqSelfAttention from keras_self_attention.seq_self_attention`` for a class Keras
    does not ship; for Keras' own the class name (an operation's ``kind_label``)."""
    module = layer.module if isinstance(layer.module, str) else ""
    if layer.kind is None and module and module.split(".")[0] not in ("keras", "tf_keras"):
        return f"{layer.class_name} from {module}"
    return kind_label(layer)


def _record_layer_outputs(model: onnx.ModelProto, graph: Graph, builder: Builder) -> None:
    """Store which ONNX value holds each Keras layer output (``verify`` compares them)."""
    produced = {o for node in model.graph.node for o in node.output}
    tensors = {t.name: builder.value(t) for node in graph.nodes for t in node.outputs
               if builder.has_value(t) and builder.value(t) in produced}
    onnx.helper.set_model_props(model, {TENSOR_MAP_KEY: json.dumps(tensors, sort_keys=True)})
