"""Refuse model configs Keras could not have written, before anything reads them.

One place for the checks of the config's JSON: every model has layers, every layer entry is
an object with a class name, a name (unique in its model) and a config object; input shapes
are lists of sizes; the config keys kerasonnx reads have the JSON type and range Keras
writes (``units`` a positive integer, ``key_dim`` not null, ``rate`` a number in [0, 1],
...), checked by key name for every class, and required per class where Keras requires
them. Every problem names the layer and the key; all are reported at once.

Only what the config says is checked here; whether tensors, nodes and weights fit together
is the parser's and the weight check's part (``parse.py``, ``model.check_weights``).
"""
from __future__ import annotations

from numbers import Real
from typing import Callable, Optional

from .errors import ModelConfigError
from .layers import kind_for

MODEL_CLASSES = ("Functional", "Model", "Sequential")
INPUT_LAYER = "InputLayer"
MAX_DIM = 2**31 - 1  # no Keras tensor or weight has a larger dimension
MAX_PROBLEMS = 5  # listed in the message; the count says how many more
MAX_LAYERS = 50_000  # nested models included; large Keras models have a few thousand


# ------------------------------------------------------------------ value rules
# Each rule returns None when the value is fine, else what it should be.


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive(value) -> Optional[str]:
    if _is_int(value) and 1 <= value <= MAX_DIM:
        return None
    return f"a positive integer up to {MAX_DIM}"


def optional_positive(value) -> Optional[str]:
    return None if value is None else positive(value)


def positive_or_list(value) -> Optional[str]:
    """``kernel_size=3`` or ``(3, 3)``."""
    if isinstance(value, list) and value and all(positive(v) is None for v in value):
        return None
    return None if positive(value) is None else "a positive integer or a list of them"


def optional_positive_or_list(value) -> Optional[str]:
    return None if value is None else positive_or_list(value)


def integer(value) -> Optional[str]:
    return None if _is_int(value) and abs(value) <= MAX_DIM else "an integer"


def integer_or_list(value) -> Optional[str]:
    if isinstance(value, list) and all(integer(v) is None for v in value):
        return None
    return None if integer(value) is None else "an integer or a list of integers"


def optional_integer_or_list(value) -> Optional[str]:
    return None if value is None else integer_or_list(value)


def sizes(value) -> Optional[str]:
    """``output_shape`` of MultiHeadAttention / EinsumDense: sizes, None where unknown."""
    if value is None or positive(value) is None:
        return None
    if isinstance(value, list) and all(v is None or positive(v) is None for v in value):
        return None
    return "a positive integer or a list of positive integers and nulls"


def paddings(value) -> Optional[str]:
    """``cropping`` / ``padding`` of the cropping and padding layers: sizes of 0 and up,
    alone, in a list, or in a list of (before, after) pairs (the 2-D layers)."""
    def amount(v):
        return _is_int(v) and 0 <= v <= MAX_DIM

    def amounts(v):
        return amount(v) or (isinstance(v, list) and all(amounts(item) for item in v))

    if amount(value) or (isinstance(value, list) and all(amounts(v) for v in value)):
        return None
    return "an integer of 0 or more, or a list of them"


def target_shape(value) -> Optional[str]:
    if (isinstance(value, list) and all(_is_int(v) and (v == -1 or 1 <= v <= MAX_DIM)
                                        for v in value) and value.count(-1) <= 1):
        return None
    return "a list of positive integers (one may be -1)"


def number(value) -> Optional[str]:
    return None if isinstance(value, Real) and not isinstance(value, bool) else "a number"


def optional_number(value) -> Optional[str]:
    return None if value is None else number(value)


def fraction(value) -> Optional[str]:
    if number(value) is None and 0 <= value <= 1:
        return None
    return "a number from 0 to 1"


def flag(value) -> Optional[str]:
    return None if isinstance(value, bool) else "true or false"


def text(value) -> Optional[str]:
    return None if isinstance(value, str) else "a string"


def optional_text(value) -> Optional[str]:
    return None if value is None else text(value)


