"""Writing the Functional config a keras_hub constructor builds: the registry of
rebuilt classes, the config checks, and the layers several models share."""
from __future__ import annotations

from typing import Callable, Optional

from ..errors import ModelConfigError
from ..layers.keras_hub import is_keras_hub

HUB_MODELING = "keras_hub.src.layers.modeling."
GELU_APPROXIMATE = {"module": "builtins", "class_name": "function",
                    "config": "keras_hub>gelu_approximate", "registered_name": "function"}
# keys every Backbone / Task writes (keras_hub's Backbone.get_config, Task.get_config)
COMMON_KEYS = {"name", "trainable", "dtype"}

_MODELS = {}  # class name -> (build function, the config keys it reads)


def keras_hub_model(class_name: str, keys: set):
    """Register ``build(config, f)`` as the constructor of KerasHub's ``class_name``; it
    reads ``keys`` of the config (and the common ones)."""

    def register(build: Callable) -> Callable:
        _MODELS[class_name] = (build, set(keys) | COMMON_KEYS)
        return build

    return register


def supported_models() -> list:
    return sorted(_MODELS)


def functional_config(config: dict, source: str) -> Optional[dict]:
    """The Keras 3 Functional config of a saved KerasHub model, as keras_hub 0.32's
    constructor builds it from ``config``; None when ``config`` is not a KerasHub model."""
    class_name = config.get("class_name")
    if not is_keras_hub(config.get("registered_name") or config.get("module")):
        return None
    if class_name not in _MODELS:
        raise ModelConfigError(
            f"{source}: {class_name!r} is a KerasHub model kerasonnx cannot rebuild from its "
            f"config; it rebuilds {', '.join(supported_models())}")
    build, keys = _MODELS[class_name]
    body = config.get("config")
    if not isinstance(body, dict):
        raise ModelConfigError(f"{source}: the {class_name} config has no 'config' object")
    _check_keys(body, keys, class_name, source)
    f = Functional(body.get("name") or snake_name(class_name), body.get("dtype"),
                   class_name, source)
    build(body, f)
    return f.config()


def _nested(config, expected: str, source: str, task: str) -> dict:
    """The rebuilt Functional config of a task's ``backbone`` of class ``expected``."""
    if not isinstance(config, dict) or config.get("class_name") != expected:
        found = config.get("class_name") if isinstance(config, dict) else config
        raise ModelConfigError(f"{source}: {task} config key 'backbone' is a {found!r}; "
                               f"kerasonnx rebuilds {task} over a {expected}")
    return functional_config(config, source)


def snake_name(class_name: str) -> str:
    from ..parse import snake_case  # parse imports this module
    return snake_case(class_name)


def _check_keys(body: dict, keys: set, class_name: str, source: str) -> None:
    unknown = sorted(set(body) - keys)
    if unknown:
        raise ModelConfigError(f"{source}: {class_name} config key {unknown[0]!r} is not one "
                               f"kerasonnx knows (it rebuilds keras_hub 0.32's {class_name}); "
                               f"please report this with the model")
    dtype = body.get("dtype")
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if name not in (None, "float32"):
        raise ModelConfigError(f"{source}: {class_name} config key 'dtype' is {name!r}; "
                               f"kerasonnx rebuilds KerasHub models in float32 only")


class Tensor:
    """A symbolic tensor of the config being written: output ``index`` of call ``call`` of
    layer ``layer``."""

    def __init__(self, layer: str, call: int, index: int, dtype: str):
        self.layer, self.call, self.index, self.dtype = layer, call, index, dtype

    def serialize(self) -> dict:
        return {"class_name": "__keras_tensor__",
                "config": {"shape": None, "dtype": self.dtype,
                           "keras_history": [self.layer, self.call, self.index]}}


def _serialize(value):
    if isinstance(value, Tensor):
        return value.serialize()
    if isinstance(value, slice):
        return {"class_name": "__slice__",
                "config": {"start": value.start, "stop": value.stop, "step": value.step}}
    if isinstance(value, (list, tuple)):
        return [_serialize(v) for v in value]
    if isinstance(value, dict):
        return {k: _serialize(v) for k, v in value.items()}
    return value


