"""Dtype policies in the ONNX graph: a pass over the nodes the emitters wrote in float32.

Emitters write every layer in float32. This pass gives each Keras node the dtypes Keras
computes it in, with the casts where Keras casts:

- a layer computes in its dtype policy's compute dtype (``mixed_float16`` -> float16 with
  float32 variables). Keras casts variables at call time, so a float32 initializer the
  layer reads is stored already cast (bit-identical); a float input is cast on entry to the
  layer (Keras 3: every floating argument; Keras 2: the first argument) unless the class
  turns autocasting off (Keras 3's LayerNormalization, GroupNormalization, Embedding); its outputs
  carry the compute dtype. A float32 layer (the usual float32 head) fed float16 casts up.
- Keras operations (``x + y``, ``ops.*``) have no policy: operands are cast to the dtype
  Keras 3 promotes them to.
- Keras upcasts inside some layers: the normalizations compute in float32 (Layer- and
  GroupNormalization round the result to the input's dtype before the compute dtype), and
  Keras 3's fused dot-product attention takes its logits and softmax to float32.

``precision="float32"`` maps every half dtype to float32 (a full-float32 graph);
``precision="float16"`` computes every layer of a float32 model in float16 with float32
normalizations and softmax, keeping the model's input and output dtypes (cast at the
boundary). Where a half op has no kernel (onnxruntime's CPU provider: most ops in
bfloat16; ONNX: ``Range``/``Celu`` in float16), and for the masked logits before a half
softmax (onnxruntime runs float16 Add/Where/Softmax through float32 and drops the roundings
between them), the op computes in float32 on the half values and its result is rounded to
the half dtype by an explicit cast, as TensorFlow's element-wise CPU kernels do.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir import Graph, Node
from ..layers.attention import keras3_fused_path
from ..layers.operations import operation_dtypes
from ..layers.registry import compute_dtype

MODES = ("keras", "float32", "float16")
FLOAT32, ROUNDED = "float32", "rounded"  # how special nodes compute (special_nodes)
FLOATS = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
          "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}
FLOAT_NAMES = {v: k for k, v in FLOATS.items()}
# Least precise first: verify takes its default tolerance from the first one present.
PRECISION_ORDER = ("bfloat16", "float16", "float32", "float64")

# Layers that compute in float32 whatever their policy, and whether Keras casts their
# inputs on entry (autocast) and rounds the float32 result to the input's dtype first.
FLOAT32_LAYERS = {  # class: (autocast, round via the input dtype)
    "LayerNormalization": (False, True),
    "GroupNormalization": (False, True),
    "BatchNormalization": (True, False),
    "RMSNormalization": (True, False),
}
NO_AUTOCAST = {"LayerNormalization", "GroupNormalization", "Embedding"}
# The Attention operator adds its mask to the logits: a half mask cannot hold Keras'
# mask values (-0.7 * float32 max; -1e9) and a fully masked row would no longer average
# every value, so the operator runs in float32 between casts (its logits and softmax are
# float32 in Keras' fused path too). Scan (Qwen 3.5's delta rule, which keras_hub computes
# in float32 too) has a float32 body.
FLOAT32_OPS = {"Attention", "Scan"}
# --precision float16 keeps these in float32 besides FLOAT32_LAYERS.
FLOAT16_MODE_FLOAT32_LAYERS = {"UnitNormalization"}
FLOAT16_MODE_FLOAT32_OPS = {"Softmax", "LogSoftmax"}

# Ops ONNX defines no float16 for; and the few bfloat16 kernels of onnxruntime's CPU provider
# (data movement). onnxruntime runs the other float16 ops, but most of them (Add, MatMul,
# Softmax, ...) through float32, rounding only where a float16 kernel follows.
NO_FLOAT16_KERNEL = {"Range", "Celu"}
BFLOAT16_KERNELS = {"Cast", "Concat", "Gather", "Identity", "Pad", "Reshape", "Shape",
                    "Slice", "Split", "Squeeze", "Transpose", "Unsqueeze", "Expand",
                    "ConstantOfShape"}
# Inputs that are float32 whatever the data type: (op, input index).
FIXED_FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2)}
# verify's default (atol, rtol) by the least precise dtype either side computes in; see
# the README's precision section for how they were chosen.
TOLERANCES = {"float64": (1e-5, 1e-4), "float32": (1e-5, 1e-4), "float16": (1e-2, 1e-2),
              "bfloat16": (8e-2, 8e-2)}
HALF_RANGE = {"float16": float(np.finfo(np.float16).max), "bfloat16": 3.3895313892515355e38}


def has_kernel(op_type: str, dtype: str) -> bool:
    if dtype == "float16":
        return op_type not in NO_FLOAT16_KERNEL
    if dtype == "bfloat16":
        return op_type in BFLOAT16_KERNELS
    return True


# ---------------------------------------------------------------------- per-node plan


class Plan:
    """How one Keras node computes: ``dtype`` (its compute dtype), which of its ONNX
    nodes stay float32, whether inputs are cast on entry, and the dtype of its outputs."""

    def __init__(self, node: Node, mode: str):
        self.node = node
        kind = node.layer.kind
        operation = kind is not None and kind.family == "operations"
        if operation:
            operands, result = operation_dtypes(node)
            self.dtype, self.result = _mapped(operands, mode), _mapped(result, mode)
        else:
            self.dtype = _mapped(compute_dtype(node), mode)
            self.result = self.dtype
        name = node.class_name
        autocast, self.round_via_input = FLOAT32_LAYERS.get(name, (name not in NO_AUTOCAST,
                                                                   False))
        if node.layer.dialect == "keras2":  # tf_keras casts every layer's first argument
            autocast, self.round_via_input = True, False
        self.autocast = autocast and self.dtype in FLOATS and not operation
        self.operation = operation
        self.all_float32 = self.dtype in ("float16", "bfloat16") and (
            name in FLOAT32_LAYERS or (mode == "float16" and name in FLOAT16_MODE_FLOAT32_LAYERS))
        self.float32_softmax = self.dtype in ("float16", "bfloat16") and (
            mode == "float16" or _keras3_fused_attention(node))

    def entry_dtype(self, keras_dtype: str, role: str) -> str:
        """The dtype an input of ``keras_dtype`` has inside the layer."""
        if keras_dtype not in FLOATS or self.dtype not in FLOATS:
            return keras_dtype
        if self.operation:
            return self.dtype
        if not self.autocast:
            return keras_dtype
        if self.node.layer.dialect == "keras2" and role.split("[")[0] != self.first_role():
            return keras_dtype
        return self.dtype

    def first_role(self) -> str:
        kind = self.node.layer.kind
        return kind.signature[0] if kind is not None else "inputs"


def _mapped(dtype: str, mode: str) -> str:
    if dtype not in FLOATS or mode == "keras":
        return dtype
    return "float32" if mode == "float32" else "float16"


def _keras3_fused_attention(node: Node) -> bool:
    """Keras 3 MultiHeadAttention on ops.dot_product_attention (``keras3_fused_path``): its
    logits and softmax are float32 whatever the policy."""
    return (node.class_name == "MultiHeadAttention" and node.layer.dialect == "keras3"
            and node.layer.kind is not None and node.layer.kind.family == "attention"
            and keras3_fused_path(node))


# ---------------------------------------------------------------------- the pass


def apply_precision(builder, graph: Graph, mode: str) -> dict:
    """Rewrite ``builder.nodes`` in place for ``mode``; returns what verify needs to know
    (``kerasonnx.precision`` metadata): the mode, the dtypes the graph computes in and the
    dtypes Keras computes in."""
    plans = {node: Plan(node, mode) for node in graph.nodes}
    computes = {"float32"}
    dtypes = {p.dtype for p in plans.values()} | {p.result for p in plans.values()}
    dtypes |= {t.dtype for t in graph.inputs} | {t.dtype for t in graph.outputs}
    if dtypes & {"float16", "bfloat16"}:  # else the float32 graph as emitted is the answer
        rewriter = _Rewriter(builder, graph, plans, mode)
        rewriter.run()
        computes = rewriter.computes or computes
    return {"precision": mode,
            "graph_computes": sorted(computes, key=PRECISION_ORDER.index),
            "keras_computes": keras_compute_dtypes(graph)}


def keras_compute_dtypes(graph: Graph) -> list:
    """The float dtypes Keras computes the model's layers in, least precise first."""
    dtypes = {Plan(node, "keras").dtype for node in graph.nodes} & set(FLOATS)
    return sorted(dtypes or {"float32"}, key=PRECISION_ORDER.index)


