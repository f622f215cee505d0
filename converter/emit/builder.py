"""A small ONNX graph builder for emitters: fresh names after Keras names, initializers
folded in NumPy, ops, and the finished, checked ``ModelProto``.

Weights pass through once: an emitter folds a weight as it reads it and hands it to
``constant``, which writes it to the external data file right away (when the model keeps its
weights outside the graph) or keeps it for the graph. The checker and shape inference then
run on the graph without the payloads of its big tensors."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConversionError
from ..files import new_file
from ..ir import Graph, Tensor

DTYPES = {
    "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16, "float64": TensorProto.DOUBLE,
    "int32": TensorProto.INT32, "int64": TensorProto.INT64, "int8": TensorProto.INT8,
    "int16": TensorProto.INT16, "uint8": TensorProto.UINT8, "bool": TensorProto.BOOL,
}


# Tensors of at least this many bytes are weights: external data when the model has a data
# file, and checked without their payload. Smaller ones (shapes, axes, scalars) always stay
# in the graph, where shape inference reads their values.
PAYLOAD_BYTES = 1024
# A placeholder location of big tensors until the model is saved (``ExternalData.locate``).
UNSAVED_LOCATION = "unsaved.onnx.data"


def onnx_dtype(dtype: str) -> int:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ConversionError(f"dtype {dtype!r} has no ONNX equivalent here") from None


class Builder:
    """Collects ONNX nodes and initializers; ``value(tensor)`` is the ONNX name of an IR
    tensor once its producer was emitted."""

    def __init__(self, opset: int, data: Optional["ExternalData"] = None,
                 progress: Optional[Callable[[int], None]] = None):
        self.opset = opset
        self.nodes = []
        self.initializers = {}  # name -> TensorProto; big ones without their payload
        self._payloads = {}  # name -> the bytes of a big tensor kept for the graph
        self._data = data  # where big tensors go when the model uses external data
        self._progress = progress or (lambda nbytes: None)  # told the bytes of each weight
        self._used = set()
        self._values = {}
        # The IR node being emitted, and the one that emitted each ONNX node (by name), for
        # passes that work per Keras layer (precision.py); graph outputs' dtypes they set.
        self.emitting = None
        self.emitted_by = {}
        self.output_dtypes = {}
        # With a key/value cache: the cached attention calls' slots (with_past.CacheSlot),
        # and the position layers counting from past_length (node -> its int64 scalar).
        self.cache = {}
        self.position_offsets = {}

    # ------------------------------------------------------------------ names, values

    def fresh(self, base: str) -> str:
        """A value name not used yet: ``base``, else ``base_1``, ``base_2``, ..."""
        name, i = base, 0
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def value(self, tensor: Tensor) -> str:
        return self._values[tensor]

    def has_value(self, tensor: Tensor) -> bool:
        return tensor in self._values

    def bind(self, tensor: Tensor, name: str) -> None:
        self._values[tensor] = name

    def cached_past(self, node) -> Optional[tuple]:
        """With a key/value cache on ``node``: its past (key, value) heads' values; else
        None."""
        slot = self.cache.get(node)
        return None if slot is None else (self.value(slot.past_key), self.value(slot.past_value))

    def bind_present(self, node, present: tuple) -> None:
        """Bind a cached ``node``'s present (key, value) heads to its cache outputs."""
        slot = self.cache.get(node)
        if slot is not None:
            self.bind(slot.present_key, present[0])
            self.bind(slot.present_value, present[1])

    # ------------------------------------------------------------------ graph content

    def constant(self, base: str, array) -> str:
        """An initializer holding ``array`` (folded at conversion time)."""
        name = self.fresh(base)
        array = np.asarray(array)
        if array.nbytes < PAYLOAD_BYTES or array.dtype == object:
            self.initializers[name] = numpy_helper.from_array(array, name)
            return name
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        stub = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype),
                           dims=array.shape)
        if self._data is None:
            self._payloads[name] = array.tobytes()
        else:
            self._data.write(stub, array)
        self.initializers[name] = stub
        self._progress(array.nbytes)
        return name

    def ints(self, base: str, values) -> str:
        return self.constant(base, np.asarray(values, dtype=np.int64))

    def array(self, name: str) -> np.ndarray:
        """The value of initializer ``name``, wherever its payload is kept (for passes that
        rewrite what the emitters folded)."""
        tensor = self.initializers[name]
        if name in self._payloads:
            raw = self._payloads[name]
        elif _is_stub(tensor):
            raw = self._data.read(tensor)
        else:
            return numpy_helper.to_array(tensor)
        return np.frombuffer(raw, dtype=helper.tensor_dtype_to_np_dtype(tensor.data_type)
                             ).reshape(tuple(tensor.dims))

    def op(self, op_type: str, inputs: list, base: str, outputs: int = 1, **attributes):
        """Add one node; returns its output name (or a list when ``outputs`` > 1).
        An input of None is an omitted optional input."""
        names = [self.fresh(base if i == 0 else f"{base}:{i}") for i in range(outputs)]
        node_name = self.fresh(f"{base}/{op_type}")
        self.emitted_by[node_name] = self.emitting
        self.nodes.append(helper.make_node(
            op_type, ["" if i is None else i for i in inputs], names, name=node_name,
            **{k: v for k, v in attributes.items() if v is not None}))
        return names[0] if outputs == 1 else names

    def reduce(self, op_type: str, x: str, axes: list, base: str, keepdims: int = 1) -> str:
        """ReduceSum/Max/Mean/...: ``axes`` is an input from opset 18 (ReduceSum: 13)."""
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, [x, self.ints(f"{base}/axes", axes)], base,
                           keepdims=keepdims)
        return self.op(op_type, [x], base, axes=axes, keepdims=keepdims)

    # ------------------------------------------------------------------ finishing

    def finish(self, graph: Graph, model_name: str) -> onnx.ModelProto:
        """Name the outputs after Keras, drop unused nodes, check and infer shapes."""
        inputs = [helper.make_tensor_value_info(t.name, onnx_dtype(t.dtype), _symbolic_shape(t))
                  for t in graph.inputs]
        outputs = []
        named = {t.name for t in graph.inputs}  # values that must keep their names
        for name, tensor in zip(graph.output_names, graph.outputs):
            self._name_output(self.value(tensor), name, named)
            named.add(name)
            outputs.append(helper.make_tensor_value_info(
                name, onnx_dtype(self.output_dtypes.get(tensor, tensor.dtype)),
                None if tensor.shape is None else [None] * len(tensor.shape)))
        self._prune([o.name for o in outputs])
        _keep_residuals_apart(self.nodes, self.initializers)
        if self._data is not None:
            self._data.keep([t for t in self.initializers.values() if _is_stub(t)])
        else:  # payloads go in after checking; until then they are external to the checker
            for name in self._payloads:
                _set_location(self.initializers[name], UNSAVED_LOCATION, 0, 0)
        body = helper.make_graph(self.nodes, model_name, inputs, outputs,
                                 list(self.initializers.values()))
        self.initializers = {}
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(body, opset_imports=opsets, producer_name="kerasonnx")
        model.ir_version = helper.find_min_ir_version_for(opsets)
        try:
            _check(model)
            model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ConversionError(f"the ONNX graph kerasonnx built for {model_name!r} is "
                                  f"invalid ({exc}); please report this with the model") from None
        for tensor in model.graph.initializer:
            if tensor.name in self._payloads:
                del tensor.external_data[:]
                tensor.ClearField("data_location")
                tensor.raw_data = self._payloads.pop(tensor.name)
        return model

    def _name_output(self, current: str, wanted: str, named: set) -> None:
        """Give a graph output its Keras name: rename the producing node's output when we
        can, else add an Identity (graph inputs, values already named as an output)."""
        if current == wanted:
            return
        if wanted in self._used and wanted not in named:
            # an inner value took the name (a shared layer's first call): it moves aside
            self._rename(wanted, self.fresh(f"{wanted}/inner"))
        producer = next((n for n in self.nodes if current in n.output), None)
        if producer is None or wanted in named or current in named:
            self.nodes.append(helper.make_node("Identity", [current], [wanted],
                                               name=self.fresh(f"{wanted}/Identity")))
        else:
            self._rename(current, wanted)
        self._used.add(wanted)

    def _rename(self, current: str, wanted: str) -> None:
        for node in self.nodes:
            node.input[:] = [wanted if i == current else i for i in node.input]
            node.output[:] = [wanted if o == current else o for o in node.output]
        self._values = {t: (wanted if v == current else v) for t, v in self._values.items()}

    def _prune(self, outputs: list) -> None:
        """Drop nodes and initializers nothing needs (masks computed but never used)."""
        needed, kept = set(outputs), []
        for node in reversed(self.nodes):
            if any(o in needed for o in node.output):
                kept.append(node)
                needed.update(i for i in node.input if i)
        self.nodes = kept[::-1]
        self.initializers = {k: v for k, v in self.initializers.items() if k in needed}
        self._payloads = {k: v for k, v in self._payloads.items() if k in needed}