class Functional:
    """Writes a Keras 3 Functional config the way Keras' functional API would record the
    calls a keras_hub constructor makes."""

    def __init__(self, name: str, dtype, class_name: str, source: str):
        self.name, self.dtype, self.class_name, self.source = name, dtype, class_name, source
        self.layers = {}  # name -> layer config, in the order of their first call
        self.inputs, self.outputs = [], {}
        self.notes = []  # said once by convert and inspect (a preprocessor left out)

    def input(self, name: str, dtype: str = "int32", shape=(None, None)) -> Tensor:
        self.layers[name] = {"class_name": "InputLayer", "module": "keras.layers",
                              "name": name, "inbound_nodes": [],
                              "config": {"name": name, "batch_shape": list(shape),
                                         "dtype": dtype}}
        tensor = Tensor(name, 0, 0, dtype)
        self.inputs.append(tensor)
        return tensor

    def layer(self, class_name: str, name: str, config: dict, *args,
              module: str = "keras.layers", dtype: str = "float32", **kwargs) -> Tensor:
        """Call layer ``name`` (created at its first call) on ``args`` / ``kwargs``."""
        if name not in self.layers:
            hub = module.startswith("keras_hub")
            self.layers[name] = {
                "class_name": class_name, "module": module, "name": name,
                "registered_name": f"keras_hub>{class_name}" if hub else None,
                "config": {"name": name, "trainable": True, "dtype": self.dtype, **config},
                "inbound_nodes": []}
        nodes = self.layers[name]["inbound_nodes"]
        nodes.append({"args": _serialize(list(args)), "kwargs": _serialize(kwargs)})
        return Tensor(name, len(nodes) - 1, 0, dtype)

    def hub_layer(self, class_name: str, file: str, name: str, config: dict, *args,
                  **kwargs) -> Tensor:
        return self.layer(class_name, name, config, *args, module=HUB_MODELING + file,
                          **kwargs)

    def backbone(self, config: dict, class_name: str, task: str) -> tuple:
        """Call the backbone a task model holds (its config ``config``, of ``class_name``)
        on inputs of its own names, as a nested Functional model saved under
        ``layers/<snake_case(class_name)>``; returns (its config, its outputs by name)."""
        nested = _nested(config, class_name, self.source, task)
        body = nested["config"]
        name = body["name"]
        self.dtype = config["config"].get("dtype")
        layers = {layer["name"]: layer for layer in body["layers"]}
        inputs = [self.input(ref[0], layers[ref[0]]["config"]["dtype"],
                             layers[ref[0]]["config"]["batch_shape"])
                  for ref in body["input_layers"]]
        self.layers[name] = dict(nested, name=name,
                                  saving_path=f"layers/{snake_name(class_name)}",
                                  inbound_nodes=[{"args": [_serialize(inputs)],
                                                  "kwargs": {}}])
        outputs = {output: Tensor(name, 0, i, "float32")
                   for i, output in enumerate(body["output_names"])}
        return body, outputs

    def token_embedding(self, backbone: dict, *args, **kwargs) -> Tensor:
        """Call the backbone's ``token_embedding`` again, from the task model (a causal LM's
        ``backbone.token_embedding(x, reverse=True)``): its weights stay under the
        backbone's path (see ``token_embedding_entry``)."""
        entry, path = self.token_embedding_entry(backbone)
        backbone_path = self.layers[backbone["name"]]["saving_path"]
        self.layers["token_embedding"] = dict(entry, name="token_embedding", inbound_nodes=[],
                                               saving_path=f"{backbone_path}/{path}")
        return self.layer(entry["class_name"], "token_embedding", {}, *args, **kwargs)

    @staticmethod
    def token_embedding_entry(backbone: dict) -> tuple:
        """(layer config, saving path inside the backbone) of a backbone's token
        embedding: its own layer (BERT, GPT-2), or the ``token_embedding`` of its
        TokenAndPositionEmbedding ``embeddings`` (OPT, RoBERTa)."""
        from ..parse import _saving_paths_of  # parse imports this module
        layers = {e["name"]: e for e in backbone["layers"]}
        paths = _saving_paths_of(list(layers.items()))
        if "token_embedding" in layers:
            return layers["token_embedding"], paths["token_embedding"]
        embeddings = next(layer["config"] for layer in layers.values()
                          if layer["class_name"] == "TokenAndPositionEmbedding")
        entry = {"class_name": "ReversibleEmbedding",
                 "module": HUB_MODELING + "reversible_embedding",
                 "registered_name": "keras_hub>ReversibleEmbedding",
                 "config": {"name": "token_embedding", "trainable": True,
                            "dtype": embeddings.get("dtype"),
                            "input_dim": embeddings["vocabulary_size"],
                            "output_dim": embeddings["embedding_dim"],
                            "tie_weights": embeddings["tie_weights"],
                            "mask_zero": embeddings["mask_zero"]}}
        return entry, f"{paths[embeddings['name']]}/token_embedding"

    def preprocessor(self, config, task: str, parts: str = "tokenizer / packer") -> None:
        """A task's preprocessor (its ``parts``) is not a layer: the model is converted
        from its backbone's inputs, and convert and inspect say which preprocessor was left
        out."""
        if isinstance(config, dict):
            inputs = ", ".join(t.layer for t in self.inputs)
            self.notes.append(f"{task}'s preprocessor {config.get('class_name')} "
                              f"({parts}) is not a layer and was left out: the "
                              f"model takes {inputs}")

    def op(self, class_name: str, name: str, *args, module: str = "keras.src.ops.numpy",
           **attributes) -> Tensor:
        """A Keras operation (``x[:, 0, :]`` is ``GetItem``; ``ops.sum(x, axis=1)`` is
        ``Sum`` with its ``attributes``), as Keras 3 records it."""
        self.layers[name] = {"class_name": class_name, "module": module,
                              "registered_name": class_name, "name": name,
                              "config": {"name": name, **attributes}, "inbound_nodes": []}
        self.layers[name]["inbound_nodes"].append({"args": _serialize(list(args)),
                                                    "kwargs": {}})
        return Tensor(name, 0, 0, "float32")

    def require(self, config: dict, key: str, allowed: Callable, what: str):
        """``config[key]``, which must satisfy ``allowed``; else a one-line error."""
        if key not in config:
            raise ModelConfigError(f"{self.source}: {self.class_name} config has no {key!r}")
        value = config[key]
        if not allowed(value):
            raise ModelConfigError(f"{self.source}: {self.class_name} config key {key!r} is "
                                   f"{value!r}; kerasonnx rebuilds it for {what}")
        return value

    def option(self, config: dict, key: str, default, allowed: Callable, what: str):
        """``config[key]`` (``default``, keras_hub's constructor default, when absent),
        which must satisfy ``allowed``; else a one-line error."""
        return self.require({**config, key: config.get(key, default)}, key, allowed, what)

    def config(self) -> dict:
        def ref(t: Tensor) -> list:
            return [t.layer, t.call, t.index]

        return {"class_name": "Functional", "module": "keras",
                "config": {"name": self.name, "layers": list(self.layers.values()),
                           "input_layers": [ref(t) for t in self.inputs],
                           "output_layers": [ref(t) for t in self.outputs.values()],
                           "output_names": list(self.outputs), "notes": self.notes}}


