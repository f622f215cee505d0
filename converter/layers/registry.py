"""What kerasonnx knows about each Keras class, registered by decorator.

A ``LayerKind`` tells the parser how a call of the class binds its arguments to roles, which
masks flow into it, what it outputs (shapes, dtypes, masks) and which weights it must have.
One function per class, in the module of its family (``core``, ``attention``, ...).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..ir import Layer, Node, Tensor

# An output type: (shape, dtype)
OutputType = tuple


@dataclass(frozen=True)
class WeightSpec:
    """A weight a layer must have: its legacy name (``query/kernel``), its saving_lib path
    (``query_dense/vars/0``) and the shape its config implies."""

    name: str
    saving_path: str
    shape: tuple


@dataclass
class LayerKind:
    class_name: str
    family: str  # the module that describes the class: "attention", "core", ...
    output_types: Callable[[Node], list]
    # Parameter names of ``call`` in order, to name positional arguments (Keras 3 names).
    signature: tuple = ("inputs",)
    # data role -> mask role: the masks Keras hands the call implicitly (only for layers
    # whose ``call`` uses a mask; the others just pass it on through ``output_mask``).
    mask_roles: dict = field(default_factory=dict)
    # How the output mask arises: see ``propagate_mask`` and friends below.
    output_mask: Callable[[Node], object] = None
    # Turn bound call arguments into (roles, arguments); None: tensors become roles as named.
    bind_roles: Optional[Callable[[dict], tuple]] = None
    weights: Optional[Callable[[Node], list]] = None
    # For classes that share a name (Keras' and keras-multi-head's MultiHeadAttention).
    matches: Optional[Callable[[str, dict], bool]] = None
    # Roles whose tensors lose their mask once the call is made (Keras 3's
    # MultiHeadAttention deletes its inputs' masks): later calls see them unmasked.
    clears_masks_of: Callable[[Node], tuple] = lambda node: ()
    # The Python class's name when Keras registers the class under another one
    # (GroupedQueryAttention is saved as "GroupQueryAttention"); weight paths use it.
    python_name: Optional[str] = None
    # A composite layer: ``expand(node, expansion)`` describes its call as inner calls of
    # known layers (see converter/composite.py) and returns the call's outputs.
    expand: Optional[Callable] = None
    # The longest sequence a call accepts (a learned position table's rows), or None.
    max_length: Optional[Callable[[Node], Optional[int]]] = None
    # kerasonnx's own inner layer of composite expansions: no file holds it, not listed.
    internal: bool = False

    def __post_init__(self):
        if self.output_mask is None:
            self.output_mask = propagate_mask



_KINDS: dict = {}


def layer_kind(*class_names: str, **options):
    """Register the decorated ``output_types(node)`` function for ``class_names``."""

    family = sys._getframe(1).f_globals["__name__"].rsplit(".", 1)[-1]  # the calling module

    def register(output_types):
        for class_name in class_names:
            kind = LayerKind(class_name, family, output_types, **options)
            kinds = _KINDS.setdefault(class_name, [])
            # Kinds with a ``matches`` test go first so they can claim their layers.
            kinds.insert(0 if kind.matches else len(kinds), kind)
        return output_types

    return register


def kind_for(class_name: str, module: Optional[str], config: dict) -> Optional[LayerKind]:
    if ">" in class_name:  # Keras 3's legacy .h5 writes a registered name, no module
        module = module or class_name
        class_name = class_name.split(">", 1)[1]
    for kind in _KINDS.get(class_name, []):
        if kind.matches is None or kind.matches(module or "", config):
            return kind
    return None


def from_package(package: str, config_test: Callable[[dict], bool]) -> Callable:
    """The ``matches`` test of a class that a third-party package shares its name with a
    Keras class (``LayerNormalization``, ``PositionEmbedding``, ``MultiHeadAttention``): by
    the module the file records (``.keras`` files: ``keras_pos_embd.pos_embd`` vs
    ``keras.layers``), else by ``config_test(config)`` on the config keys only that class
    writes (a legacy ``.h5`` or a JSON config records no module)."""

    def matches(module: str, config: dict) -> bool:
        if module:
            return module.split(".")[0] == package
        return config_test(config)

    return matches


def known_kinds() -> list:
    """Every registered kind, by family then class name."""
    kinds = [kind for group in _KINDS.values() for kind in group]
    return sorted(kinds, key=lambda k: (k.family, k.class_name))


# ----------------------------------------------------------------- output-mask rules
# Each returns the output mask of output 0: a Tensor, None, or NEW_MASK when the node
# computes a mask of its own (the parser then adds a mask output to the node).

NEW_MASK = "new"


def propagate_mask(node: Node):
    """Layers with ``supports_masking``: the mask of the first argument passes through."""
    return first_mask(node)


def no_mask(node: Node):
    """Layers without ``supports_masking``: Keras drops the mask."""
    return None


def keras3_propagates_mask(node: Node):
    """Layers that support masking in Keras 3 but not in tf_keras (which drops the mask)."""
    return first_mask(node) if node.layer.dialect == "keras3" else None


def merge_masks(node: Node):
    """Merge layers. Keras 2: the AND of the masks present (one passes as it is).
    Keras 3: the OR of the masks, and no mask when any input has none."""
    masks = [t.mask for t in node.data_inputs()]
    if node.layer.dialect == "keras3" and any(m is None for m in masks):
        return None
    distinct = []
    for mask in masks:
        if mask is not None and all(mask is not m for m in distinct):
            distinct.append(mask)
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else NEW_MASK


def first_mask(node: Node) -> Optional[Tensor]:
    data = node.data_inputs()
    return data[0].mask if data else None


# ----------------------------------------------------------------- shape helpers


def compute_dtype(node: Node) -> str:
    """The dtype a layer computes in: its dtype policy's compute dtype."""
    policy = node.config.get("dtype")
    if isinstance(policy, dict):  # Keras 3 DTypePolicy
        policy = policy.get("config", {}).get("name")
    if not isinstance(policy, str):
        return "float32"
    if policy.startswith("mixed_"):
        return policy.removeprefix("mixed_")
    return policy


