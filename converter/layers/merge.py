"""Merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot."""
from __future__ import annotations

from .registry import (NEW_MASK, broadcast_shapes, compute_dtype, layer_kind, merge_masks,
                       normalize_axis)


@layer_kind("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
            output_mask=merge_masks)
def elementwise_merge(node):
    """Element-wise sum / difference / product / mean / max / min. Keras broadcasts the
    non-batch dims aligned at the end (a lower-rank input gets new axes after the batch)."""
    shapes = [t.shape for t in node.data_inputs()]
    if any(s is None for s in shapes):
        return [(None, compute_dtype(node))]
    batches = {s[0] for s in shapes} - {None}
    batch = batches.pop() if len(batches) == 1 else None
    return [((batch,) + broadcast_shapes([s[1:] for s in shapes]), compute_dtype(node))]


def _concatenate_mask(node):
    return NEW_MASK if any(t.mask is not None for t in node.data_inputs()) else None


@layer_kind("Concatenate", output_mask=_concatenate_mask)
def concatenate(node):
    """Join the inputs along ``axis``."""
    shapes = [t.shape for t in node.data_inputs()]
    if any(s is None for s in shapes):
        return [(None, compute_dtype(node))]
    axis = normalize_axis(node.config.get("axis", -1), len(shapes[0]))
    sizes = [s[axis] for s in shapes]
    joined = None if None in sizes else sum(sizes)
    return [(shapes[0][:axis] + (joined,) + shapes[0][axis + 1:], compute_dtype(node))]


def dot_axes(node) -> list:
    """The two contracted axes of Dot, non-negative (Keras' own normalization)."""
    first, second = (len(t.shape) for t in node.data_inputs())
    axes = node.config["axes"]
    axes = [axes, axes] if isinstance(axes, int) else list(axes)
    return [normalize_axis(axes[0], first), normalize_axis(axes[1], second)]


@layer_kind("Dot", output_mask=lambda node: None)
def dot(node):
    """Batched dot product over ``axes`` (cosine similarity when ``normalize``)."""
    first, second = (t.shape for t in node.data_inputs())
    axes = dot_axes(node)
    out = [d for i, d in enumerate(first) if i != axes[0]]
    out += [d for i, d in enumerate(second) if i not in (0, axes[1])]
    return [(tuple(out) if len(out) > 1 else tuple(out) + (1,), compute_dtype(node))]
