"""KerasHub backbones and task models, rebuilt from their constructor config.

A saved ``keras_hub>BertBackbone`` holds no layer graph: its ``config.json`` has only the
constructor's arguments, and Keras rebuilds the graph by running ``__init__``. That graph is
a published function of the config, versioned with keras_hub: for each class below, a
function of the config writes the Keras 3 Functional config keras_hub 0.32's constructor
builds (same layer names, classes, configs and call order), which the parser then reads like
any saved Functional model; weights are found by their saving paths (``layers/<class>[_n]``
in call order, as for any Functional model) and verify localises divergence layer by layer.

The file does not say which keras_hub wrote it, so the config is the contract: a key this
module does not know, or a value outside what was tested against keras_hub 0.32, is a
one-line ``ModelConfigError`` naming the key, never a silently different graph.
"""
from __future__ import annotations

from typing import Callable, Optional

from .errors import ModelConfigError
from .layers.keras_hub import is_keras_hub

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
    from .parse import snake_case  # parse imports this module
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
        inputs = [self.input(ref[0], layers[ref[0]]["config"]["dtype"])
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
        backbone's path: its own layer (GPT-2), or the ``token_embedding`` of its
        TokenAndPositionEmbedding ``embeddings`` (OPT)."""
        from .parse import _saving_paths_of  # parse imports this module
        layers = {e["name"]: e for e in backbone["layers"]}
        paths = _saving_paths_of(list(layers.items()))
        backbone_path = self.layers[backbone["name"]]["saving_path"]
        if "token_embedding" in layers:
            entry, path = layers["token_embedding"], paths["token_embedding"]
        else:
            embeddings = layers["embeddings"]["config"]
            entry = {"class_name": "ReversibleEmbedding",
                     "module": HUB_MODELING + "reversible_embedding",
                     "registered_name": "keras_hub>ReversibleEmbedding",
                     "config": {"name": "token_embedding", "trainable": True,
                                "dtype": embeddings.get("dtype"),
                                "input_dim": embeddings["vocabulary_size"],
                                "output_dim": embeddings["embedding_dim"],
                                "tie_weights": embeddings["tie_weights"],
                                "mask_zero": embeddings["mask_zero"]}}
            path = f"{paths['embeddings']}/token_embedding"
        self.layers["token_embedding"] = dict(entry, name="token_embedding", inbound_nodes=[],
                                               saving_path=f"{backbone_path}/{path}")
        return self.layer(entry["class_name"], "token_embedding", {}, *args, **kwargs)

    def preprocessor(self, config, task: str) -> None:
        """A task's preprocessor is not a layer: the model is converted from its
        backbone's inputs, and convert and inspect say which preprocessor was left out."""
        if isinstance(config, dict):
            inputs = ", ".join(t.layer for t in self.inputs)
            self.notes.append(f"{task}'s preprocessor {config.get('class_name')} "
                              f"(tokenizer / packer) is not a layer and was left out: the "
                              f"model takes {inputs}")

    def op(self, class_name: str, name: str, *args) -> Tensor:
        """A Keras operation (``x[:, 0, :]`` is ``GetItem``), as Keras 3 records it."""
        self.layers[name] = {"class_name": class_name, "module": "keras.src.ops.numpy",
                              "registered_name": class_name, "name": name,
                              "config": {"name": name}, "inbound_nodes": []}
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

    def config(self) -> dict:
        def ref(t: Tensor) -> list:
            return [t.layer, t.call, t.index]

        return {"class_name": "Functional", "module": "keras",
                "config": {"name": self.name, "layers": list(self.layers.values()),
                           "input_layers": [ref(t) for t in self.inputs],
                           "output_layers": [ref(t) for t in self.outputs.values()],
                           "output_names": list(self.outputs), "notes": self.notes}}


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _rate(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1


def _dims(config: dict, f: Functional, vocabulary_key: str = "vocabulary_size") -> tuple:
    """(vocabulary size, num_layers, num_heads, hidden_dim, intermediate_dim, dropout,
    max_sequence_length) of a BERT- or GPT-style config, checked."""
    values = [f.require(config, key, _positive, "a positive int")
              for key in (vocabulary_key, "num_layers", "num_heads", "hidden_dim",
                          "intermediate_dim")]
    heads, hidden = values[2], values[3]
    if hidden % heads:
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'hidden_dim' "
                               f"({hidden}) is not a multiple of num_heads ({heads})")
    dropout = f.require(config, "dropout", _rate, "a rate in [0, 1)")
    length = f.require(config, "max_sequence_length", _positive, "a positive int")
    return (*values, dropout, length)


def _block_config(heads: int, intermediate: int, dropout, epsilon: float, activation,
                  normalize_first: bool) -> dict:
    return {"num_heads": heads, "intermediate_dim": intermediate, "dropout": dropout,
            "activation": activation, "layer_norm_epsilon": epsilon,
            "normalize_first": normalize_first}


def _layer_norm(f: Functional, name: str, epsilon: float, x) -> Tensor:
    return f.layer("LayerNormalization", name, {"axis": [-1], "epsilon": epsilon,
                                                "center": True, "scale": True,
                                                "rms_scaling": False}, x)


def _token_embedding(f: Functional, vocabulary: int, dim: int, token_ids) -> Tensor:
    return f.hub_layer("ReversibleEmbedding", "reversible_embedding", "token_embedding",
                       {"input_dim": vocabulary, "output_dim": dim, "mask_zero": False,
                        "tie_weights": True, "reverse_dtype": None, "logit_soft_cap": None},
                       token_ids)


def _token_and_position(f: Functional, name: str, vocabulary: int, dim: int, length: int,
                        token_ids) -> Tensor:
    return f.hub_layer("TokenAndPositionEmbedding", "token_and_position_embedding", name,
                       {"vocabulary_size": vocabulary, "sequence_length": length,
                        "embedding_dim": dim, "tie_weights": True, "mask_zero": False},
                       token_ids)


def _encoders(f: Functional, x, padding_mask, names, block: dict) -> Tensor:
    """TransformerEncoders called in turn on ``padding_mask``, one per name in ``names`` (a
    name repeated calls the same, shared, encoder again)."""
    for name in names:
        x = f.hub_layer("TransformerEncoder", "transformer_encoder", name, block, x,
                        padding_mask=padding_mask)
    return x


def _decoders(f: Functional, x, padding_mask, count: int, block: dict) -> Tensor:
    """``count`` causal TransformerDecoders ``transformer_layer_<i>`` on ``padding_mask``."""
    for i in range(count):
        x = f.hub_layer("TransformerDecoder", "transformer_decoder", f"transformer_layer_{i}",
                        block, x, decoder_padding_mask=padding_mask)
    return x


def _segmented_encoder(config: dict, f: Functional, vocabulary_key: str = "vocabulary_size",
                       narrower: bool = False, projection: Optional[str] = None,
                       schedule: Optional[Callable] = None) -> None:
    """BERT, ELECTRA and ALBERT: token (ReversibleEmbedding) + position + segment
    embeddings (``embedding_dim`` wide when ``narrower``), Add, LayerNormalization(1e-12),
    Dropout, a Dense ``projection`` to hidden_dim (ELECTRA: when the embedding is narrower;
    ALBERT: always), post-norm TransformerEncoders (tanh gelu, epsilon 1e-12) on
    ``padding_mask`` called in the order ``schedule(layers)`` names them (default
    ``transformer_layer_<i>``); ``pooled_output`` is Dense(hidden, tanh) of the first
    token."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = _dims(
        config, f, vocabulary_key)
    dim = f.require(config, "embedding_dim", _positive, "a positive int") if narrower else hidden
    names = (schedule or (lambda n: [f"transformer_layer_{i}" for i in range(n)]))(layers)
    segments = f.require(config, "num_segments", _positive, "a positive int")
    token_ids = f.input("token_ids")
    segment_ids = f.input("segment_ids")
    padding_mask = f.input("padding_mask")
    tokens = _token_embedding(f, vocabulary, dim, token_ids)
    positions = f.hub_layer("PositionEmbedding", "position_embedding", "position_embedding",
                            {"sequence_length": length}, tokens)
    segment = f.layer("Embedding", "segment_embedding",
                      {"input_dim": segments, "output_dim": dim, "mask_zero": False},
                      segment_ids)
    x = f.layer("Add", "embeddings_add", {}, [tokens, positions, segment])
    x = _layer_norm(f, "embeddings_layer_norm", 1e-12, x)
    x = f.layer("Dropout", "embeddings_dropout", {"rate": dropout}, x)
    if projection is not None:
        x = f.layer("Dense", projection, {"units": hidden, "activation": None,
                                          "use_bias": True}, x)
    x = _encoders(f, x, padding_mask, names,
                  _block_config(heads, intermediate, dropout, 1e-12, GELU_APPROXIMATE, False))
    first = f.op("GetItem", "get_item", x, [slice(None), 0, slice(None)])
    pooled = f.layer("Dense", "pooled_dense", {"units": hidden, "activation": "tanh",
                                               "use_bias": True}, first)
    f.outputs.update(sequence_output=x, pooled_output=pooled)


def _embedded_encoder(config: dict, f: Functional, embeddings: str, epsilon: float) -> None:
    """DistilBERT and RoBERTa: TokenAndPositionEmbedding ``embeddings``,
    LayerNormalization(epsilon), Dropout, post-norm TransformerEncoders (exact gelu,
    ``epsilon``) on ``padding_mask``: ``sequence_output``."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = _dims(config, f)
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = _token_and_position(f, embeddings, vocabulary, hidden, length, token_ids)
    x = _layer_norm(f, "embeddings_layer_norm", epsilon, x)
    x = f.layer("Dropout", "embeddings_dropout", {"rate": dropout}, x)
    x = _encoders(f, x, padding_mask, [f"transformer_layer_{i}" for i in range(layers)],
                  _block_config(heads, intermediate, dropout, epsilon, "gelu", False))
    f.outputs.update(sequence_output=x)


# ---------------------------------------------------------------------- backbones

TEXT_KEYS = {"vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim",
             "dropout", "max_sequence_length"}


@keras_hub_model("BertBackbone", TEXT_KEYS | {"num_segments"})
def bert_backbone(config: dict, f: Functional) -> None:
    """keras_hub's BertBackbone (see ``_segmented_encoder``)."""
    _segmented_encoder(config, f)


@keras_hub_model("ElectraBackbone", TEXT_KEYS - {"vocabulary_size"}
                 | {"vocab_size", "embedding_dim", "num_segments"})
def electra_backbone(config: dict, f: Functional) -> None:
    """keras_hub's ElectraBackbone: BERT's graph over an ``embedding_dim``-wide embedding
    projected to hidden_dim when narrower (see ``_segmented_encoder``)."""
    narrower = config.get("embedding_dim") != config.get("hidden_dim")
    _segmented_encoder(config, f, "vocab_size", narrower=True,
                       projection="embeddings_projection" if narrower else None)


@keras_hub_model("AlbertBackbone", TEXT_KEYS | {"embedding_dim", "num_groups",
                                                "num_inner_repetitions", "num_segments"})
def albert_backbone(config: dict, f: Functional) -> None:
    """keras_hub's AlbertBackbone: BERT's graph over an ``embedding_dim``-wide embedding
    projected by Dense ``embedding_projection``, with ``num_groups`` groups of
    ``num_inner_repetitions`` encoders ``group_<g>_inner_layer_<i>``, each group's encoders
    called in turn num_layers / num_groups times (shared weights)."""
    groups = f.require(config, "num_groups", _positive, "a positive int")
    inner = f.require(config, "num_inner_repetitions", _positive, "a positive int")
    if config.get("num_layers", 0) % groups:
        raise ModelConfigError(f"{f.source}: AlbertBackbone config key 'num_layers' is not "
                               f"a multiple of num_groups ({groups})")

    def schedule(layers: int) -> list:
        return [f"group_{g}_inner_layer_{i}" for g in range(groups)
                for _ in range(layers // groups) for i in range(inner)]

    _segmented_encoder(config, f, narrower=True, projection="embedding_projection",
                       schedule=schedule)


@keras_hub_model("DistilBertBackbone", TEXT_KEYS)
def distil_bert_backbone(config: dict, f: Functional) -> None:
    """keras_hub's DistilBertBackbone (see ``_embedded_encoder``)."""
    _embedded_encoder(config, f, "token_and_position_embedding", 1e-12)


@keras_hub_model("RobertaBackbone", TEXT_KEYS)
def roberta_backbone(config: dict, f: Functional) -> None:
    """keras_hub's RobertaBackbone (see ``_embedded_encoder``)."""
    _embedded_encoder(config, f, "embeddings", 1e-5)


@keras_hub_model("GPT2Backbone", TEXT_KEYS)
def gpt2_backbone(config: dict, f: Functional) -> None:
    """keras_hub's GPT2Backbone: token (ReversibleEmbedding) + position embeddings, Add,
    Dropout, pre-norm causal TransformerDecoders (tanh gelu, epsilon 1e-5) on
    ``padding_mask``, a final LayerNormalization: ``sequence_output``."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = _dims(config, f)
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    tokens = _token_embedding(f, vocabulary, hidden, token_ids)
    positions = f.hub_layer("PositionEmbedding", "position_embedding", "position_embedding",
                            {"sequence_length": length}, tokens)
    x = f.layer("Add", "embeddings_add", {}, [tokens, positions])
    x = f.layer("Dropout", "embeddings_dropout", {"rate": dropout}, x)
    x = _decoders(f, x, padding_mask, layers,
                  _block_config(heads, intermediate, dropout, 1e-5, GELU_APPROXIMATE, True))
    f.outputs.update(sequence_output=_layer_norm(f, "layer_norm", 1e-5, x))


@keras_hub_model("OPTBackbone", TEXT_KEYS)
def opt_backbone(config: dict, f: Functional) -> None:
    """keras_hub's OPTBackbone: TokenAndPositionEmbedding ``embeddings``, pre-norm causal
    TransformerDecoders (relu, epsilon 1e-5) on ``padding_mask``, a final
    LayerNormalization: ``sequence_output``."""
    vocabulary, layers, heads, hidden, intermediate, dropout, length = _dims(config, f)
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = _token_and_position(f, "embeddings", vocabulary, hidden, length, token_ids)
    x = _decoders(f, x, padding_mask, layers,
                  _block_config(heads, intermediate, dropout, 1e-5, "relu", True))
    f.outputs.update(sequence_output=_layer_norm(f, "layer_norm", 1e-5, x))


LLAMA_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
              "intermediate_dim", "num_key_value_heads", "rope_max_wavelength",
              "rope_position_scaling_factor", "rope_frequency_adjustment_factor",
              "rope_low_freq_factor", "rope_high_freq_factor",
              "rope_pretraining_sequence_length", "layer_norm_epsilon", "dropout",
              "tie_word_embeddings"}
LLAMA3_ROPE = ("rope_frequency_adjustment_factor", "rope_low_freq_factor",
               "rope_high_freq_factor", "rope_pretraining_sequence_length")


def _gqa_backbone(config: dict, f: Functional, decoder: str, module: str, norm_path: str,
                  tied: bool, block: dict) -> None:
    """Llama and Mistral: ReversibleEmbedding (``tied``), ``decoder`` blocks (see
    ``layers/keras_hub.py``) on ``padding_mask``, a final RMS norm
    ``sequence_output_layernorm`` (saved under ``norm_path``): ``sequence_output``."""
    values = [f.require(config, key, _positive, "a positive int")
              for key in ("vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
                          "intermediate_dim", "num_key_value_heads")]
    vocabulary, layers, heads, hidden, intermediate, groups = values
    if heads % groups or (hidden % heads and not config.get("head_dim")):
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'num_query_heads' "
                               f"({heads}) must divide hidden_dim ({hidden}) and be a multiple "
                               f"of num_key_value_heads ({groups})")
    epsilon = config.get("layer_norm_epsilon", 1e-6)
    dropout = f.require(config, "dropout", _rate, "a rate in [0, 1)")
    token_ids = f.input("token_ids")
    padding_mask = f.input("padding_mask")
    x = f.hub_layer("ReversibleEmbedding", "reversible_embedding", "token_embedding",
                    {"input_dim": vocabulary, "output_dim": hidden, "mask_zero": False,
                     "tie_weights": tied, "reverse_dtype": None, "logit_soft_cap": None},
                    token_ids)
    block = dict(block, intermediate_dim=intermediate, num_query_heads=heads,
                 num_key_value_heads=groups, layer_norm_epsilon=epsilon, dropout=dropout,
                 rope_max_wavelength=config.get("rope_max_wavelength", 10000))
    for i in range(layers):
        x = f.layer(decoder, f"transformer_layer_{i}", block, x, module=module,
                    decoder_padding_mask=padding_mask)
    x = f.layer("RMSNormalization", "sequence_output_layernorm",
                {"epsilon": epsilon, "axis": -1}, x)
    f.layers["sequence_output_layernorm"]["saving_path"] = norm_path
    f.outputs.update(sequence_output=x)


@keras_hub_model("LlamaBackbone", LLAMA_KEYS)
def llama_backbone(config: dict, f: Functional) -> None:
    """keras_hub's LlamaBackbone (see ``_gqa_backbone``): LlamaTransformerDecoders, the
    embedding tied with ``tie_word_embeddings``, LlamaLayerNorm at the end."""
    for key in LLAMA3_ROPE:
        if config.get(key) is not None:
            raise ModelConfigError(f"{f.source}: LlamaBackbone config key {key!r} (Llama 3.1 "
                                   f"rotary scaling) is not supported yet")
    _gqa_backbone(config, f, "LlamaTransformerDecoder",
                  "keras_hub.src.models.llama.llama_decoder", "layers/llama_layer_norm",
                  bool(config.get("tie_word_embeddings", False)),
                  {"rope_position_scaling_factor": config.get("rope_position_scaling_factor",
                                                              1.0)})


MISTRAL_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
                "intermediate_dim", "rope_max_wavelength", "rope_scaling_factor",
                "num_key_value_heads", "sliding_window", "head_dim", "layer_norm_epsilon",
                "dropout"}


@keras_hub_model("MistralBackbone", MISTRAL_KEYS)
def mistral_backbone(config: dict, f: Functional) -> None:
    """keras_hub's MistralBackbone (see ``_gqa_backbone``): MistralTransformerDecoders
    (``head_dim``, ``rope_scaling_factor``, ``sliding_window``), an untied embedding,
    MistralLayerNormalization at the end."""
    window = config.get("sliding_window")
    if window is not None and not _positive(window):
        raise ModelConfigError(f"{f.source}: MistralBackbone config key 'sliding_window' is "
                               f"{window!r}; kerasonnx rebuilds it for a positive int or null")
    head_dim = config.get("head_dim")
    if head_dim is not None and not _positive(head_dim):
        raise ModelConfigError(f"{f.source}: MistralBackbone config key 'head_dim' is "
                               f"{head_dim!r}; kerasonnx rebuilds it for a positive int or null")
    _gqa_backbone(config, f, "MistralTransformerDecoder",
                  "keras_hub.src.models.mistral.mistral_transformer_decoder",
                  "layers/mistral_layer_normalization", False,
                  {"rope_scaling_factor": config.get("rope_scaling_factor", 1.0),
                   "sliding_window": window, "head_dim": head_dim})


QWEN_KEYS = {"vocabulary_size", "num_layers", "num_query_heads", "hidden_dim",
             "intermediate_dim", "rope_max_wavelength", "rope_scaling_factor",
             "num_key_value_heads", "layer_norm_epsilon", "dropout", "tie_word_embeddings",
             "use_sliding_window_attention", "sliding_window_size"}


@keras_hub_model("QwenBackbone", QWEN_KEYS)
def qwen_backbone(config: dict, f: Functional) -> None:
    """keras_hub's QwenBackbone (Qwen 2; see ``_gqa_backbone``): QwenTransformerDecoders
    (biased query / key / value, ``rope_scaling_factor``), the embedding tied with
    ``tie_word_embeddings``, QwenLayerNorm at the end. Sliding window attention is
    refused."""
    if config.get("use_sliding_window_attention"):
        raise ModelConfigError(f"{f.source}: QwenBackbone config key "
                               f"'use_sliding_window_attention' is true; not supported yet")
    _gqa_backbone(config, f, "QwenTransformerDecoder",
                  "keras_hub.src.models.qwen.qwen_decoder", "layers/qwen_layer_norm",
                  bool(config.get("tie_word_embeddings", True)),
                  {"rope_scaling_factor": config.get("rope_scaling_factor", 1.0),
                   "use_sliding_window_attention": False})


# ---------------------------------------------------------------------- task models

TASK_KEYS = {"backbone", "preprocessor"}


CLASSIFIER_KEYS = TASK_KEYS | {"num_classes", "activation", "dropout"}


def _classifier_head(config: dict, f: Functional, x, dropout: str, task: str) -> None:
    """Dropout ``dropout`` and Dense(num_classes, activation) ``logits``; the preprocessor
    noted."""
    classes = f.require(config, "num_classes", _positive, "a positive int")
    rate = f.require(config, "dropout", _rate, "a rate in [0, 1)")
    x = f.layer("Dropout", dropout, {"rate": rate}, x)
    x = f.layer("Dense", "logits", {"units": classes, "activation": config.get("activation"),
                                    "use_bias": True}, x)
    f.outputs.update(logits=x)
    f.preprocessor(config.get("preprocessor"), task)


def _first_token_dense(config: dict, f: Functional, backbone: dict, outputs: dict,
                       activation: str, dropout: Optional[str]) -> Tensor:
    """Dense(hidden_dim or the backbone's, activation) ``pooled_dense`` of the first token
    of ``sequence_output`` (after Dropout ``dropout`` when given)."""
    hidden = config.get("hidden_dim") or backbone["hidden_dim"]
    if not _positive(hidden):
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'hidden_dim' is "
                               f"{hidden!r}; kerasonnx rebuilds it for a positive int")
    x = f.op("GetItem", "get_item", outputs["sequence_output"], [slice(None), 0, slice(None)])
    if dropout is not None:
        x = f.layer("Dropout", dropout,
                    {"rate": f.require(config, "dropout", _rate, "a rate in [0, 1)")}, x)
    return f.layer("Dense", "pooled_dense", {"units": hidden, "activation": activation,
                                             "use_bias": True}, x)


@keras_hub_model("BertTextClassifier", CLASSIFIER_KEYS)
def bert_text_classifier(config: dict, f: Functional) -> None:
    """keras_hub's BertTextClassifier: the backbone's ``pooled_output``, Dropout
    ``classifier_dropout``, Dense(num_classes, activation) ``logits``."""
    _, outputs = f.backbone(config.get("backbone"), "BertBackbone", "BertTextClassifier")
    _classifier_head(config, f, outputs["pooled_output"], "classifier_dropout",
                     "BertTextClassifier")


@keras_hub_model("AlbertTextClassifier", CLASSIFIER_KEYS)
def albert_text_classifier(config: dict, f: Functional) -> None:
    """keras_hub's AlbertTextClassifier: the backbone's ``pooled_output``, Dropout
    ``output_dropout``, Dense(num_classes, activation) ``logits``."""
    _, outputs = f.backbone(config.get("backbone"), "AlbertBackbone", "AlbertTextClassifier")
    _classifier_head(config, f, outputs["pooled_output"], "output_dropout",
                     "AlbertTextClassifier")


@keras_hub_model("DistilBertTextClassifier", CLASSIFIER_KEYS | {"hidden_dim"})
def distil_bert_text_classifier(config: dict, f: Functional) -> None:
    """keras_hub's DistilBertTextClassifier: Dense(hidden_dim, relu) ``pooled_dense`` of the
    first token, Dropout ``output_dropout``, Dense(num_classes, activation) ``logits``."""
    backbone = config.get("backbone")
    _, outputs = f.backbone(backbone, "DistilBertBackbone", "DistilBertTextClassifier")
    x = _first_token_dense(config, f, backbone["config"], outputs, "relu", None)
    _classifier_head(config, f, x, "output_dropout", "DistilBertTextClassifier")


@keras_hub_model("RobertaTextClassifier", CLASSIFIER_KEYS | {"hidden_dim"})
def roberta_text_classifier(config: dict, f: Functional) -> None:
    """keras_hub's RobertaTextClassifier: Dropout ``pooled_dropout`` of the first token,
    Dense(hidden_dim, tanh) ``pooled_dense``, Dropout ``output_dropout``,
    Dense(num_classes, activation) ``logits``."""
    backbone = config.get("backbone")
    _, outputs = f.backbone(backbone, "RobertaBackbone", "RobertaTextClassifier")
    x = _first_token_dense(config, f, backbone["config"], outputs, "tanh", "pooled_dropout")
    _classifier_head(config, f, x, "output_dropout", "RobertaTextClassifier")


def _causal_lm(config: dict, f: Functional, backbone_class: str, task: str) -> None:
    """A causal LM: the backbone's ``sequence_output`` projected onto the vocabulary by its
    token embedding (``reverse=True``; tied, or the embedding's own ``reverse_embeddings``
    where the backbone has them, as Llama without ``tie_word_embeddings`` and Mistral do):
    the logits."""
    backbone, outputs = f.backbone(config.get("backbone"), backbone_class, task)
    f.outputs.update(logits=f.token_embedding(backbone, outputs["sequence_output"],
                                              reverse=True))
    f.preprocessor(config.get("preprocessor"), task)


# keras_hub's causal LMs: each is ``_causal_lm`` over its backbone.
CAUSAL_LMS = {"GPT2CausalLM": "GPT2Backbone", "OPTCausalLM": "OPTBackbone",
              "LlamaCausalLM": "LlamaBackbone", "MistralCausalLM": "MistralBackbone",
              "QwenCausalLM": "QwenBackbone"}
for _task, _backbone in CAUSAL_LMS.items():
    keras_hub_model(_task, TASK_KEYS)(
        lambda config, f, backbone=_backbone, task=_task: _causal_lm(config, f, backbone, task))
del _task, _backbone