TEXT_KEYS = {"vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
             "dropout", "max_sequence_length"}


def is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_rate(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1


def is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def is_flag(value) -> bool:
    return isinstance(value, bool)


def is_positive_int_or_null(value) -> bool:
    return value is None or is_positive_int(value)


def is_positive_number_or_null(value) -> bool:
    return value is None or is_positive_number(value)


def dims(config: dict, f: Functional, vocabulary_key: str = "vocabulary_size") -> tuple:
    """(vocabulary size, num_layers, num_heads, hidden_dim, intermediate_dim, dropout,
    max_sequence_length) of a BERT- or GPT-style config, checked."""
    values = [f.require(config, key, is_positive_int, "a positive int")
              for key in (vocabulary_key, "num_layers", "num_heads", "hidden_dim",
                          "intermediate_dim")]
    heads, hidden = values[2], values[3]
    if hidden % heads:
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'hidden_dim' "
                               f"({hidden}) is not a multiple of num_heads ({heads})")
    dropout = f.require(config, "dropout", is_rate, "a rate in [0, 1)")
    length = f.require(config, "max_sequence_length", is_positive_int, "a positive int")
    return (*values, dropout, length)


def block_config(heads: int, intermediate: int, dropout, epsilon: float, activation,
                  normalize_first: bool) -> dict:
    return {"num_heads": heads, "intermediate_dim": intermediate, "dropout": dropout,
            "activation": activation, "layer_norm_epsilon": epsilon,
            "normalize_first": normalize_first}


def layer_norm(f: Functional, name: str, epsilon: float, x) -> Tensor:
    return f.layer("LayerNormalization", name, {"axis": [-1], "epsilon": epsilon,
                                                "center": True, "scale": True,
                                                "rms_scaling": False}, x)


def token_embedding_layer(f: Functional, vocabulary: int, dim: int, token_ids,
                          logit_soft_cap=None) -> Tensor:
    return f.hub_layer("ReversibleEmbedding", "reversible_embedding", "token_embedding",
                       {"input_dim": vocabulary, "output_dim": dim, "mask_zero": False,
                        "tie_weights": True, "reverse_dtype": None,
                        "logit_soft_cap": logit_soft_cap}, token_ids)


def token_and_position(f: Functional, name: str, vocabulary: int, dim: int, length: int,
                        token_ids) -> Tensor:
    return f.hub_layer("TokenAndPositionEmbedding", "token_and_position_embedding", name,
                       {"vocabulary_size": vocabulary, "sequence_length": length,
                        "embedding_dim": dim, "tie_weights": True, "mask_zero": False},
                       token_ids)


def encoders(f: Functional, x, padding_mask, names, block: dict) -> Tensor:
    """TransformerEncoders called in turn on ``padding_mask``, one per name in ``names`` (a
    name repeated calls the same, shared, encoder again)."""
    for name in names:
        x = f.hub_layer("TransformerEncoder", "transformer_encoder", name, block, x,
                        padding_mask=padding_mask)
    return x


def decoders(f: Functional, x, padding_mask, count: int, block: dict) -> Tensor:
    """``count`` causal TransformerDecoders ``transformer_layer_<i>`` on ``padding_mask``."""
    for i in range(count):
        x = f.hub_layer("TransformerDecoder", "transformer_decoder", f"transformer_layer_{i}",
                        block, x, decoder_padding_mask=padding_mask)
    return x



def refuse_vision_encoder(config: dict, f: Functional) -> None:
    """A multimodal backbone's ``vision_encoder`` (not null) is refused: kerasonnx
    rebuilds its text backbone only."""
    encoder = config.get("vision_encoder")
    if encoder is not None:
        found = encoder.get("class_name") if isinstance(encoder, dict) else encoder
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'vision_encoder' is "
                               f"a {found!r}; kerasonnx rebuilds the text backbone only "
                               f"(vision_encoder null)")
