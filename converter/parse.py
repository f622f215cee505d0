"""Model config -> ``ir.Graph``, for both ``inbound_nodes`` dialects.

Keras 2 writes a call as ``[[layer, node, tensor, kwargs], ...]`` (one entry per tensor of
the FIRST argument; other arguments become kwargs, tensors in them ``[layer, node, tensor]``);
Keras 3 writes ``{"args": [...], "kwargs": {...}}`` with ``__keras_tensor__`` objects. Both
are decoded into ``_Call(args, kwargs)`` holding ``_Ref`` objects, then bound to the layer's
call signature and turned into nodes whose inputs have roles. Sequential models are read as
chains; nested models are inlined (their inner layers keep one ``Layer`` for all calls).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from .composite import expand
from .keras_hub_models import functional_config
from .errors import ModelConfigError, reported
from .ir import Graph, Layer, Node, Tensor
from .layers import NEW_MASK, contains_tensor, kind_for, split_tensors
from .load import SavedModel

MODEL_CLASSES = ("Functional", "Model", "Sequential")
INPUT_LAYER = "InputLayer"
QUICK_PASSES = 16


@dataclass(frozen=True)
class _Ref:
    """A reference to output ``tensor`` of call ``call`` of ``layer`` (offsets resolved)."""

    layer: str
    call: int
    tensor: int


@dataclass
class _Call:
    args: list
    kwargs: dict


@dataclass
class _ModelSpec:
    """A Functional or Sequential model in one neutral form."""

    name: str
    class_name: str
    layers: dict  # name -> layer config (with "inbound_nodes")
    calls: dict  # name -> list of _Call
    inputs: list  # _Ref to InputLayers
    outputs: list  # _Ref
    recorded: dict = field(default_factory=dict)  # (layer, call, tensor) -> (shape, dtype)
    referenced: Optional[dict] = None  # see ``_referenced``
    output_names: Optional[list] = None  # a rebuilt KerasHub model's names of its outputs


@dataclass
class _Scope:
    """Where a model's layers live: the names of the models above them, the prefix of
    their node names, and their saving_lib paths (layer name -> ``layers/dense_1``)."""

    names: tuple
    node_prefix: str
    saving_paths: dict


def parse(saved: SavedModel) -> Graph:
    """Build the intermediate graph of a loaded model."""
    return _Parser(saved).parse()


def detect_dialect(config: dict, keras_version: Optional[str]) -> str:
    """"keras3" or "keras2": from the first inbound node found, else from the version."""
    for layer in _walk_layer_configs(config):
        for node in layer.get("inbound_nodes") or []:
            return "keras3" if isinstance(node, dict) else "keras2"
    if keras_version:
        return "keras3" if keras_version.split(".")[0] == "3" else "keras2"
    inner = config.get("config", {})
    first = (inner.get("layers") or [{}])[0].get("config", {})
    return "keras3" if "batch_shape" in first or isinstance(first.get("dtype"), dict) else "keras2"


def _walk_layer_configs(config: dict):
    for layer in config.get("config", {}).get("layers") or []:
        if isinstance(layer, dict):
            yield layer
            if layer.get("class_name") in MODEL_CLASSES:
                yield from _walk_layer_configs(layer)


def snake_case(name: str) -> str:
    """Keras' rule for class-name-based weight paths (``keras.src.utils.naming``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _Parser:
    def __init__(self, saved: SavedModel):
        self.saved = saved
        self.source = saved.source
        self.dialect = detect_dialect(saved.config, saved.keras_version)
        self.layer_objects = {}  # (model path names, layer name) -> Layer
        self.nested_specs = {}  # (model path names, nested model name) -> _ModelSpec
        self.graph = Graph(name=saved.config["config"].get("name", "model"),
                           dialect=self.dialect, keras_version=saved.keras_version)

    # ------------------------------------------------------------------ models

    def parse(self) -> Graph:
        spec = self._model_spec(self.saved.config, "the model")
        outputs = self._build(spec, _Scope((), "", _saving_paths(spec, "")), inputs=None)
        self.graph.outputs = outputs
        self.graph.output_names = spec.output_names or _unique_names(
            [r.layer for r in spec.outputs])
        return self.graph

    def _model_spec(self, config: dict, where: str) -> _ModelSpec:
        if config.get("class_name") not in MODEL_CLASSES:  # a KerasHub model's constructor
            config = functional_config(config, self.source) or config
        class_name = config.get("class_name")
        body = config.get("config")
        if class_name not in MODEL_CLASSES or not isinstance(body, dict):
            raise ModelConfigError(f"{self.source}: {where} is a {class_name!r}, not a "
                                   f"Functional or Sequential model; subclassed models cannot "
                                   f"be read from their config")
        if not isinstance(body.get("layers"), list):
            raise ModelConfigError(f"{self.source}: {where} has no 'layers' list; this is "
                                   f"not a model config written by Keras")
        name = body.get("name") or config.get("name") or "model"
        if class_name == "Sequential":
            return self._sequential_spec(name, body)
        return self._functional_spec(name, body)

    def _functional_spec(self, name: str, body: dict) -> _ModelSpec:
        layers = {}
        for layer in body["layers"]:
            layer_name = layer.get("name") or layer.get("config", {}).get("name")
            if not isinstance(layer, dict) or not layer_name:
                raise ModelConfigError(f"{self.source}: model {name!r} has a layer entry "
                                       f"without a name")
            layers[layer_name] = layer
        spec = _ModelSpec(name, "Functional", layers, {}, [], [])
        for layer_name, layer in layers.items():
            spec.calls[layer_name] = [self._decode_call(node, spec, layer_name)
                                      for node in layer.get("inbound_nodes") or []]
        spec.inputs = [self._ref(r, layers, f"model {name!r} inputs", endpoint=True)
                       for r in _ref_list(body.get("input_layers"))]
        spec.outputs = [self._ref(r, layers, f"model {name!r} outputs", endpoint=True)
                        for r in _ref_list(body.get("output_layers"))]
        spec.output_names = body.get("output_names")
        self.graph.notes.extend(body.get("notes") or [])
        self._validate(spec)
        return spec

    def _sequential_spec(self, name: str, body: dict) -> _ModelSpec:
        configs = [dict(layer) for layer in body["layers"]]
        for i, layer in enumerate(configs):
            layer.setdefault("name", layer.get("config", {}).get("name") or f"layer_{i}")
        if not configs or configs[0].get("class_name") != INPUT_LAYER:
            configs.insert(0, self._implicit_input(name, body, configs))
        layers = {layer["name"]: layer for layer in configs}
        calls = {configs[0]["name"]: []}
        for previous, layer in zip(configs, configs[1:]):
            calls[layer["name"]] = [_Call([_Ref(previous["name"], 0, 0)], {})]
        return _ModelSpec(name, "Sequential", layers, calls,
                          [_Ref(configs[0]["name"], 0, 0)], [_Ref(configs[-1]["name"], 0, 0)])

    def _implicit_input(self, name: str, body: dict, configs: list) -> dict:
        """The InputLayer Keras builds for a Sequential from ``batch_input_shape`` on its
        first layer (Keras 2) or ``build_input_shape`` (either)."""
        first = configs[0].get("config", {}) if configs else {}
        shape = first.get("batch_input_shape") or first.get("batch_shape")
        if shape is None and first.get("input_shape") is not None:
            shape = [None] + list(first["input_shape"])
        shape = shape or body.get("build_input_shape")
        if shape is None:
            raise ModelConfigError(f"{self.source}: Sequential model {name!r} has no input "
                                   f"shape (it was never built); build or call it before "
                                   f"saving")
        input_name = f"{configs[0]['name']}_input" if configs else f"{name}_input"
        return {"class_name": INPUT_LAYER, "name": input_name,
                "config": {"name": input_name, "batch_shape": list(shape),
                           "dtype": first.get("dtype") if isinstance(first.get("dtype"), str)
                           else "float32"}}

    def _validate(self, spec: _ModelSpec) -> None:
        def check(ref: _Ref, who: str):
            if ref.layer not in spec.layers:
                raise ModelConfigError(f"{self.source}: {who} refers to layer {ref.layer!r}, "
                                       f"which model {spec.name!r} does not have")
            calls = max(len(spec.calls[ref.layer]), 1)
            if not 0 <= ref.call < calls:
                raise ModelConfigError(f"{self.source}: {who} refers to call {ref.call} of "
                                       f"layer {ref.layer!r}, which is called {calls} time(s)")

        for layer_name, calls in spec.calls.items():
            for call in calls:
                for ref in _refs_in(call):
                    check(ref, f"layer {layer_name!r}")
        for ref in spec.inputs + spec.outputs:
            check(ref, f"model {spec.name!r}")

    # ------------------------------------------------------------------ decoding

    def _decode_call(self, node, spec: _ModelSpec, layer_name: str) -> _Call:
        where = f"layer {layer_name!r}"
        layers = spec.layers
        if isinstance(node, dict):
            args = self._decode_keras3(node.get("args", []), spec, where)
            kwargs = self._decode_keras3(node.get("kwargs", {}), spec, where)
            return _Call(list(args), dict(kwargs))
        if not isinstance(node, list):
            raise ModelConfigError(f"{self.source}: {where} has an inbound node that is "
                                   f"neither a list (Keras 2) nor an object (Keras 3)")
        entries = node if node and isinstance(node[0], list) else [node]
        first, kwargs = [], {}
        for entry in entries:
            if not isinstance(entry, list) or len(entry) < 3:
                raise ModelConfigError(f"{self.source}: {where} has a malformed inbound node "
                                       f"{entry!r}")
            if entry[0] == "_CONSTANT_VALUE":
                first.append(entry[2])
            else:
                first.append(self._ref(entry[:3], layers, where))
            if len(entry) > 3 and isinstance(entry[3], dict):
                kwargs = self._decode_keras2_kwargs(entry[3], layers, where)
        return _Call([first[0] if len(first) == 1 else first], kwargs)

    def _decode_keras2_kwargs(self, value, layers: dict, where: str):
        """Tensors inside Keras 2 kwargs are ``[layer, node, tensor]``: any list of a string
        and two ints is one, as in tf_keras' own reader."""
        if (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
                and isinstance(value[1], int) and isinstance(value[2], int)):
            return self._ref(value, layers, where)
        if isinstance(value, list):
            return [self._decode_keras2_kwargs(v, layers, where) for v in value]
        if isinstance(value, dict):
            return {k: self._decode_keras2_kwargs(v, layers, where) for k, v in value.items()}
        return value

    def _decode_keras3(self, value, spec: _ModelSpec, where: str):
        """Decode Keras 3 call arguments; remember the shapes Keras recorded on tensors."""
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                config = value.get("config", {})
                ref = self._ref(config.get("keras_history"), spec.layers, where)
                spec.recorded[(ref.layer, ref.call, ref.tensor)] = (
                    _shape(config.get("shape")), config.get("dtype"))
                return ref
            if value.get("class_name") == "__tuple__":
                return [self._decode_keras3(v, spec, where)
                        for v in value.get("config", {}).get("value", [])]
            return {k: self._decode_keras3(v, spec, where) for k, v in value.items()}
        if isinstance(value, list):
            return [self._decode_keras3(v, spec, where) for v in value]
        return value

    def _ref(self, raw, layers: dict, where: str, endpoint: bool = False) -> _Ref:
        """Decode ``[layer, node_index, tensor_index]`` and turn the node index into the
        index of the call in the layer's ``inbound_nodes``.

        A nested model has a call of its own at index 0 (input to output). Keras 2 counts it
        in every reference (for Functional models and Sequentials with an InputLayer); Keras 3
        counts it only in a model's ``input_layers`` / ``output_layers``, for Functional."""
        if (not isinstance(raw, (list, tuple)) or len(raw) < 3 or not isinstance(raw[0], str)
                or not isinstance(raw[1], int) or not isinstance(raw[2], int)):
            raise ModelConfigError(f"{self.source}: {where} has a malformed tensor reference "
                                   f"{raw!r} (expected [layer, node_index, tensor_index])")
        name, node_index, tensor_index = raw[0], raw[1], raw[2]
        layer = layers.get(name)
        if layer is None:
            raise ModelConfigError(f"{self.source}: {where} refers to layer {name!r}, which "
                                   f"does not exist in the model")
        if layer.get("class_name") == INPUT_LAYER:
            if node_index != 0:
                raise ModelConfigError(f"{self.source}: {where} refers to node {node_index} of "
                                       f"input {name!r}, which has only node 0")
            return _Ref(name, 0, tensor_index)
        return _Ref(name, node_index - self._own_call_offset(layer, endpoint), tensor_index)

    def _own_call_offset(self, layer: dict, endpoint: bool) -> int:
        class_name = layer.get("class_name")
        if class_name not in MODEL_CLASSES:
            return 0
        if self.dialect == "keras3":
            return int(endpoint and class_name != "Sequential")
        inner = layer.get("config", {}).get("layers") or [{}]
        return int(class_name != "Sequential" or inner[0].get("class_name") == INPUT_LAYER)

    # ------------------------------------------------------------------ building

    def _build(self, spec: _ModelSpec, scope: _Scope, inputs: Optional[list]) -> list:
        """Create the nodes of ``spec``; return its output tensors. ``inputs`` are the
        tensors a nested call passes in; None for the top-level model (graph inputs)."""
        produced = {}
        if inputs is None:
            for ref in spec.inputs:
                tensor = self._graph_input(spec.layers[ref.layer])
                self.graph.inputs.append(tensor)
                produced[(ref.layer, 0)] = [tensor]
        else:
            if len(inputs) != len(spec.inputs):
                raise ModelConfigError(
                    f"{self.source}: nested model {spec.name!r} takes {len(spec.inputs)} "
                    f"input(s) but is called with {len(inputs)}")
            for ref, tensor in zip(spec.inputs, inputs):
                produced[(ref.layer, 0)] = [tensor]

        pending = [(name, i, call) for name, calls in spec.calls.items()
                   for i, call in enumerate(calls)
                   if spec.layers[name].get("class_name") != INPUT_LAYER]
        if self.dialect == "keras3":  # calls with side effects on masks see Keras' order
            rank = {node: i for i, node in enumerate(_keras3_run_order(spec))}
            pending.sort(key=lambda p: rank.get((p[0], p[1]), len(rank)))
        passes = 0
        while pending:
            waiting = []
            for name, index, call in pending:
                if all((ref.layer, ref.call) in produced for ref in _refs_in(call)):
                    where = f"layer {name!r} ({spec.layers[name].get('class_name')})"
                    with reported(self.source, where):
                        produced[(name, index)] = self._call(spec, scope, name, index, call,
                                                             produced)
                else:
                    waiting.append((name, index, call))
            if len(waiting) == len(pending):
                stuck = sorted({name for name, _, _ in waiting})
                raise ModelConfigError(
                    f"{self.source}: model {spec.name!r} has a cycle or an input it never "
                    f"defines: layers {', '.join(stuck)} wait on each other")
            # Keras writes calls in an order a few passes resolve; a reordered config must
            # not cost a pass per layer.
            passes += 1
            pending = waiting if passes < QUICK_PASSES else _topological(waiting)
        missing = [r.layer for r in spec.outputs if (r.layer, r.call) not in produced]
        if missing:
            raise ModelConfigError(f"{self.source}: model {spec.name!r} outputs "
                                   f"{', '.join(missing)}, which is never computed")
        return [self._output_of(produced, ref, spec.name) for ref in spec.outputs]

    def _output_of(self, produced: dict, ref: _Ref, where: str) -> Tensor:
        outputs = produced[(ref.layer, ref.call)]
        if not 0 <= ref.tensor < len(outputs):
            raise ModelConfigError(f"{self.source}: {where} uses output {ref.tensor} of layer "
                                   f"{ref.layer!r}, which has {len(outputs)} output(s)")
        return outputs[ref.tensor]

    def _graph_input(self, layer: dict) -> Tensor:
        config = layer.get("config", {})
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if shape is None and config.get("input_shape") is not None:
            shape = [None] + list(config["input_shape"])
        if shape is None:
            raise ModelConfigError(f"{self.source}: input {layer['name']!r} has no shape")
        dtype = config.get("dtype") or "float32"
        if isinstance(dtype, dict):
            dtype = dtype.get("config", {}).get("name", "float32")
        return Tensor(layer["name"], _shape(shape), str(dtype))

    def _call(self, spec, scope, name, index, call, produced) -> list:
        config = spec.layers[name]
        resolve = _Resolver(produced, self, spec.name)
        args = resolve(call.args)
        kwargs = resolve(call.kwargs)
        node_prefix = scope.node_prefix + (name if index == 0 else f"{name}/call{index}")
        if config.get("class_name") in MODEL_CLASSES:
            return self._inline(config, scope, node_prefix, args)
        layer = self._layer(config, scope)
        kind = layer.kind
        arguments = _bind(kind.signature if kind else ("inputs",), args, kwargs)
        tensor_arguments = [k for k, v in arguments.items() if contains_tensor(v)]
        if kind is not None and kind.bind_roles is not None:
            roles, arguments = kind.bind_roles(arguments)
        else:
            roles, arguments = split_tensors(arguments)
        arguments = {k: v for k, v in arguments.items() if v is not None}
        node = Node(node_prefix, layer, index, roles, arguments)
        if kind is not None:
            _add_implicit_masks(node, kind.mask_roles, tensor_arguments)
        self._add_outputs(node, spec, name, index)
        if kind is not None:
            for role in kind.clears_masks_of(node):
                node.inputs[role].mask = None
            if kind.expand is not None:  # a composite layer: its inner calls instead
                outputs = expand(node, self.graph, self.source)
                if outputs is not None:
                    return outputs
        self.graph.nodes.append(node)
        return node.outputs

    def _inline(self, config: dict, scope: _Scope, node_prefix: str, args: list) -> list:
        name = config["name"]
        key = (scope.names, name)
        if key not in self.nested_specs:  # decoded once, however often it is called
            self.nested_specs[key] = self._model_spec(config, f"nested model {name!r}")
        spec = self.nested_specs[key]
        first = args[0] if args else []
        tensors = first if isinstance(first, list) else [first]
        if not all(isinstance(t, Tensor) for t in tensors):
            raise ModelConfigError(f"{self.source}: nested model {name!r} is called on "
                                   f"something that is not a tensor")
        inner = _Scope(scope.names + (name,), node_prefix + "/",
                       _saving_paths(spec, scope.saving_paths[name] + "/"))
        return self._build(spec, inner, tensors)

    def _layer(self, config: dict, scope: _Scope) -> Layer:
        key = (scope.names, config["name"])
        if key not in self.layer_objects:
            names = scope.names + (config["name"],)
            class_name = config.get("class_name", "?")
            body = config.get("config", {})
            weights = None
            if self.saved.weights is not None:
                weights = self.saved.weights.layer(
                    names, scope.saving_paths.get(config["name"], ""))
            layer = Layer("/".join(names), class_name, config.get("module"), body, weights,
                          kind_for(class_name, config.get("module"), body), self.dialect)
            self.layer_objects[key] = layer
            self.graph.layers[layer.name] = layer
        return self.layer_objects[key]

    def _add_outputs(self, node: Node, spec: _ModelSpec, name: str, index: int) -> None:
        kind = node.layer.kind
        try:
            types = kind.output_types(node) if kind is not None else None
        except (AttributeError, KeyError, TypeError, IndexError, ValueError) as exc:
            if any(t.shape is None for t in node.data_inputs()):
                types = None  # behind a layer of unknown shape: unknown too
            else:
                raise ModelConfigError(
                    f"{self.source}: layer {node.name!r} ({node.class_name}) is called or "
                    f"configured in a way Keras does not write ({type(exc).__name__}: {exc}); "
                    f"check its inputs and config") from None
        referenced = 1 + _referenced(spec).get((name, index), 0)
        if types is None:
            types = [spec.recorded.get((name, index, i), (None, "float32"))
                     for i in range(referenced)]
        for i, (shape, dtype) in enumerate(types):
            tensor_name = node.name if i == 0 else f"{node.name}:{i}"
            node.outputs.append(Tensor(tensor_name, _shape(shape), str(dtype or "float32"),
                                       node, i))
        mask = kind.output_mask(node) if kind is not None else None
        if mask == NEW_MASK:
            shape = node.outputs[0].shape
            mask = Tensor(f"{node.name}/mask", None if shape is None else shape[:-1], "bool",
                          node, len(node.mask_outputs), is_mask=True)
            node.mask_outputs.append(mask)
        node.outputs[0].mask = mask


