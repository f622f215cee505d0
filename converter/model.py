"""Saved file -> checked intermediate graph: ``load`` glues the loader and the parser and
checks every weight a known layer needs against the stored weights."""
from __future__ import annotations

from .errors import WeightError
from .ir import Graph
from .load import SavingLibWeights, load as load_file
from .parse import parse


def load(path, weights=None) -> Graph:
    """Read a saved Keras model (``.keras``, ``.h5``, or JSON + ``weights``) into the
    intermediate graph. Close it (or use ``with``) to release the weights file."""
    saved = load_file(path, weights)
    try:
        graph = parse(saved)
        graph.source = saved
        check_weights(graph)
    except BaseException:
        saved.close()
        raise
    return graph


def check_weights(graph: Graph) -> None:
    """Every weight a known layer needs exists and has the shape its config implies."""
    problems = []
    checked = set()
    for node in graph.nodes:
        layer = node.layer
        if layer.weights is None or layer.kind is None or layer.kind.weights is None:
            continue
        if id(layer) in checked:
            continue
        checked.add(id(layer))
        saving_lib = isinstance(graph.source.weights, SavingLibWeights)
        for spec in layer.kind.weights(node):
            key = spec.saving_path if saving_lib else spec.name
            if key not in layer.weights:
                problems.append(f"layer {layer.name!r} ({layer.class_name}) has no weight "
                                f"{spec.name!r}")
                continue
            stored = layer.weights.shape(key)
            if not _shapes_agree(stored, spec.shape):
                problems.append(f"layer {layer.name!r} ({layer.class_name}) weight "
                                f"{spec.name!r} has shape {stored}, its config needs "
                                f"{tuple(spec.shape)}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise WeightError(f"{graph.source.weights.source}: " + "; ".join(problems[:3]) + more
                          + "; the weights do not match the model config, save both from "
                            "the same model")


def _shapes_agree(stored: tuple, expected: tuple) -> bool:
    return len(stored) == len(expected) and all(
        e is None or s == e for s, e in zip(stored, expected))
