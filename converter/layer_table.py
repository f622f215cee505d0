"""The supported-layer table shown by ``kerasonnx layers`` and kept in the README."""
from __future__ import annotations

from .emit import emitted_kinds
from .layers import known_kinds

FAMILY_TITLES = {
    "attention": "Attention", "core": "Core", "merge": "Merging",
    "normalization": "Normalization", "reshaping": "Reshaping", "pooling": "Pooling",
    "convolution": "Convolution", "recurrent": "Recurrent", "preprocessing": "Preprocessing",
    "operations": "Tensor operations",
    # third-party libraries, one family per package (its import name is the module's name)
    "keras_multi_head": "keras-multi-head", "keras_hub": "KerasHub",
    "keras_self_attention": "keras-self-attention",
    "keras_transformer": "keras-transformer's layers",
    "keras_bert": "keras-bert",
}
LIBRARIES = ("keras_multi_head", "keras_hub", "keras_self_attention", "keras_bert")

# The package of each class in a family that gathers several (keras-transformer's parts).
PACKAGES = {"PositionEmbedding": "keras_pos_embd", "TrigPosEmbedding": "keras_pos_embd",
            "LayerNormalization": "keras_layer_normalization",
            "FeedForward": "keras_position_wise_feed_forward",
            "EmbeddingRet": "keras_embed_sim", "EmbeddingSim": "keras_embed_sim"}


def _label(kind) -> str:
    if kind.family in LIBRARIES:
        return f"{kind.class_name} ({kind.family})"
    if kind.family == "keras_transformer":
        return f"{kind.class_name} ({PACKAGES[kind.class_name]})"
    if kind.family == "operations":
        if kind.class_name in ("TFOpLambda", "SlicingOpLambda"):
            return f"{kind.class_name} (Keras 2)"
        return f"ops.{kind.class_name}"
    return kind.class_name


def layer_rows() -> list:
    """``(family title, [converted classes], [classes inspect reads but cannot convert])``."""
    converted = emitted_kinds()
    rows = {}
    for kind in known_kinds():
        if kind.internal:
            continue
        done, read_only = rows.setdefault(FAMILY_TITLES[kind.family], ([], []))
        # a composite layer converts through the layers it expands into
        emitted = (kind.family, kind.class_name) in converted or kind.expand is not None
        (done if emitted else read_only).append(_label(kind))
    return [(family, done, read_only) for family, (done, read_only) in rows.items()]


def markdown_table() -> str:
    def cell(names):
        return ", ".join(f"`{n}`" for n in names) or "-"

    lines = ["| Family | Converted to ONNX | Read by `inspect`, not converted |", "|---|---|---|"]
    lines += [f"| {family} | {cell(done)} | {cell(read_only)} |"
              for family, done, read_only in layer_rows()]
    return "\n".join(lines)
