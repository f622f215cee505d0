"""Keras activation functions as ONNX ops, shared by every emitter that applies one
(Dense, Conv1D, Activation, ...): ``apply_activation(b, x, activation, base, dialect)``."""
from __future__ import annotations

from ..errors import ConversionError
from .builder import Builder

# Keras name -> ONNX op applied as it is
PLAIN = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def activation_name(activation) -> str:
    """The Keras name of an activation as configs store it: ``"relu"``, or a serialized
    function ``{"class_name": "function", "config": "relu"}``."""
    if activation is None:
        return "linear"
    if isinstance(activation, dict):
        activation = activation.get("config", activation.get("class_name"))
        if isinstance(activation, dict):
            activation = activation.get("name")
    return str(activation)


def apply_activation(b: Builder, x: str, activation, base: str, dialect: str) -> str:
    """x after the Keras activation ``activation`` (as stored in a layer config)."""
    name = activation_name(activation)
    if name == "linear":
        return x
    if name in PLAIN:
        return b.op(PLAIN[name], [x], f"{base}/{name}")
    raise ConversionError(f"layer {base!r}: activation {name!r} cannot be converted yet")