def activation(value) -> Optional[str]:
    # A name, a serialized function object, or null (linear).
    return None if value is None or isinstance(value, (str, dict)) else "a name or null"


def data_format(value) -> Optional[str]:
    return None if value in (None, "channels_last", "channels_first") else (
        '"channels_last" or "channels_first"')


def dtype(value) -> Optional[str]:
    """A dtype name (Keras 2, and Keras 3 for plain dtypes) or a dtype policy object
    (``DTypePolicy``, ``QuantizedDTypePolicy``, tf_keras' ``Policy``, ...)."""
    if value is None or isinstance(value, str):
        return None
    if (isinstance(value, dict) and isinstance(value.get("class_name"), str)
            and isinstance(value.get("config"), dict)):
        return None
    return "a dtype name or a DTypePolicy object"


def layer_entry(value) -> Optional[str]:
    return None if isinstance(value, dict) else "a layer config object"


def layer_list(value) -> Optional[str]:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return None
    return "a non-empty list of layer config objects"


# Rules by key name, for every class whose config has the key.
KEY_RULES: dict = {
    "units": positive, "filters": positive, "num_heads": positive, "key_dim": positive,
    "head_num": positive, "input_dim": positive, "output_dim": positive, "n": positive,
    "value_dim": optional_positive, "hidden_dim": optional_positive,
    "kernel_size": positive_or_list, "strides": optional_positive_or_list,
    "pool_size": positive_or_list, "dilation_rate": positive_or_list, "groups": positive,
    "axis": optional_integer_or_list, "axes": integer_or_list, "dims": integer_or_list,
    "attention_axes": optional_integer_or_list, "shared_axes": optional_integer_or_list,
    "output_shape": sizes, "target_shape": target_shape, "cropping": paddings,
    "rate": fraction, "dropout": fraction, "recurrent_dropout": fraction,
    "epsilon": number, "momentum": number, "mask_value": optional_number,
    "negative_slope": optional_number, "max_value": optional_number, "threshold": number,
    "theta": number, "alpha": optional_number,
    "use_bias": flag, "use_scale": flag, "return_sequences": flag, "return_state": flag,
    "go_backwards": flag, "mask_zero": flag, "center": flag,
    "reset_after": flag, "causal": flag, "history_only": flag, "keepdims": flag,
    "unroll": flag, "stateful": flag, "normalize": flag, "rms_scaling": flag,
    "zero_output_for_mask": flag,
    "equation": text, "activation": activation, "recurrent_activation": activation,
    "merge_mode": optional_text, "score_mode": text, "data_format": data_format,
    "dtype": dtype, "name": text, "trainable": flag, "sparse": flag, "ragged": flag,
    "optional": flag,
    "bias_axes": optional_text, "layer": layer_entry, "backward_layer": layer_entry,
    "layers": layer_list,
}

# Keys whose meaning differs by class: (class name, key) -> rule, before KEY_RULES.
CLASS_KEY_RULES: dict = {
    ("ZeroPadding1D", "padding"): paddings, ("ZeroPadding2D", "padding"): paddings,
    # scale: a flag of the normalizations, a number (or list) of Rescaling and Random*
    ("LayerNormalization", "scale"): flag, ("BatchNormalization", "scale"): flag,
    ("GroupNormalization", "scale"): flag,
    ("UpSampling1D", "size"): positive,
    ("Conv1D", "padding"): text, ("Conv2D", "padding"): text,
    ("MaxPooling1D", "padding"): text, ("AveragePooling1D", "padding"): text,
    ("MaxPooling2D", "padding"): text, ("AveragePooling2D", "padding"): text,
    ("Lambda", "output_shape"): lambda value: None,  # a shape, a function, or null
    # keras-pos-embd: output_dim is unused (null) in the modes that add to the input
    ("TrigPosEmbedding", "output_dim"): optional_positive,
    ("PositionEmbedding", "output_dim"): optional_positive,
}


def _mha_required(config: dict) -> tuple:
    # keras-multi-head's MultiHeadAttention shares the class name: it has head_num.
    return ("head_num",) if "head_num" in config else ("num_heads", "key_dim")