def tolerance_dtype(precision: dict) -> str:
    """The least precise dtype either side computes in (``graph``, ``keras`` lists)."""
    present = set(precision.get("graph", [])) | set(precision.get("keras", []))
    return next((d for d in PRECISION_ORDER if d in present), "float32")


class _Rewriter:
    def __init__(self, builder, graph: Graph, plans: dict, mode: str):
        self.b, self.graph, self.plans, self.mode = builder, graph, plans, mode
        self.types = _emitted_types(builder, graph)  # value -> ONNX elem type, as emitted
        self.casts = {}  # (value, dtype) -> cast value
        self.computes = set()
        self.out = []
        self.keras_dtype = {}  # IR tensor -> the dtype Keras gives it
        for tensor in graph.inputs:
            self.keras_dtype[tensor] = self.interface_dtype(tensor.dtype)
            self.types[builder.value(tensor)] = FLOATS.get(self.keras_dtype[tensor],
                                                           self.types.get(tensor.name))

    def interface_dtype(self, dtype: str) -> str:
        """The dtype of a graph input or output: Keras' own, except bfloat16, which
        onnxruntime's Python API cannot pass (float32 holds every bfloat16 exactly)."""
        if dtype == "bfloat16" or (self.mode == "float32" and dtype in FLOATS):
            return "float32"
        return dtype

    def run(self) -> None:
        emitted, owner = {k: [] for k in self.graph.nodes}, None
        emitted[None] = []  # before any emitter: --with-past's past_length (int shapes)
        for n in self.b.nodes:  # a node added outside an emitter goes with the one before
            owner = self.b.emitted_by.get(n.name) or owner
            emitted[owner].append(n)
        self.out.extend(emitted[None])
        original = {t: self.b.value(t) for t in self.graph.inputs}
        original.update({t: self.b.value(t) for k in self.graph.nodes
                         for t in k.outputs + k.mask_outputs if self.b.has_value(t)})
        for k in self.graph.nodes:
            self.rewrite_node(k, emitted[k], original)
        for tensor in self.graph.outputs:  # the model's own output dtypes (float32: float32)
            self.b.bind(tensor, self.cast_to(self.keras_value(tensor),
                                             self.interface_dtype(tensor.dtype), tensor.name))
        self.b.nodes = self.out
        self.free_output_names()
        self.b.output_dtypes = {t: self.interface_dtype(t.dtype) for t in self.graph.outputs}

    def free_output_names(self) -> None:
        """A graph output now held by a cast frees its Keras name, which the uncast value
        had, so the builder can give the name to the output."""
        tensors = [t for k in self.graph.nodes for t in k.outputs + k.mask_outputs
                   if self.b.has_value(t)] + list(self.graph.inputs)
        produced = {o for n in self.b.nodes for o in n.output}
        for name, tensor in zip(self.graph.output_names, self.graph.outputs):
            if self.b.value(tensor) == name or name not in produced:
                continue
            renamed = self.b.fresh(f"{name}/uncast")
            for n in self.b.nodes:
                n.input[:] = [renamed if i == name else i for i in n.input]
                n.output[:] = [renamed if o == name else o for o in n.output]
            self.types[renamed] = self.types.get(name)
            for t in tensors:
                if self.b.value(t) == name:
                    self.b.bind(t, renamed)

    # ---------------------------------------------------------------- one Keras node

    def rewrite_node(self, k: Node, nodes: list, original: dict) -> None:
        plan = self.plans[k]
        entry = {}  # original ONNX name of an input -> the value inside the layer
        for role, tensor in k.input_tensors():
            if not self.b.has_value(tensor) or tensor.is_mask:
                continue
            name = self.input_name(tensor, original)
            if name in entry:
                continue
            keras = self.keras_dtype.get(tensor, tensor.dtype)
            entry[name] = (self.keras_value(tensor), plan.entry_dtype(keras, role))
        special = self.special_nodes(plan, nodes)
        for n in nodes:
            self.rewrite_op(n, plan, entry, special.get(n.name))
        for tensor in k.outputs + k.mask_outputs:
            self.keras_dtype[tensor] = (plan.result if self.type_name(self.b.value(tensor))
                                        in FLOATS else tensor.dtype)
        if plan.round_via_input:
            data = next((t for t in k.data_inputs() if self.b.has_value(t)), None)
            if data is not None:
                via = plan.entry_dtype(self.keras_dtype.get(data, data.dtype), "inputs")
                for tensor in k.outputs:
                    value = self.b.value(tensor)
                    if self.type_name(value) in FLOATS and via in FLOATS:
                        self.b.bind(tensor, self.cast_to(value, via, tensor.name))

    def input_name(self, tensor, original: dict) -> str:
        return original.get(tensor, self.b.value(tensor))

    def keras_value(self, tensor) -> str:
        """The ONNX value holding ``tensor`` in the dtype Keras gives it."""
        value = self.b.value(tensor)
        wanted = self.keras_dtype.get(tensor, tensor.dtype)
        cast = self.cast_to(value, wanted, tensor.name)
        if cast != value:
            self.b.bind(tensor, cast)
        return cast

    def special_nodes(self, plan: Plan, nodes: list) -> dict:
        """ONNX node name -> FLOAT32 or ROUNDED for the layer's nodes that do not simply
        compute in its dtype: all of a float32 layer's; the Attention operator's mask and
        what builds it; the softmax and its masking after the logits MatMul, FLOAT32 where
        Keras' softmax is float32, else ROUNDED: computed in float32 with every result
        rounded to the half dtype by explicit casts, because onnxruntime's CPU provider runs
        float16 Add/Where/Softmax in float32 and drops the roundings between them, and
        Keras' masking (-65504 + logit, rounded) decides what a fully masked row gives."""
        if plan.all_float32:
            return {n.name: FLOAT32 for n in nodes}
        producer = {o: n for n in nodes for o in n.output}
        special = {}
        for seeds, how in (
                ([producer.get(n.input[3]) for n in nodes
                  if n.op_type == "Attention" and len(n.input) > 3], FLOAT32),
                ([n for n in nodes if n.op_type in FLOAT16_MODE_FLOAT32_OPS],
                 FLOAT32 if plan.float32_softmax else ROUNDED)):
            stack = list(seeds)
            while stack:
                n = stack.pop()
                if n is None or n.name in special or n.op_type == "MatMul":
                    continue
                special[n.name] = how
                stack.extend(producer[i] for i in n.input if i in producer
                             and self.types.get(i) in FLOAT_NAMES)
        return special

    def rewrite_op(self, n, plan: Plan, entry: dict, special) -> None:
        dtype = ("float32" if special == FLOAT32 or plan.dtype not in FLOATS
                 or n.op_type in FLOAT32_OPS else plan.dtype)
        emulate = special == ROUNDED or not has_kernel(n.op_type, dtype)
        compute = "float32" if emulate else dtype
        inputs = []
        for index, name in enumerate(n.input):
            if name in entry:
                value, inside = entry[name]
                name = self.cast_to(value, inside, name)
            if name and self.type_name(name) in FLOATS and (n.op_type, index) not in \
                    FIXED_FLOAT32_INPUTS:  # emulated: the values Keras has, in float32
                name = self.cast_to(self.cast_to(name, dtype, name), compute, name)
            inputs.append(name)
        node = onnx.NodeProto()
        node.CopyFrom(n)
        node.input[:] = inputs
        target = _attribute(n, "to") if n.op_type == "Cast" else None
        if target == TensorProto.FLOAT and not plan.operation:  # an emitter's float32
            target = FLOATS[compute]
            _set_attribute(node, "to", target)
        if n.op_type == "ConstantOfShape" and _attribute(n, "value") is not None:
            value = numpy_helper.to_array(_attribute(n, "value"))
            if value.dtype.kind == "f":
                _set_attribute(node, "value", numpy_helper.from_array(
                    _as_dtype(value, compute), "value"))
        outputs_float = [o for o in n.output if self.types.get(o) in FLOAT_NAMES]
        if outputs_float:
            self.computes.add(dtype)
        if emulate and dtype != "float32":
            renamed = {o: self.b.fresh(f"{o}/float32") for o in outputs_float}
            node.output[:] = [renamed.get(o, o) for o in n.output]
            self.out.append(node)
            for o, raw in renamed.items():
                self.types[raw] = TensorProto.FLOAT
                self.out.append(helper.make_node("Cast", [raw], [o], name=self.b.fresh(
                    f"{o}/Cast"), to=FLOATS[dtype]))
                self.types[o] = FLOATS[dtype]
            return
        self.out.append(node)
        for o in outputs_float:
            self.types[o] = target if target is not None else FLOATS[compute]

    # ---------------------------------------------------------------- casts

    def type_name(self, value: str):
        return FLOAT_NAMES.get(self.types.get(value), "other")

    def cast_to(self, value: str, dtype: str, base: str) -> str:
        """``value`` as ``dtype`` (float values only): a converted initializer or a Cast."""
        current = self.type_name(value)
        if current not in FLOATS or dtype not in FLOATS or current == dtype:
            return value
        key = (value, dtype)
        if key in self.casts:
            return self.casts[key]
        if value in self.b.initializers:
            name = self.b.constant(f"{value}/{dtype}", _as_dtype(self.b.array(value), dtype))
        else:
            name = self.b.fresh(f"{base}/{dtype}")
            self.out.append(helper.make_node("Cast", [value], [name],
                                             name=self.b.fresh(f"{name}/Cast"),
                                             to=FLOATS[dtype]))
        self.types[name] = FLOATS[dtype]
        self.casts[key] = name
        return name