class ExternalData:
    """The file that receives big weights as emitters fold them: each tensor's raw
    little-endian bytes at an offset aligned to 4 KiB, in the order they are emitted, so the
    same model gives the same bytes. It is a temporary file (removed when this object goes
    away) until ``place`` puts it next to the saved model."""

    ALIGN = 4096

    def __init__(self, folder: Optional[str] = None):
        handle, self.path = new_file(folder or tempfile.gettempdir(), ".onnx.data")
        self._file = os.fdopen(handle, "wb")
        self._written = 0  # tensors written
        self.temporary = True

    def write(self, stub: TensorProto, array: np.ndarray) -> None:
        """Append ``array``'s bytes and make ``stub`` point at them."""
        offset = _align(self._file)
        self._file.write(array.reshape(-1).view(np.uint8))
        self._written += 1
        _set_location(stub, UNSAVED_LOCATION, offset, array.nbytes)

    def read(self, stub: TensorProto) -> bytes:
        """The bytes ``write`` stored for ``stub``."""
        self._file.flush()
        offset, length = (int(e.value) for e in stub.external_data[1:3])
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def keep(self, stubs: list) -> None:
        """Finish the file with exactly the tensors of ``stubs``, in this order: tensors
        pruned from the graph are dropped (the file is rewritten only then)."""
        self._file.close()
        if len(stubs) == self._written:
            return
        handle, compacted = new_file(os.path.dirname(self.path), ".onnx.data")
        with os.fdopen(handle, "wb") as out, open(self.path, "rb") as source:
            for stub in stubs:
                offset, length = (int(e.value) for e in stub.external_data[1:3])
                source.seek(offset)
                _set_location(stub, UNSAVED_LOCATION, _align(out), length)
                out.write(source.read(length))
        os.replace(compacted, self.path)

    @staticmethod
    def locate(model: onnx.ModelProto, path: str) -> None:
        """Point every big tensor of ``model`` at the data file of the model file ``path``:
        ``<name of path>.data``, beside it."""
        location = os.path.basename(path) + ".data"
        for tensor in model.graph.initializer:
            if _is_stub(tensor):
                tensor.external_data[0].value = location

    def place(self, path: str) -> None:
        """Move the data file beside the model file ``path`` as ``<path>.data`` (copy it when
        it was placed before or lives on another file system)."""
        target = os.path.abspath(path) + ".data"
        if os.path.abspath(self.path) != target:
            if not (self.temporary and _moved(self.path, target)):
                _copy_file(self.path, target)
                self.discard()
            self.path, self.temporary = target, False

    def discard(self) -> None:
        """Remove the file while it is temporary (never once placed)."""
        if not hasattr(self, "_file"):  # the file could not be created
            return
        self._file.close()
        if self.temporary and os.path.exists(self.path):
            os.unlink(self.path)

    def __del__(self):
        self.discard()