def first_input(node: Node) -> Tensor:
    return node.data_inputs()[0]


def same_as_input(node: Node) -> list:
    """Output has the first input's shape, in the layer's compute dtype."""
    return [(first_input(node).shape, compute_dtype(node))]


def with_last_dim(shape, last) -> Optional[tuple]:
    return None if shape is None else tuple(shape[:-1]) + (last,)


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def contains_tensor(value) -> bool:
    if isinstance(value, Tensor):
        return True
    return isinstance(value, (list, tuple)) and any(contains_tensor(v) for v in value)


def split_tensors(arguments: dict) -> tuple:
    """Split bound call arguments into (roles: the tensor-valued ones, plain arguments)."""
    roles, rest = {}, {}
    for name, value in arguments.items():
        (roles if contains_tensor(value) else rest)[name] = value
    return roles, rest


def broadcast_shapes(shapes: list) -> Optional[tuple]:
    """NumPy broadcasting of shapes whose unknown dims are None."""
    if any(s is None for s in shapes):
        return None
    rank = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (rank - len(s)) + tuple(s) for s in shapes]):
        known = {d for d in dims if d not in (None, 1)}
        if len(known) == 1:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1 if not known else max(known))
    return tuple(out)


def wrapped_output_types(node: Node, layer_config: dict, input_shape) -> Optional[list]:
    """Output types of the layer a wrapper holds (``{"class_name", "config"}``) when called
    on one tensor of ``input_shape``; None when the class is unknown."""
    config = layer_config.get("config", {})
    kind = kind_for(layer_config["class_name"], layer_config.get("module"), config)
    if kind is None:
        return None
    inner = Layer(f"{node.name}/{config.get('name', 'inner')}", layer_config["class_name"],
                  layer_config.get("module"), config, kind=kind)
    probe = Tensor(f"{inner.name}/input", input_shape, "float32")
    return kind.output_types(Node(inner.name, inner, 0, inputs={kind.signature[0]: probe}))
