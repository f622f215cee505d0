"""Lowering the intermediate graph to ONNX; importing this package registers every emitter."""
from . import attention, core
from .builder import Builder
from .registry import emitted_kinds, emitter_for

__all__ = ["Builder", "emitter_for", "emitted_kinds", "attention", "core"]
