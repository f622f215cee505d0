"""Knowledge of Keras classes, one module per family; importing this package registers
every class."""
from . import (attention, convolution, core, merge, normalization, operations, pooling,
               recurrent, reshaping, keras_hub, keras_multi_head)
from .registry import (NEW_MASK, LayerKind, WeightSpec, contains_tensor, known_kinds,
                       kind_for, split_tensors)

__all__ = ["NEW_MASK", "LayerKind", "WeightSpec", "contains_tensor", "kind_for", "known_kinds",
           "split_tensors", "attention", "convolution", "core", "merge", "normalization",
           "operations", "pooling", "recurrent", "reshaping", "keras_hub", "keras_multi_head"]
