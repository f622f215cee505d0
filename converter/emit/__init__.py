"""Lowering the intermediate graph to ONNX; importing this package registers every emitter,
one module per family (the same families as ``converter/layers``)."""
from . import (attention, convolution, core, merge, normalization, operations, pooling,
               recurrent, reshaping, keras_hub, keras_multi_head)
from .builder import Builder
from .registry import emitted_kinds, emitter_for

__all__ = ["Builder", "emitter_for", "emitted_kinds", "attention", "convolution", "core",
           "merge", "normalization", "operations", "pooling", "recurrent", "reshaping",
           "keras_hub", "keras_multi_head"]
