"""Knowledge of Keras classes, one module per family; importing this package registers
every class."""
from . import (attention, convolution, core, keras_bert, keras_hub, keras_multi_head,
               keras_self_attention, keras_transformer, merge, normalization, operations,
               pooling, preprocessing, recurrent, reshaping)
from .registry import (NEW_MASK, LayerKind, WeightSpec, contains_tensor, known_kinds,
                       kind_for, split_tensors)

__all__ = ["NEW_MASK", "LayerKind", "WeightSpec", "contains_tensor", "kind_for", "known_kinds",
           "split_tensors", "attention", "convolution", "core", "merge", "normalization", "operations", "pooling", "preprocessing", "recurrent",
           "reshaping", "keras_bert", "keras_hub", "keras_multi_head", "keras_self_attention",
           "keras_transformer"]