# ---------------------------------------------------------------------- helpers


def _saving_paths(spec: _ModelSpec, prefix: str) -> dict:
    """Layer name -> saving_lib path: ``layers/<snake_case(class)>[_n]`` with a per-class
    counter over the model's layers in order (Keras 3 ``saving_lib``). Operations are not
    layers; a Sequential's ``layers`` leave out its InputLayer."""
    layers = [(name, layer) for name, layer in spec.layers.items()
              if not (spec.class_name == "Sequential"
                      and layer.get("class_name") == INPUT_LAYER)]
    return {name: prefix + path for name, path in _saving_paths_of(layers).items()}


def _saving_paths_of(layers: list) -> dict:
    """``_saving_paths`` of (name, layer config) pairs, without the prefix. A rebuilt KerasHub model
    gives the path of a layer whose path is not its own (its backbone, a layer of it the
    task calls again) as ``saving_path``."""
    used, paths = {}, {}
    for name, layer in layers:
        class_name = layer.get("class_name", "")
        if "saving_path" in layer:
            paths[name] = layer["saving_path"]
            continue
        if (layer.get("module") or "").startswith("keras.src.ops"):
            continue
        kind = kind_for(class_name, layer.get("module"), layer.get("config", {}))
        base = snake_case(kind.python_name if kind and kind.python_name else class_name)
        count = used.get(base)
        used[base] = 0 if count is None else count + 1
        paths[name] = f"layers/{base}" + ("" if count is None else f"_{count + 1}")
    return paths


