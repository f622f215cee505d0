"""The supported-layer table shown by ``kerasonnx layers`` and kept in the README."""
from __future__ import annotations

from .layers import known_kinds
from .layers.operations import KERAS_OPS

FAMILY_TITLES = {
    "attention": "Attention", "core": "Core", "merge": "Merging",
    "normalization": "Normalization", "reshaping": "Reshaping", "pooling": "Pooling",
    "convolution": "Convolution", "recurrent": "Recurrent",
    "third_party": "keras-multi-head", "operations": "Tensor operations",
}


def layer_rows() -> list:
    """``(family title, [class names])`` in a stable order."""
    families = {}
    for kind in known_kinds():
        if kind.family == "operations":
            continue
        names = families.setdefault(kind.family, [])
        label = kind.class_name
        if kind.family == "third_party":
            label = f"{kind.class_name} (keras_multi_head)"
        if label not in names:
            names.append(label)
    rows = [(FAMILY_TITLES[f], names) for f, names in families.items()]
    rows.append((FAMILY_TITLES["operations"],
                 ["TFOpLambda (Keras 2)"] + [f"ops.{name}" for name in KERAS_OPS]))
    return rows


def markdown_table() -> str:
    lines = ["| Family | Keras classes read by `inspect` |", "|---|---|"]
    lines += [f"| {family} | {', '.join(f'`{n}`' for n in names)} |"
              for family, names in layer_rows()]
    return "\n".join(lines)
