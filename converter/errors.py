"""The one exception family users see.

Every failure a user can cause is a ``ConversionError`` whose message is one line that names
the file or layer concerned and says what to do. The CLI prints it without a traceback.
Anything else that goes wrong inside kerasonnx is turned into a ``ConversionError`` too, by
``reported``, so the API raises nothing else.
"""
from __future__ import annotations

import functools
import os
from contextlib import contextmanager

MAX_MESSAGE = 2000  # characters: a message quoting a hostile config stays readable


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (runs of whitespace, newlines included, become one space), its
    middle cut when longer than ``limit``: the start names the file, the end what to do."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]} ... {text[len(text) - (limit - head - 5):]}"


class ConversionError(Exception):
    """Base of every error kerasonnx raises on purpose."""

    def __init__(self, message=""):
        super().__init__(one_line(message))


class ModelFileError(ConversionError):
    """The file cannot be read as a saved Keras model (missing, truncated, wrong format)."""


class ModelConfigError(ConversionError):
    """The model JSON is not a Keras model we can follow (bad reference, cycle, bad node)."""


class WeightError(ConversionError):
    """A weight the model needs is missing or has the wrong shape."""


class UnsupportedLayerError(ConversionError):
    """One or more layers have no emitter; the message lists all of them."""


class NotCausalDecoderError(ConversionError):
    """``with_past`` asked of a model that is not a causal decoder (or not provably one)."""


def describe_exception(exc: BaseException) -> str:
    """``TypeError: message`` on one line, for messages about unexpected failures."""
    text = one_line(str(exc), 300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def reported(source, where: str = ""):
    """Let ``ConversionError`` through; turn anything else raised inside into one.

    ``where`` (e.g. "layer 'mha' (MultiHeadAttention)") says what was being done."""
    try:
        yield
    except ConversionError:
        raise
    except RecursionError:
        raise ModelConfigError(f"{source}: {where + ': ' if where else ''}the model config "
                               f"is nested too deeply to follow; this is not a model Keras "
                               f"wrote") from None
    except MemoryError:
        raise ConversionError(f"{source}: {where + ': ' if where else ''}not enough memory "
                              f"to read this model") from None
    except Exception as exc:
        raise ConversionError(
            f"{source}: {where + ': ' if where else ''}kerasonnx failed unexpectedly "
            f"({describe_exception(exc)}); the file may be damaged, otherwise please "
            f"report this with the model (--debug shows where)") from exc


def reports_errors(function):
    """Decorate an API function whose first argument is the model path: it raises only
    the ``ConversionError`` family (see ``reported``)."""

    @functools.wraps(function)
    def run(path, *args, **kwargs):
        try:
            source = os.fspath(path)
        except TypeError:
            source = repr(path)
        with reported(source):
            return function(path, *args, **kwargs)

    return run