class _Resolver:
    """Replace the ``_Ref`` objects in decoded arguments with the tensors they name."""

    def __init__(self, produced: dict, parser: _Parser, where: str):
        self.produced, self.parser, self.where = produced, parser, where

    def __call__(self, value):
        if isinstance(value, _Ref):
            return self.parser._output_of(self.produced, value, self.where)
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value


def _keras3_run_order(spec: _ModelSpec) -> list:
    """The calls ``(layer, call)`` of ``spec`` that compute its outputs, in the order Keras 3
    runs them (``keras.src.ops.function``: ``map_graph`` and ``_run_through_graph``).

    Keras walks from each output depth-first through the call arguments (in ``tree.flatten``
    order), then gives each call a depth: 0 for outputs, else one more than the deepest of
    its consumers, and never less than an earlier-seen call of the same layer; it runs the
    deepest first and, within a depth, in the order the depths were first assigned. This
    is not the config's order (two MultiHeadAttention on one masked tensor run the later
    one first), and it decides which call still sees a mask another call deletes."""
    inputs = {(r.layer, r.call) for r in spec.inputs}

    def parents(node):
        calls = spec.calls.get(node[0], [])
        return [] if node in inputs or node[1] >= len(calls) else [
            (r.layer, r.call) for r in _refs_in(calls[node[1]])]

    post_order, seen = [], set(inputs)
    for output in spec.outputs:
        start = (output.layer, output.call)
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(parents(start)))]
        while stack:
            node, todo = stack[-1]
            parent = next((p for p in todo if p not in seen), None)
            if parent is None:
                stack.pop()
                post_order.append(node)
            else:
                seen.add(parent)
                stack.append((parent, iter(parents(parent))))
    depths, layer_depths = {}, {}
    for node in reversed(post_order):
        depth = max(depths.setdefault(node, 0), layer_depths.get(node[0], 0))
        depths[node] = layer_depths[node[0]] = depth
        for parent in parents(node):
            if parent not in inputs:
                depths[parent] = max(depth + 1, depths.get(parent, 0))
    return sorted(depths, key=lambda node: -depths[node])  # stable: first-assigned order