def _align(f) -> int:
    """Pad the file with zeros to the next ``ExternalData.ALIGN`` boundary; the offset."""
    size = f.tell()
    offset = -(-size // ExternalData.ALIGN) * ExternalData.ALIGN
    f.write(b"\0" * (offset - size))
    return offset


def _moved(source: str, target: str) -> bool:
    try:
        os.replace(source, target)
        return True
    except OSError:
        return False


def _copy_file(source: str, target: str) -> None:
    """Copy to ``target`` through a temporary file beside it: no partial file on failure."""
    handle, partial = new_file(os.path.dirname(target), ".onnx.data")
    try:
        with os.fdopen(handle, "wb") as out, open(source, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 24)
        os.replace(partial, target)
    except BaseException:
        os.unlink(partial)
        raise


def _set_location(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)


def _is_stub(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL


def _keep_residuals_apart(nodes: list, initializers: dict) -> None:
    """A residual ``Add`` of two computed values that feeds a LayerNormalization becomes
    ``Sum``, the same x + y: onnxruntime fuses Add + LayerNormalization into its
    SkipLayerNormalization, whose CPU kernel (one-pass variance, a division per element)
    takes 2.5x the time of the two ops it replaces (0.70 against 0.28 ms on 8 x 128 x 256,
    onnxruntime 1.32, measured for ``benchmarks/bench.py``); it leaves Sum alone."""
    producers = {output: node for node in nodes for output in node.output}
    for node in nodes:
        add = producers.get(node.input[0]) if node.op_type == "LayerNormalization" else None
        if (add is not None and add.op_type == "Add"
                and not any(name in initializers for name in add.input)):
            add.op_type = "Sum"


def _check(model: onnx.ModelProto) -> None:
    """The ONNX checker on the graph without the payloads of its big tensors. It insists
    that an external data file exists next to a model it checks by path, so the graph goes
    to a scratch folder beside an empty file of that name."""
    with tempfile.TemporaryDirectory(prefix="kerasonnx-check-") as folder:
        open(os.path.join(folder, UNSAVED_LOCATION), "wb").close()
        path = os.path.join(folder, "model.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        onnx.checker.check_model(path)


def _symbolic_shape(tensor: Tensor) -> list:
    """Keras None dims as named symbolic dims: ``batch``, ``<input>_dim<i>``."""
    return [("batch" if i == 0 else f"{tensor.name}_dim{i}") if d is None else d
            for i, d in enumerate(tensor.shape)]