def _as_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """A float array in ``dtype``; values beyond a half type's range become its largest
    finite value (Keras' -1e9 mask logits become float16's -65504, as tf_keras uses)."""
    if dtype in HALF_RANGE:
        array = np.clip(array.astype(np.float64), -HALF_RANGE[dtype], HALF_RANGE[dtype])
    if dtype == "bfloat16":
        import ml_dtypes
        return array.astype(np.float32).astype(ml_dtypes.bfloat16)
    return array.astype(dtype)


def _attribute(node, name: str):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return None


def _set_attribute(node, name: str, value) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])


def _emitted_types(builder, graph: Graph) -> dict:
    """The element type of every value of the graph as emitted (floats as float32)."""
    inputs = [helper.make_tensor_value_info(
        t.name, TensorProto.FLOAT if t.dtype in FLOATS else FLOATS.get(t.dtype) or
        _dtype(t.dtype), None) for t in graph.inputs]
    inputs += [helper.make_tensor_value_info(name, init.data_type, list(init.dims))
               for name, init in builder.initializers.items()]
    body = helper.make_graph(builder.nodes, "types", inputs, [])
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", builder.opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({v.name: v.type.tensor_type.elem_type for v in inputs})
    return types


def _dtype(name: str) -> int:
    from .builder import onnx_dtype
    return onnx_dtype(name)
