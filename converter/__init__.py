"""kerasonnx: convert saved Keras attention models to ONNX without TensorFlow.

Public API: ``convert`` (a saved model to ONNX), ``verify`` (ONNX against the real Keras,
which it runs in a process of its own), ``load`` (a saved model into the
intermediate graph), ``inspect`` (a report of every layer call), and the ``ConversionError``
family.
"""
from .errors import (ConversionError, ModelConfigError, ModelFileError, NotCausalDecoderError,
                     UnsupportedLayerError, WeightError)
from .convert import ConversionResult, convert
from .model import load
from .report import inspect
from .verify import VerifyReport, verify

__all__ = ["convert", "ConversionResult", "verify", "VerifyReport", "load", "inspect", "ConversionError", "ModelConfigError", "ModelFileError",
           "UnsupportedLayerError", "WeightError", "NotCausalDecoderError"]