def _referenced(spec: _ModelSpec) -> dict:
    """(layer, call) -> the highest output index anything in ``spec`` uses or Keras
    recorded (an unknown layer gets that many outputs), computed once per spec."""
    if spec.referenced is None:
        highest = {}
        used = [(r.layer, r.call, r.tensor)
                for r in _refs_in([list(spec.calls.values()), spec.outputs])]
        for layer, call, tensor in used + list(spec.recorded):
            key = (layer, call)
            highest[key] = max(highest.get(key, 0), tensor)
        spec.referenced = highest
    return spec.referenced


def _topological(pending: list) -> list:
    """``(name, index, call)`` ordered so that each call comes after the calls it uses
    (Keras writes them so already; a reordered config must not cost quadratic time).
    Calls on a cycle keep their place; the build loop reports them."""
    position = {(name, index): i for i, (name, index, _) in enumerate(pending)}
    ordered, state = [], {}
    for start in range(len(pending)):
        stack = [(start, False)]
        while stack:
            i, done = stack.pop()
            if done:
                state[i] = 2
                ordered.append(pending[i])
                continue
            if state.get(i):
                continue
            state[i] = 1
            stack.append((i, True))
            for ref in _refs_in(pending[i][2]):
                j = position.get((ref.layer, ref.call))
                if j is not None and not state.get(j):
                    stack.append((j, False))
    return ordered


