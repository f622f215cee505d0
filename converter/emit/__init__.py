"""Lowering the intermediate graph to ONNX; importing this package registers every emitter,
one module per family (the same families as ``converter/layers``)."""
from . import (attention, convolution, core, keras_bert, keras_hub, keras_multi_head,
               keras_self_attention, keras_transformer, merge, normalization, operations,
               pooling, preprocessing, recurrent, reshaping)
from .builder import Builder
from .registry import emitted_kinds, emitter_for

__all__ = ["Builder", "emitter_for", "emitted_kinds", "attention", "convolution", "core",
           "merge", "normalization", "operations", "pooling", "preprocessing", "recurrent",
           "reshaping", "keras_bert", "keras_hub", "keras_multi_head", "keras_self_attention",
           "keras_transformer"]