# Keys Keras always writes for a class (a missing or null one is refused).
REQUIRED: dict = {
    "Dense": ("units",), "Embedding": ("input_dim", "output_dim"),
    "LSTM": ("units",), "GRU": ("units",), "SimpleRNN": ("units",),
    "Conv1D": ("filters", "kernel_size"), "Conv2D": ("filters", "kernel_size"),
    "EinsumDense": ("equation",), "Reshape": ("target_shape",), "Permute": ("dims",),
    "RepeatVector": ("n",), "Bidirectional": ("layer",), "TimeDistributed": ("layer",),
    "MultiHead": ("layers",),
    "MultiHeadAttention": _mha_required,
}


# ------------------------------------------------------------------ the walk


def validate_config(config: dict, source: str) -> None:
    """Raise ``ModelConfigError`` listing what in ``config`` Keras could not have written."""
    problems: list = []
    _model(config, "the model", problems)
    count = _count_layers(config)
    if count > MAX_LAYERS:
        problems.insert(0, f"the model has {count:,} layers, more than kerasonnx reads "
                           f"({MAX_LAYERS:,})")
    if problems:
        more = (f" (and {len(problems) - MAX_PROBLEMS} more)"
                if len(problems) > MAX_PROBLEMS else "")
        raise ModelConfigError(f"{source}: " + "; ".join(problems[:MAX_PROBLEMS]) + more
                               + "; Keras does not write such a config, save the model "
                                 "again from Keras")


def _count_layers(config: dict) -> int:
    count, models = 0, [config]
    while models:
        body = models.pop().get("config")
        layers = body.get("layers") if isinstance(body, dict) else None
        if isinstance(layers, list):
            count += len(layers)
            models += [l for l in layers if isinstance(l, dict)
                       and l.get("class_name") in MODEL_CLASSES and isinstance(l.get("config"), dict)]
    return count


def _model(config: dict, where: str, problems: list) -> None:
    if config.get("class_name") not in MODEL_CLASSES or not isinstance(config.get("config"),
                                                                       dict):
        return  # not a model the parser reads: it says so itself
    body = config["config"]
    layers = body.get("layers")
    if not isinstance(layers, list):
        problems.append(f"{where} has no 'layers' list")
        return
    names = set()
    real_layers = 0
    for i, entry in enumerate(layers):
        name = _layer(entry, f"{where}, layer #{i}", problems)
        if name is None:
            continue
        if name in names:
            problems.append(f"{where} has two layers named {name!r}; layer names are unique "
                            f"in a Keras model")
        names.add(name)
        real_layers += entry.get("class_name") != INPUT_LAYER
    if not real_layers:
        problems.append(f"{where} has no layers (an empty model)")
    if config["class_name"] != "Sequential":
        for key in ("input_layers", "output_layers"):
            if not body.get(key):
                problems.append(f"{where} has no {key!r}")
            elif not isinstance(body[key], (list, dict)):
                problems.append(f"{where}: key {key!r} is {_show(body[key])}, Keras writes "
                                f"a list of [layer, node, tensor]")


def _layer(entry, where: str, problems: list) -> Optional[str]:
    """Check one layer entry; return its name (None when it has none)."""
    if not isinstance(entry, dict):
        problems.append(f"{where} is {_json_type(entry)}, not a layer config object")
        return None
    config = entry.get("config")
    name = entry.get("name")
    if name is None and isinstance(config, dict):
        name = config.get("name")
    class_name = entry.get("class_name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where} has no name (key 'name' is {_json_type(name)})")
        name = None
    else:
        where = f"layer {name!r}"
    if not isinstance(class_name, str) or not class_name:
        problems.append(f"{where}: key 'class_name' is {_json_type(class_name)}, not a class "
                        f"name")
        return name
    where = f"{where} ({class_name})"
    if not isinstance(config, dict):
        problems.append(f"{where}: key 'config' is {_json_type(config)}, not an object")
        return name
    inbound = entry.get("inbound_nodes")
    if inbound is not None and not isinstance(inbound, list):
        problems.append(f"{where}: key 'inbound_nodes' is {_json_type(inbound)}, not a list")
    for node in inbound if isinstance(inbound, list) else ():
        _keras3_node(node, where, problems)
    if class_name in MODEL_CLASSES:
        _model(entry, f"nested model {name!r}", problems)
    elif class_name == INPUT_LAYER:
        _input_shape(config, where, problems)
    else:
        _layer_config(class_name, entry.get("module"), config, where, problems)
    return name


