"""The one exception family users see.

Every failure a user can cause is a ``ConversionError`` whose message is one line that names
the file or layer concerned and says what to do. The CLI prints it without a traceback.
"""


class ConversionError(Exception):
    """Base of every error kerasonnx raises on purpose."""


class ModelFileError(ConversionError):
    """The file cannot be read as a saved Keras model (missing, truncated, wrong format)."""


class ModelConfigError(ConversionError):
    """The model JSON is not a Keras model we can follow (bad reference, cycle, bad node)."""


class WeightError(ConversionError):
    """A weight the model needs is missing or has the wrong shape."""


class UnsupportedLayerError(ConversionError):
    """One or more layers have no emitter; the message lists all of them."""
