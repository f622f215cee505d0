"""Composite layers: a layer whose call is a small graph of layers kerasonnx already knows.

KerasHub's ``TransformerEncoder`` is MultiHeadAttention, Dropout, additions,
LayerNormalization and two Dense; keras-multi-head's ``MultiHead`` is copies of a layer
whose outputs are stacked. Such a layer kind has an ``expand(node, expansion)`` function
that describes its call with an ``Expansion``: its sublayers (known kinds, each reading its
weights through the composite's sublayer path), their calls, and the Keras operations
between them. The parser then puts those inner calls into the graph in place of the
composite call (named ``<layer>/<attribute>``, e.g. ``transformer_encoder/_self_attention_layer``),
so emitters, masks and verify see ordinary nodes; ``Graph.composites`` keeps the composite
calls for inspect and verify.

Masks travel as in Keras: each inner call gets the masks its tensors carry (as Keras'
``Layer.__call__`` hands them), raw operations drop them, and the composite's outputs keep
the mask an inner call put on them, else the mask of the composite's first input when the
kind propagates masks (Keras' ``_set_mask_metadata``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import ModelConfigError
from .ir import Graph, Layer, Node, Tensor
from .layers import NEW_MASK, contains_tensor, kind_for, split_tensors

KERAS_OPS_MODULE = "keras.src.ops.numpy"


def expand(node: Node, graph: Graph, source: str) -> list:
    """Replace the call ``node`` of a composite layer by its inner calls (appended to
    ``graph.nodes``); returns the call's outputs, now produced by inner calls, or None when
    the kind cannot expand this call. ``source`` names the model file in messages."""
    expansion = Expansion(node, graph, source)
    inner = node.layer.kind.expand(node, expansion)
    if inner is None:  # the kind cannot describe this call: it stays one node
        return None
    if len(inner) != len(node.outputs):
        raise ModelConfigError(f"{source}: layer {node.name!r} ({node.class_name}): kerasonnx "
                               f"expanded it into {len(inner)} output(s), the call has "
                               f"{len(node.outputs)}; please report this with the model")
    for outer, tensor in zip(node.outputs, inner):
        expansion.adopt(outer, tensor)
    graph.composites.append(node)
    return node.outputs


class Expansion:
    """Builds the inner calls of one call of a composite layer."""

    def __init__(self, node: Node, graph: Graph, source: str):
        self.node, self.graph, self.source = node, graph, source
        self._calls = {}  # inner layer name -> times called

    @property
    def config(self) -> dict:
        return self.node.config

    # ------------------------------------------------------------------ sublayers

    def sublayer(self, attribute: str, class_name: str, config: dict,
                 module: str = "keras.layers", prefixes: Optional[tuple] = None,
                 weights=None) -> Layer:
        """The layer the composite holds as ``attribute``: ``class_name`` with ``config``
        (its ``name`` by default the attribute without leading underscores; the
        composite's dtype policy unless given), reading its weights under ``prefixes``
        (legacy, saving_lib) of the composite's: by default its name (legacy ``.h5`` weight
        names) and the attribute without its leading underscores (how the loader names
        saving_lib groups); or from ``weights`` when given. One Layer for every call of
        the composite."""
        outer = self.node.layer
        name = f"{outer.name}/{attribute}"
        if name in self.graph.layers:
            return self.graph.layers[name]
        config = dict(config)
        config.setdefault("name", attribute.lstrip("_"))
        if "dtype" in outer.config:
            config.setdefault("dtype", outer.config["dtype"])
        kind = kind_for(class_name, module, config)
        if kind is None:
            raise ModelConfigError(f"{self.source}: layer {outer.name!r} holds a "
                                   f"{class_name}, which kerasonnx does not know")
        if weights is None and outer.weights is not None:
            prefixes = prefixes or (config["name"] + "/", attribute.lstrip("_") + "/")
            weights = outer.weights.view(prefixes)
        layer = Layer(name, class_name, module, config, weights, kind, outer.dialect)
        self.graph.layers[name] = layer
        return layer

    @staticmethod
    def derived_weights(layout: str, entries: dict) -> "DerivedWeights":
        """Weights for an inner layer read from stored ones (see ``DerivedWeights``)."""
        return DerivedWeights(layout, entries)

    def call(self, layer: Layer, *args, **kwargs) -> list:
        """Call an inner layer as Keras' ``Layer.__call__`` would (tensor arguments bound
        to roles, the masks the tensors carry handed over); returns its outputs."""
        return self._call(layer, layer.name.rsplit("/", 1)[-1], args, kwargs)

    def _call(self, layer: Layer, label: str, args, kwargs) -> list:
        from .parse import _add_implicit_masks, _bind  # parse imports this module

        kind = layer.kind
        count = self._calls.get(layer.name, 0)
        self._calls[layer.name] = count + 1
        name = f"{self.node.name}/{label}" + (f"/call{count}" if count else "")
        arguments = _bind(kind.signature, list(args), kwargs)
        tensor_arguments = [k for k, v in arguments.items() if contains_tensor(v)]
        if kind.bind_roles is not None:
            roles, arguments = kind.bind_roles(arguments)
        else:
            roles, arguments = split_tensors(arguments)
        arguments = {k: v for k, v in arguments.items() if v is not None}
        node = Node(name, layer, count, roles, arguments, parent=self.node)
        _add_implicit_masks(node, kind.mask_roles, tensor_arguments)
        self._add_outputs(node)
        for role in kind.clears_masks_of(node):
            node.inputs[role].mask = None
        if kind.expand is not None:
            outputs = expand(node, self.graph, self.source)
            if outputs is None:
                raise ModelConfigError(f"{self.source}: layer {self.node.name!r} holds a "
                                       f"{node.class_name} that kerasonnx cannot expand")
            return outputs
        self.graph.nodes.append(node)
        return node.outputs

    def op(self, operation: str, *operands, label: str, **attributes) -> Tensor:
        """A Keras operation on tensors inside the call (``x + residual`` is
        ``op("Add", x, residual, label="residual")``): no mask passes through it."""
        config = {"name": label, **attributes}
        layer = Layer(f"{self.node.name}/{label}", operation, KERAS_OPS_MODULE, config,
                      None, kind_for(operation, KERAS_OPS_MODULE, config),
                      self.node.layer.dialect)
        return self._call(layer, label, (),
                          {f"arg{i}": value for i, value in enumerate(operands)})[0]

    def _add_outputs(self, node: Node) -> None:
        try:
            types = node.layer.kind.output_types(node)
        except (AttributeError, KeyError, TypeError, IndexError, ValueError) as exc:
            raise ModelConfigError(
                f"{self.source}: layer {self.node.name!r} ({self.node.class_name}) is "
                f"configured or called in a way kerasonnx cannot follow inside it "
                f"({node.class_name}: {type(exc).__name__}: {exc})") from None
        if not types:
            raise ModelConfigError(f"{self.source}: layer {self.node.name!r} "
                                   f"({self.node.class_name}): kerasonnx cannot tell what "
                                   f"its inner {node.class_name} call outputs")
        for i, (shape, dtype) in enumerate(types):
            node.outputs.append(Tensor(node.name if i == 0 else f"{node.name}:{i}",
                                       None if shape is None else tuple(shape),
                                       str(dtype or "float32"), node, i))
        mask = node.layer.kind.output_mask(node)
        if mask == NEW_MASK:
            shape = node.outputs[0].shape
            mask = Tensor(f"{node.name}/mask", None if shape is None else shape[:-1], "bool",
                          node, 0, is_mask=True)
            node.mask_outputs.append(mask)
        node.outputs[0].mask = mask

    # ------------------------------------------------------------------ outputs

    def adopt(self, outer: Tensor, inner: Tensor) -> None:
        """Make the composite's output ``outer`` the value of ``inner``: the inner call
        that computes ``inner`` produces ``outer`` in its place. A mask the inner call put
        on it wins over the one the composite propagates."""
        producer = inner.producer
        if producer is None or not self._inside(producer):
            raise ModelConfigError(f"{self.source}: layer {self.node.name!r}: an output "
                                   f"that no inner call computes; please report this")
        producer.outputs[inner.index] = outer
        outer.producer, outer.index = producer, inner.index
        if inner.mask is not None:
            outer.mask = inner.mask
        for node in self.graph.nodes:
            if self._inside(node):
                for role, value in node.inputs.items():
                    if value is inner:
                        node.inputs[role] = outer
                    elif isinstance(value, list):
                        node.inputs[role] = [outer if v is inner else v for v in value]

    def _inside(self, node: Node) -> bool:
        while node is not None and node is not self.node:
            node = node.parent
        return node is self.node


class DerivedWeights:
    """Weights of an inner layer read from other layers' stored weights, NumPy-transformed
    at conversion time: keras-multi-head's ``MultiHead`` projects its input once for all
    its copies (each copy's Dense reads a slice of the projection), KerasHub's
    ``MaskedLMHead`` projects onto a token embedding's table (a Dense reading it
    transposed). ``entries`` maps each name the inner layer asks for to (weights, stored
    name, transform of the array or None)."""

    def __init__(self, layout: str, entries: dict):
        self.layout = layout
        self._entries = entries

    def names(self) -> list:
        return [name for name, (weights, stored, _) in self._entries.items()
                if stored in weights]

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def shape(self, name: str) -> tuple:
        weights, stored, transform = self._entries[name]
        shape = weights.shape(stored)
        if transform is None:
            return shape
        # the transform applied to a stand-in of that shape that holds no memory
        proxy = np.lib.stride_tricks.as_strided(np.zeros(1, bool), shape, (0,) * len(shape))
        return tuple(transform(proxy).shape)

    def problem(self, name: str):
        """Why the stored weight behind ``name`` cannot be a Keras weight, or None."""
        weights, stored, _ = self._entries[name]
        return weights.problem(stored)

    def nbytes(self) -> int:
        return 0  # the bytes are counted with the layer that stores them

    def get(self, name: str) -> np.ndarray:
        weights, stored, transform = self._entries[name]
        value = weights.get(stored)
        return value if transform is None else np.ascontiguousarray(transform(value))

    def param_count(self) -> int:
        return int(sum(np.prod(self.shape(name)) for name in self.names()))