def _keras3_node(node, where: str, problems: list) -> None:
    """A Keras 3 inbound node: ``{"args": [...], "kwargs": {...}}`` whose tensors are
    ``__keras_tensor__`` objects with a ``keras_history``."""
    if not isinstance(node, dict):
        return  # Keras 2 lists: the parser checks each reference
    if not isinstance(node.get("args", []), list) or not isinstance(node.get("kwargs", {}),
                                                                      dict):
        problems.append(f"{where}: an inbound node's 'args' is not a list or its 'kwargs' "
                        f"not an object")
        return
    stack = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                tensor = value.get("config")
                if not isinstance(tensor, dict) or not isinstance(
                        tensor.get("keras_history"), list):
                    problems.append(f"{where}: an inbound tensor has no 'keras_history' list")
                    return
                shape = tensor.get("shape")
                if shape is not None and (not isinstance(shape, list) or not all(
                        d is None or (_is_int(d) and 0 <= d <= MAX_DIM) for d in shape)):
                    problems.append(f"{where}: an inbound tensor has shape {_show(shape)}, "
                                    f"Keras writes a list of sizes (null where unknown)")
                    return
                continue
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _layer_config(class_name: str, module, config: dict, where: str, problems: list) -> None:
    """The keys of a class kerasonnx knows (an unknown class is reported by the converter;
    operations keep their own argument names)."""
    if (kind_for(class_name, module if isinstance(module, str) else None, config) is None
            or (isinstance(module, str) and module.startswith("keras.src.ops"))
            or class_name == "TFOpLambda"):
        return
    required = REQUIRED.get(class_name, ())
    if callable(required):
        required = required(config)
    for key in required:
        if config.get(key) is None:
            problems.append(f"{where}: key {key!r} is {_json_type(config.get(key))}; Keras "
                            f"always writes it")
    for key, value in config.items():
        rule: Optional[Callable] = CLASS_KEY_RULES.get((class_name, key), KEY_RULES.get(key))
        if rule is None or (value is None and key in required):
            continue  # a null required key is reported above
        wanted = rule(value)
        if wanted is not None:
            problems.append(f"{where}: key {key!r} is {_show(value)}, Keras writes {wanted}")
    for key in ("layer", "backward_layer"):
        if isinstance(config.get(key), dict):
            _layer(config[key], f"{where}, its {key!r}", problems)
    if isinstance(config.get("layers"), list):
        for i, inner in enumerate(config["layers"]):
            if isinstance(inner, dict):
                _layer(inner, f"{where}, its layer #{i}", problems)
    if "batch_input_shape" in config or "batch_shape" in config:
        _input_shape(config, where, problems, input_layer=False)


def _input_shape(config: dict, where: str, problems: list, input_layer: bool = True) -> None:
    """``batch_shape`` (Keras 3), ``batch_input_shape`` (Keras 2) or ``input_shape``:
    a list of sizes, null where unknown."""
    for key in ("batch_shape", "batch_input_shape", "input_shape"):
        shape = config.get(key)
        if shape is None:
            continue
        if not isinstance(shape, list) or not all(
                d is None or (_is_int(d) and 0 <= d <= MAX_DIM) for d in shape):
            problems.append(f"{where}: key {key!r} is {_show(shape)}, Keras writes a list of "
                            f"sizes from 0 to {MAX_DIM} (null where unknown)")
    for key in ("dtype", "name", "sparse", "ragged", "optional") if input_layer else ():
        wanted = KEY_RULES[key](config[key]) if key in config else None
        if wanted is not None:
            problems.append(f"{where}: key {key!r} is {_show(config[key])}, Keras writes "
                            f"{wanted}")


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _show(value) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{_json_type(value)} ({shown[:50]}...)"
