"""Saved file -> checked intermediate graph: ``load`` glues the loader, the config
validation and the parser, and checks every weight a known layer needs against the stored
weights."""
from __future__ import annotations

import os

from .errors import WeightError, describe_exception, reported
from .ir import Graph, Node
from .layers.keras_transformer import name_package_gelu
from .load import load as load_file
from .parse import parse
from .validate import validate_config


def load(path, weights=None) -> Graph:
    """Read a saved Keras model (``.keras``, ``.h5``, or JSON + ``weights``) into the
    intermediate graph. Close it (or use ``with``) to release the weights file."""
    with reported(_name(path)):
        saved = load_file(path, weights)
    try:
        with reported(saved.source):
            validate_config(saved.config, saved.source)
            graph = parse(saved)
            graph.source = saved
            name_package_gelu(graph)
            check_weights(graph)
    except BaseException:
        saved.close()
        raise
    return graph


def _name(path) -> str:
    try:
        return os.fspath(path)
    except TypeError:
        return repr(path)


def check_weights(graph: Graph) -> None:
    """Every weight a known layer needs exists and has the shape its config implies."""
    problems = []
    for node in _first_calls(graph):
        layer = node.layer
        if any(t.shape is None for t in node.data_inputs()):
            continue  # behind a layer kerasonnx does not know: the converter names that one
        try:
            specs = layer.kind.weights(node)
        except Exception as exc:  # a config the parser could follow but not size
            problems.append(f"layer {layer.name!r} ({layer.class_name}): its config does not "
                            f"give the shapes of its weights ({describe_exception(exc)})")
            continue
        for spec in specs:
            key = _stored_name(layer, spec)
            if key not in layer.weights:
                problems.append(f"layer {layer.name!r} ({layer.class_name}) has no weight "
                                f"{spec.name!r}")
                continue
            problem = layer.weights.problem(key)
            if problem is not None:
                problems.append(f"layer {layer.name!r} ({layer.class_name}) weight "
                                f"{spec.name!r} {problem}")
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


def named_weights(node: Node) -> dict:
    """The weights of the node's layer as NumPy arrays, by their legacy names
    (``kernel``, ``query/kernel``), whatever layout the file uses."""
    layer = node.layer
    if layer.weights is None:
        raise WeightError(f"layer {layer.name!r} needs weights but none were given; pass the "
                          f"weights file with --weights")
    return {spec.name: layer.weights.get(_stored_name(layer, spec))
            for spec in layer.kind.weights(node)}


def _first_calls(graph: Graph):
    """The first call of every layer that has weights we know how to check."""
    seen = set()
    for node in graph.nodes:
        layer = node.layer
        if (layer.weights is None or layer.kind is None or layer.kind.weights is None
                or id(layer) in seen):
            continue
        seen.add(id(layer))
        yield node


def _stored_name(layer, spec) -> str:
    return spec.saving_path if layer.weights.layout == "saving_lib" else spec.name


def _shapes_agree(stored: tuple, expected: tuple) -> bool:
    return len(stored) == len(expected) and all(
        e is None or s == e for s, e in zip(stored, expected))
