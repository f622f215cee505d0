"""kerasonnx: convert saved Keras attention models to ONNX without TensorFlow.

Public API: ``convert`` (a saved model to ONNX), ``load`` (a saved model into the
intermediate graph), ``inspect`` (a report of every layer call), and the ``ConversionError``
family.
"""
from .errors import (ConversionError, ModelConfigError, ModelFileError, UnsupportedLayerError,
                     WeightError)
from .convert import ConversionResult, convert
from .model import load
from .report import inspect

__all__ = ["convert", "ConversionResult", "load", "inspect", "ConversionError", "ModelConfigError", "ModelFileError",
           "UnsupportedLayerError", "WeightError"]