def _refs_in(value):
    """The references in decoded arguments, in Keras' ``tree.flatten`` order (dict keys
    sorted)."""
    if isinstance(value, _Ref):
        yield value
    elif isinstance(value, _Call):
        yield from _refs_in(value.args)
        yield from _refs_in(value.kwargs)
    elif isinstance(value, list):
        for item in value:
            yield from _refs_in(item)
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _refs_in(value[key])


def _ref_list(raw) -> list:
    """``input_layers`` / ``output_layers``: a list of refs, one flat ref, or a dict (in
    Keras' flatten order, keys sorted, as ``model.outputs`` lists them)."""
    if isinstance(raw, dict):
        raw = [raw[key] for key in sorted(raw)]
    if not raw:
        return []
    if isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str):
        return [raw]
    return list(raw)


def _bind(signature: tuple, args: list, kwargs: dict) -> dict:
    """Name positional arguments after the call signature (``arg<i>`` past its end)."""
    bound = {(signature[i] if i < len(signature) else f"arg{i}"): value
             for i, value in enumerate(args)}
    bound.update(kwargs)
    return bound


def _add_implicit_masks(node: Node, mask_roles: dict, tensor_arguments: list) -> None:
    """Hand the call the masks its tensors carry, as Keras does, unless passed explicitly.
    Keras 3 fills ``mask`` only when the call has one tensor argument, and ``<arg>_mask``
    for each tensor argument of a call with several (an RNN given initial states gets no
    mask; ``mha(x, x)`` gets no key_mask)."""
    several = len(tensor_arguments) > 1 and node.layer.dialect == "keras3"
    for data_role, mask_role in mask_roles.items():
        if node.inputs.get(mask_role) is not None:
            continue
        if several and mask_role not in {f"{a}_mask" for a in tensor_arguments}:
            continue
        value = node.inputs.get(data_role)
        if isinstance(value, Tensor) and value.mask is not None:
            node.inputs[mask_role] = value.mask
        elif isinstance(value, list):
            masks = [t.mask if isinstance(t, Tensor) else None for t in value]
            if any(m is not None for m in masks):
                node.inputs[mask_role] = masks


def _shape(raw) -> Optional[tuple]:
    if raw is None:
        return None
    return tuple(None if d is None or d == -1 else int(d) for d in raw)


def _unique_names(names: list) -> list:
    """Repeated output names get ``_1``, ``_2``, ... (``mha``, ``mha_1``), skipping names
    another output already has."""
    taken, unique = set(names), []
    seen = set()
    for name in names:
        candidate, count = name, 0
        while candidate in seen or (candidate != name and candidate in taken):
            count += 1
            candidate = f"{name}_{count}"
        seen.add(candidate)
        unique.append(candidate)
    return unique
