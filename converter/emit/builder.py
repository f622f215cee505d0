"""A small ONNX graph builder for emitters: fresh names after Keras names, initializers
folded in NumPy, ops, and the finished, checked ``ModelProto``."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConversionError
from ..ir import Graph, Tensor

DTYPES = {
    "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16, "float64": TensorProto.DOUBLE,
    "int32": TensorProto.INT32, "int64": TensorProto.INT64, "int8": TensorProto.INT8,
    "int16": TensorProto.INT16, "uint8": TensorProto.UINT8, "bool": TensorProto.BOOL,
}


def onnx_dtype(dtype: str) -> int:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ConversionError(f"dtype {dtype!r} has no ONNX equivalent here") from None


class Builder:
    """Collects ONNX nodes and initializers; ``value(tensor)`` is the ONNX name of an IR
    tensor once its producer was emitted."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes = []
        self.initializers = {}
        self._used = set()
        self._values = {}
        # The IR node being emitted, and the one that emitted each ONNX node (by name), for
        # passes that work per Keras layer (precision.py); graph outputs' dtypes they set.
        self.emitting = None
        self.emitted_by = {}
        self.output_dtypes = {}

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

    # ------------------------------------------------------------------ graph content

    def constant(self, base: str, array) -> str:
        """An initializer holding ``array`` (folded at conversion time)."""
        name = self.fresh(base)
        self.initializers[name] = numpy_helper.from_array(np.asarray(array), name)
        return name

    def ints(self, base: str, values) -> str:
        return self.constant(base, np.asarray(values, dtype=np.int64))

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
        body = helper.make_graph(self.nodes, model_name, inputs, outputs,
                                 list(self.initializers.values()))
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(body, opset_imports=opsets, producer_name="kerasonnx")
        model.ir_version = helper.find_min_ir_version_for(opsets)
        try:
            onnx.checker.check_model(model)
            return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ConversionError(f"the ONNX graph kerasonnx built for {model_name!r} is "
                                  f"invalid ({exc}); please report this with the model") from None

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


def _symbolic_shape(tensor: Tensor) -> list:
    """Keras None dims as named symbolic dims: ``batch``, ``<input>_dim<i>``."""
    return [("batch" if i == 0 else f"{tensor.name}_dim{i}") if d is None else d
            for i, d in enumerate(tensor.shape)]
