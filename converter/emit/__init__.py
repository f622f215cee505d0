"""Lowering the intermediate graph to ONNX; importing this package registers every emitter,
one module per family (the same families as ``converter/layers``)."""
from . import (attention, convolution, core, keras_bert, keras_self_attention,
               keras_transformer, merge, normalization, operations, pooling, preprocessing,
               recurrent, reshaping, third_party)
from .builder import Builder
from .registry import emitted_kinds, emitter_for

__all__ = ["Builder", "emitter_for", "emitted_kinds", "attention", "convolution", "core",
           "merge", "normalization", "operations", "pooling", "preprocessing", "recurrent",
           "reshaping", "third_party", "keras_bert", "keras_self_attention",
           "keras_transformer"]
