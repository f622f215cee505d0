"""The intermediate graph: what the parser produces and the emitters consume.

A ``Graph`` is a list of ``Node`` in topological order. A node is ONE CALL of a Keras layer
(a shared layer called twice gives two nodes pointing at the same ``Layer``; a nested model
is inlined, its inner calls prefixed with the nested model's name). Every node input has a
ROLE (``query``, ``value``, ``key``, ``attention_mask``, ``query_mask``, ``inputs``, ...)
whatever dialect or call style wrote it, and masks are ordinary tensors (``Tensor.mask``
points at the mask that travels with a value; ``is_mask`` marks the mask tensors).

Shapes are tuples whose unknown dims are ``None`` (symbolic); a whole unknown shape is
``None``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Union

Shape = Optional[tuple]


@dataclass(eq=False)
class Tensor:
    """A value flowing between nodes: a Keras tensor or a Keras mask."""

    name: str
    shape: Shape
    dtype: str
    producer: Optional["Node"] = None  # None for graph inputs
    index: int = 0
    mask: Optional["Tensor"] = None
    is_mask: bool = False

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {format_shape(self.shape)}, {self.dtype})"


@dataclass(eq=False)
class Layer:
    """A Keras layer object: its config and where its weights live. Shared by its calls."""

    name: str  # path name, nested models joined with "/": "block/mha"
    class_name: str
    module: Optional[str]
    config: dict
    weights: Any = None  # a load.LayerWeights, or None when no weights were given
    kind: Any = None  # a layers.LayerKind, or None when we know nothing of the class
    dialect: str = "keras3"  # whose semantics apply: "keras2" or "keras3"

    def param_count(self) -> Optional[int]:
        return None if self.weights is None else self.weights.param_count()


RoleValue = Union[Tensor, list, None]

# Roles that carry Keras masks (``attention_mask`` is an ordinary input the user passes).
MASK_ROLES = ("mask", "query_mask", "value_mask", "key_mask")


@dataclass(eq=False)
class Node:
    """One call of a layer. ``inputs`` maps roles to tensors (or lists of tensors),
    ``arguments`` holds the non-tensor call arguments (flags, constants)."""

    name: str
    layer: Layer
    call_index: int
    inputs: dict = field(default_factory=dict)
    arguments: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    mask_outputs: list = field(default_factory=list)  # masks this node computes
    # The composite call this node is an inner call of (``transformer_encoder`` for
    # ``transformer_encoder/_self_attention_layer``), or None.
    parent: Optional["Node"] = None

    @property
    def class_name(self) -> str:
        return self.layer.class_name

    @property
    def config(self) -> dict:
        return self.layer.config

    def input(self, role: str) -> RoleValue:
        return self.inputs.get(role)

    def input_tensors(self) -> Iterator[tuple[str, Tensor]]:
        """(role, tensor) for every tensor input, list roles expanded as ``role[i]``."""
        for role, value in self.inputs.items():
            if isinstance(value, Tensor):
                yield role, value
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, Tensor):
                        yield f"{role}[{i}]", item

    def data_inputs(self) -> list:
        """The non-mask input tensors, in role order."""
        return [t for _, t in self.input_tensors() if not t.is_mask]

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.class_name})"


@dataclass
class Graph:
    name: str
    dialect: str  # "keras2" or "keras3"
    keras_version: Optional[str]
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    output_names: list = field(default_factory=list)  # Keras' names for the outputs
    nodes: list = field(default_factory=list)
    layers: dict = field(default_factory=dict)  # path name -> Layer
    # Calls of composite layers: not emitted themselves, their inner calls are in ``nodes``.
    composites: list = field(default_factory=list)
    source: Any = None  # the load.SavedModel it came from (owns the open weights file)
    # what the conversion leaves out, said once (a KerasHub task model's preprocessor)
    notes: list = field(default_factory=list)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def node(self, name: str) -> Node:
        """The call named ``name``: a node, or a composite call."""
        for node in self.nodes + self.composites:
            if node.name == name:
                return node
        raise KeyError(name)

    def calls(self) -> list:
        """``(node, depth)`` for every layer call as a reader sees it, in order: each
        composite call just before its inner calls, which are one level deeper."""
        listed, ordered = set(), []
        for node in self.nodes:
            chain = []
            parent = node.parent
            while parent is not None:
                chain.append(parent)
                parent = parent.parent
            for depth, composite in enumerate(reversed(chain)):
                if id(composite) not in listed:
                    listed.add(id(composite))
                    ordered.append((composite, depth))
            ordered.append((node, len(chain)))
        return ordered

    def consumers(self, tensor: Tensor) -> list:
        return [n for n in self.nodes if any(t is tensor for _, t in n.input_tensors())]


def format_shape(shape: Shape) -> str:
    if shape is None:
        return "?"
    dims = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({dims}{',' if len(shape) == 1 else ''})"
