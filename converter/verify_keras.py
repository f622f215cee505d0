"""The Keras side of ``verify``: run a saved model in the real Keras that wrote it.

Runs as its own process (``python verify_keras.py REQUEST.json``), started by
``kerasonnx.verify``, so the caller's process never imports TensorFlow and Keras 2 models
(tf_keras, keras-multi-head and its family) load with ``TF_USE_LEGACY_KERAS=1`` whatever the
caller already imported; KerasHub is imported when the model uses its layers. Models load in
safe mode: a Lambda layer's code is never run.

The request names the model file (and weights), the input files to run, and the top-level
layers whose outputs are wanted too; every result is written to an ``.npz`` per input file:
``output/<i>`` for the model outputs, ``layer/<name>/<i>`` for layer outputs.
"""
from __future__ import annotations

import json
import os
import sys

# Keras' loading messages and TensorFlow's start-up chatter are not ours to print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _keras(dialect: str):
    if dialect == "keras2":
        import tf_keras
        return tf_keras
    import keras
    return keras


def _keras_multi_head() -> dict:
    import keras_multi_head
    return {"MultiHead": keras_multi_head.MultiHead,
            "MultiHeadAttention": keras_multi_head.MultiHeadAttention}


def _keras_self_attention() -> dict:
    import keras_self_attention as ksa
    return {cls.__name__: cls for cls in (ksa.SeqSelfAttention, ksa.SeqWeightedAttention,
                                          ksa.ScaledDotProductAttention)}


def _keras_transformer() -> dict:
    """keras-transformer's own list (its gelu, LayerNormalization, FeedForward, ...) and
    keras-pos-embd's PositionEmbedding, which it does not list."""
    import keras_pos_embd
    import keras_transformer
    return {**keras_transformer.get_custom_objects(),
            "PositionEmbedding": keras_pos_embd.PositionEmbedding}


def _keras_bert() -> dict:
    import keras_bert
    return keras_bert.get_custom_objects()


# Families of third-party packages (converter/layers/<family>.py) -> their Keras 2 custom
# objects, as the packages' users register them when loading.
PACKAGE_OBJECTS = {"keras_multi_head": _keras_multi_head,
                   "keras_self_attention": _keras_self_attention,
                   "keras_transformer": _keras_transformer, "keras_bert": _keras_bert}


def _custom_objects(request: dict) -> dict:
    if request["dialect"] != "keras2":
        return {}
    objects = {}
    for family in request.get("families", []):
        if family in PACKAGE_OBJECTS:
            try:
                objects.update(PACKAGE_OBJECTS[family]())
            except ImportError:
                pass
    return objects


def _import_keras_hub() -> None:
    """KerasHub registers its classes (``keras_hub>...`` and the older ``keras_nlp>...``
    names) when imported; without it Keras cannot rebuild its layers."""
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        sys.exit("kerasonnx verify: the model uses KerasHub layers (keras_hub / keras_nlp) "
                 "and keras-hub is not installed here: pip install keras-hub "
                 "(it needs tensorflow-text of the same minor version as tensorflow)")


def load_model(request: dict):
    k = _keras(request["dialect"])
    if request.get("keras_hub"):
        _import_keras_hub()
    path, weights = request["model"], request.get("weights")
    objects = _custom_objects(request)
    if request["format"] == "json":
        with open(path) as f:
            model = k.models.model_from_json(f.read(), custom_objects=objects)
        model.load_weights(weights)
        return model
    options = {"compile": False, "custom_objects": objects}
    if request["format"] == "keras" or request["dialect"] == "keras2":
        options["safe_mode"] = True
    model = k.models.load_model(path, **options)
    if weights:
        model.load_weights(weights)
    return model


def _structure(model, attribute: str):
    """``model.input`` / ``model.output``, or None for a model never called (a Sequential
    built without an Input has neither)."""
    try:
        return getattr(model, attribute)
    except (AttributeError, ValueError):
        return None


def model_outputs(model, output_names: list) -> list:
    """The model's outputs in kerasonnx's order: a dict of outputs (a KerasHub backbone's
    ``sequence_output``, ``pooled_output``) by the names kerasonnx gave them."""
    output = _structure(model, "output")
    if isinstance(output, dict):
        return [output[name] for name in output_names]
    return list(_as_list(model.outputs))


def layer_outputs(model, names: list, output_names: list = ()) -> tuple:
    """A model that also returns the outputs of the named top-level layers (those Keras
    can reach with ``layer.output``: called once, in this model's graph)."""
    if any(isinstance(_structure(model, side), dict) for side in ("input", "output")):
        probe = _functional_class(model)(model.input, model_outputs(model, output_names))
        return _with_layers(probe, model, names)
    return _with_layers(model, model, names)


def _with_layers(probe, model, names: list) -> tuple:
    reachable, tensors = [], []
    for name in names:
        try:
            output = model.get_layer(name).output
        except (AttributeError, ValueError, RuntimeError):
            continue
        outputs = list(output) if isinstance(output, (list, tuple)) else [output]
        reachable.append((name, len(outputs)))
        tensors.extend(outputs)
    if not tensors:
        return probe, []
    from_inputs = probe.input if isinstance(_structure(probe, "input"), dict) else (
        probe.inputs if len(probe.inputs) > 1 else probe.inputs[0])
    probe_class = _functional_class(model)
    probe = probe_class(from_inputs, list(_as_list(probe.outputs)) + tensors)
    return probe, reachable


def _functional_class(model):
    module = type(model).__module__
    if module.startswith("tf_keras"):
        import tf_keras
        return tf_keras.Model
    import keras
    return keras.Model


def _as_list(value):
    return value if isinstance(value, (list, tuple)) else [value]


def _savable(tensor):
    """As a NumPy array ``np.savez`` keeps: bfloat16 (which it cannot) as float32, exactly."""
    import numpy as np
    array = np.asarray(tensor)
    return array.astype(np.float32) if array.dtype.name == "bfloat16" else array


def main(request_path: str) -> None:
    import numpy as np

    with open(request_path) as f:
        request = json.load(f)
    model = load_model(request)
    output_names = request.get("output_names", [])
    probe, reachable = layer_outputs(model, request.get("layers", []), output_names)
    count = len(model_outputs(model, output_names))
    for inputs_path, results_path in request["runs"]:
        with np.load(inputs_path) as data:
            arrays = [data[f"input/{i}"] for i in range(len(data.files))]
        if isinstance(_structure(probe, "input"), dict):  # a KerasHub backbone's, by name
            feed = dict(zip(request["input_names"], arrays))
        else:
            feed = arrays if len(arrays) > 1 else arrays[0]
        results = _as_list(probe(feed, training=False))
        payload = {f"output/{i}": _savable(r) for i, r in enumerate(results[:count])}
        position = count
        for name, count in reachable:
            for i in range(count):
                payload[f"layer/{name}/{i}"] = _savable(results[position])
                position += 1
        np.savez(results_path, **payload)


if __name__ == "__main__":
    main(sys.argv[1])
