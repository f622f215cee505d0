"""Emitters: one function per Keras class, registered by decorator in the module of its
family (``emit/attention.py`` emits what ``layers/attention.py`` describes).

An emitter is ``emit(node, builder) -> [ONNX names]``: one name per ``node.outputs``, then
one per ``node.mask_outputs``.
"""
from __future__ import annotations

import sys

_EMITTERS = {}


def emits(*class_names: str):
    """Register the decorated function for ``class_names`` of the calling module's family."""
    family = sys._getframe(1).f_globals["__name__"].rsplit(".", 1)[-1]

    def register(function):
        for class_name in class_names:
            _EMITTERS[(family, class_name)] = function
        return function

    return register


def emitter_for(layer):
    """The emitter of an IR layer, or None."""
    if layer.kind is None:
        return None
    return _EMITTERS.get((layer.kind.family, layer.kind.class_name))


def emitted_kinds() -> set:
    """``(family, class name)`` of every class that can be converted."""
    return set(_EMITTERS)
