"""Saved Keras model -> ONNX: walk the intermediate graph in order and let each layer's
emitter add its ONNX nodes."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import onnx

from .emit import Builder, emitter_for
from .emit.precision import MODES, apply_precision
from .errors import ConversionError, UnsupportedLayerError
from .ir import Graph
from .layers.operations import kind_label
from .model import load

TENSOR_MAP_KEY = "kerasonnx.keras_tensors"
PRECISION_KEY = "kerasonnx.precision"
MIN_OPSET = 17
DEFAULT_OPSET = 23
MAX_OPSET = 24
FUSED_ATTENTION_OPSET = 23  # the standard Attention operator


@dataclass
class ConversionResult:
    """A converted model: ``model`` is the ``onnx.ModelProto``."""

    model: onnx.ModelProto
    source: str
    opset: int

    def save(self, path) -> None:
        """Write the model; on any failure no partial file is left at ``path``."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        try:
            handle, temporary = tempfile.mkstemp(prefix=".kerasonnx-", suffix=".onnx",
                                                 dir=folder)
        except OSError as exc:
            raise ConversionError(f"{path}: cannot write there ({exc.strerror})") from None
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(self.model.SerializeToString())
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise


def convert(path, weights=None, opset: int = DEFAULT_OPSET,
            precision: str = "keras") -> ConversionResult:
    """Convert the saved Keras model at ``path`` (``weights`` for a JSON model) to ONNX.

    ``opset`` 23 or more uses the standard Attention operator where it computes exactly
    what Keras computes; 17 to 22 lower attention to MatMul/Softmax. ``precision``:
    ``"keras"`` computes in the dtypes the model's dtype policies say, ``"float32"``
    everything in float32, ``"float16"`` weights and compute in half (normalizations and
    softmax in float32) behind the model's own input and output dtypes."""
    check_opset(opset)
    check_precision(precision)
    with load(path, weights) as graph:
        return ConversionResult(to_onnx(graph, opset, precision), graph.source.source, opset)


def check_precision(precision: str) -> None:
    if precision not in MODES:
        raise ConversionError(f"precision {precision!r} is not supported: choose "
                              f"{', '.join(MODES)}")


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConversionError(f"opset {opset} is not supported: choose {MIN_OPSET} to "
                              f"{MAX_OPSET} ({DEFAULT_OPSET}, the default, uses ONNX's "
                              f"Attention operator; {MIN_OPSET}-22 use MatMul/Softmax)")


def to_onnx(graph: Graph, opset: int, precision: str = "keras") -> onnx.ModelProto:
    unsupported = sorted({f"{n.layer.name} ({kind_label(n.layer)})" for n in graph.nodes
                          if emitter_for(n.layer) is None})
    if unsupported:
        lambdas = sorted({n.layer.name for n in graph.nodes if n.class_name == "Lambda"})
        hint = (f"; {', '.join(lambdas)}: Lambda layers hold Python code, which kerasonnx "
                f"never runs from a model file (rebuild that part with built-in layers)"
                if lambdas else "")
        raise UnsupportedLayerError(
            f"{graph.source.source}: {len(unsupported)} layer(s) cannot be converted yet: "
            f"{', '.join(unsupported)}{hint}; see `kerasonnx layers` for what is supported")
    builder = Builder(opset)
    for tensor in graph.inputs:
        builder.bind(tensor, tensor.name)
    problems = []
    for node in graph.nodes:
        builder.emitting = node
        try:
            names = emitter_for(node.layer)(node, builder)
        except ConversionError as exc:
            # Carry on with placeholder values, so one run reports every problem.
            problems.append(str(exc))
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
    return model


def _record_layer_outputs(model: onnx.ModelProto, graph: Graph, builder: Builder) -> None:
    """Store which ONNX value holds each Keras layer output (``verify`` compares them)."""
    produced = {o for node in model.graph.node for o in node.output}
    tensors = {t.name: builder.value(t) for node in graph.nodes for t in node.outputs
               if builder.has_value(t) and builder.value(t) in produced}
    onnx.helper.set_model_props(model, {TENSOR_MAP_KEY: json.dumps(tensors, sort_keys=True)})
