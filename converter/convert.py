"""Saved Keras model -> ONNX: walk the intermediate graph in order and let each layer's
emitter add its ONNX nodes."""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass

import onnx

from .emit import Builder, emitter_for
from .errors import ConversionError, UnsupportedLayerError, describe_exception, reported
from .ir import Graph
from .model import load

TENSOR_MAP_KEY = "kerasonnx.keras_tensors"
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
        """Write the model atomically (a temporary file beside ``path``, then renamed), with
        the permissions the user's umask gives a new file; on any failure nothing is left
        behind and ``path`` is as it was."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise ConversionError(f"{path}: is a directory; pass the ONNX file to write "
                                  f"with -o")
        data = self.model.SerializeToString()
        handle, temporary = _create_beside(path)
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
        except BaseException as exc:
            os.unlink(temporary)
            if isinstance(exc, OSError):
                raise ConversionError(f"{path}: cannot write there ({exc.strerror or exc})"
                                      ) from None
            raise


def _create_beside(path: str) -> tuple:
    """A new file next to ``path``, opened for writing: mode 0666 less the umask, as
    ``open`` would give (``tempfile.mkstemp`` gives 0600)."""
    folder = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = os.path.join(folder, f".kerasonnx-{secrets.token_hex(6)}.onnx")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConversionError(f"{path}: cannot write there ({exc.strerror})") from None


def convert(path, weights=None, opset: int = DEFAULT_OPSET) -> ConversionResult:
    """Convert the saved Keras model at ``path`` (``weights`` for a JSON model) to ONNX.

    ``opset`` 23 or more uses the standard Attention operator where it computes exactly
    what Keras computes; 17 to 22 lower attention to MatMul/Softmax."""
    check_opset(opset)
    with load(path, weights) as graph, reported(graph.source.source):
        return ConversionResult(to_onnx(graph, opset), graph.source.source, opset)


def check_opset(opset: int) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConversionError(f"opset {opset} is not supported: choose {MIN_OPSET} to "
                              f"{MAX_OPSET} ({DEFAULT_OPSET}, the default, uses ONNX's "
                              f"Attention operator; {MIN_OPSET}-22 use MatMul/Softmax)")


def to_onnx(graph: Graph, opset: int) -> onnx.ModelProto:
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
    builder = Builder(opset)
    for tensor in graph.inputs:
        builder.bind(tensor, tensor.name)
    problems = []
    for node in graph.nodes:
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
    model = builder.finish(graph, graph.name)
    _record_layer_outputs(model, graph, builder)
    return model


def _class_and_module(layer) -> str:
    """``SeqSelfAttention from keras_self_attention.seq_self_attention`` for a class Keras
    does not ship; the class name alone for Keras' own."""
    module = layer.module if isinstance(layer.module, str) else ""
    if layer.kind is None and module and module.split(".")[0] not in ("keras", "tf_keras"):
        return f"{layer.class_name} from {module}"
    return layer.class_name


def _record_layer_outputs(model: onnx.ModelProto, graph: Graph, builder: Builder) -> None:
    """Store which ONNX value holds each Keras layer output (``verify`` compares them)."""
    produced = {o for node in model.graph.node for o in node.output}
    tensors = {t.name: builder.value(t) for node in graph.nodes for t in node.outputs
               if builder.has_value(t) and builder.value(t) in produced}
    onnx.helper.set_model_props(model, {TENSOR_MAP_KEY: json.dumps(tensors, sort_keys=True)})
