"""keras_hub's task models: a backbone and its task head."""
from __future__ import annotations

from typing import Optional

from ..errors import ModelConfigError
from .builder import (Functional, GELU_APPROXIMATE, HUB_MODELING, is_flag, keras_hub_model,
                      is_positive_int, is_positive_int_or_null, is_rate, Tensor)


TASK_KEYS = {"backbone", "preprocessor"}


CLASSIFIER_KEYS = TASK_KEYS | {"num_classes", "activation", "dropout"}


def _classifier_head(config: dict, f: Functional, x, dropout: str, task: str) -> None:
    """Dropout ``dropout`` and Dense(num_classes, activation) ``logits``; the preprocessor
    noted."""
    classes = f.require(config, "num_classes", is_positive_int, "a positive int")
    dropout_rate = f.require(config, "dropout", is_rate, "a rate in [0, 1)")
    x = f.layer("Dropout", dropout, {"rate": dropout_rate}, x)
    x = f.layer("Dense", "logits", {"units": classes, "activation": config.get("activation"),
                                    "use_bias": True}, x)
    f.outputs.update(logits=x)
    f.preprocessor(config.get("preprocessor"), task)


def _first_token_dense(config: dict, f: Functional, backbone: dict, outputs: dict,
                       activation: str, dropout: Optional[str]) -> Tensor:
    """Dense(hidden_dim or the backbone's, activation) ``pooled_dense`` of the first token
    of ``sequence_output`` (after Dropout ``dropout`` when given)."""
    hidden = config.get("hidden_dim") or backbone["hidden_dim"]
    if not is_positive_int(hidden):
        raise ModelConfigError(f"{f.source}: {f.class_name} config key 'hidden_dim' is "
                               f"{hidden!r}; kerasonnx rebuilds it for a positive int")
    x = f.op("GetItem", "get_item", outputs["sequence_output"], [slice(None), 0, slice(None)])
    if dropout is not None:
        x = f.layer("Dropout", dropout,
                    {"rate": f.require(config, "dropout", is_rate, "a rate in [0, 1)")}, x)
    return f.layer("Dense", "pooled_dense", {"units": hidden, "activation": activation,
                                             "use_bias": True}, x)


def _pooled_classifier(config: dict, f: Functional, backbone_class: str, dropout: str,
                       task: str) -> None:
    """A classifier over the backbone's ``pooled_output``: Dropout ``dropout``,
    Dense(num_classes, activation) ``logits``."""
    _, outputs = f.backbone(config.get("backbone"), backbone_class, task)
    _classifier_head(config, f, outputs["pooled_output"], dropout, task)


# keras_hub's classifiers over ``pooled_output``: task -> (its backbone, its Dropout's name)
POOLED_CLASSIFIERS = {"BertTextClassifier": ("BertBackbone", "classifier_dropout"),
                      "AlbertTextClassifier": ("AlbertBackbone", "output_dropout")}
for _task, (_backbone, _dropout) in POOLED_CLASSIFIERS.items():
    keras_hub_model(_task, CLASSIFIER_KEYS)(
        lambda config, f, backbone=_backbone, dropout=_dropout, task=_task:
        _pooled_classifier(config, f, backbone, dropout, task))
del _task, _backbone, _dropout


@keras_hub_model("DistilBertTextClassifier", CLASSIFIER_KEYS | {"hidden_dim"})
def distil_bert_text_classifier(config: dict, f: Functional) -> None:
    """keras_hub's DistilBertTextClassifier: Dense(hidden_dim, relu) ``pooled_dense`` of the
    first token, Dropout ``output_dropout``, Dense(num_classes, activation) ``logits``."""
    backbone = config.get("backbone")
    _, outputs = f.backbone(backbone, "DistilBertBackbone", "DistilBertTextClassifier")
    x = _first_token_dense(config, f, backbone["config"], outputs, "relu", None)
    _classifier_head(config, f, x, "output_dropout", "DistilBertTextClassifier")


def _roberta_text_classifier(config: dict, f: Functional, backbone_class: str,
                             task: str) -> None:
    """keras_hub's RobertaTextClassifier: Dropout ``pooled_dropout`` of the first token,
    Dense(hidden_dim, tanh) ``pooled_dense``, Dropout ``output_dropout``,
    Dense(num_classes, activation) ``logits``."""
    backbone = config.get("backbone")
    _, outputs = f.backbone(backbone, backbone_class, task)
    x = _first_token_dense(config, f, backbone["config"], outputs, "tanh", "pooled_dropout")
    _classifier_head(config, f, x, "output_dropout", task)


# XLMRobertaTextClassifier is RobertaTextClassifier over an XLMRobertaBackbone
for _task, _backbone in (("RobertaTextClassifier", "RobertaBackbone"),
                         ("XLMRobertaTextClassifier", "XLMRobertaBackbone")):
    keras_hub_model(_task, CLASSIFIER_KEYS | {"hidden_dim"})(
        lambda config, f, backbone=_backbone, task=_task:
        _roberta_text_classifier(config, f, backbone, task))


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
              "QwenCausalLM": "QwenBackbone", "Qwen3CausalLM": "Qwen3Backbone",
              "Qwen3_5CausalLM": "Qwen3_5Backbone", "GemmaCausalLM": "GemmaBackbone",
              "Llama3CausalLM": "Llama3Backbone", "Phi3CausalLM": "Phi3Backbone",
              "Gemma3CausalLM": "Gemma3Backbone", "MixtralCausalLM": "MixtralBackbone",
              "Qwen3MoeCausalLM": "Qwen3MoeBackbone"}
for _task, _backbone in CAUSAL_LMS.items():
    keras_hub_model(_task, TASK_KEYS)(
        lambda config, f, backbone=_backbone, task=_task:
        _causal_lm(config, f, backbone, task))
del _task, _backbone


# ---------------------------------------------------------------------- masked LMs


def _masked_lm(config: dict, f: Functional, backbone_class: str, task: str,
               intermediate_activation) -> None:
    """A masked LM: the backbone's ``sequence_output`` and the int ``mask_positions`` input
    into MaskedLMHead ``mlm_head`` (a composite: the hidden states at the positions,
    Dense(width, ``intermediate_activation``), LayerNormalization(1e-5), logits against the
    backbone's tied token embedding plus output_bias), whose output is named ``mlm_head``;
    its own weights under ``layers/masked_lm_head``, the table read under the
    backbone's."""
    backbone, outputs = f.backbone(config.get("backbone"), backbone_class, task)
    mask_positions = f.input("mask_positions")
    embedding = Functional.token_embedding_entry(backbone)[0]["config"]
    f.outputs["mlm_head"] = f.hub_layer(
        "MaskedLMHead", "masked_lm_head", "mlm_head",
        {"vocabulary_size": embedding["input_dim"],
         "token_embedding": {"module": HUB_MODELING + "reversible_embedding",
                             "class_name": "ReversibleEmbedding", "config": embedding,
                             "registered_name": "keras_hub>ReversibleEmbedding"},
         "intermediate_activation": intermediate_activation, "activation": None,
         "layer_norm_epsilon": 1e-5},
        _sequence_output(outputs), mask_positions)
    f.preprocessor(config.get("preprocessor"), task)


# keras_hub's masked LMs: task -> (its backbone, the head's intermediate activation)
MASKED_LMS = {"BertMaskedLM": ("BertBackbone", "gelu"),
              "RobertaMaskedLM": ("RobertaBackbone", "gelu"),
              "XLMRobertaMaskedLM": ("XLMRobertaBackbone", "gelu"),
              "DistilBertMaskedLM": ("DistilBertBackbone", "gelu"),
              "AlbertMaskedLM": ("AlbertBackbone", GELU_APPROXIMATE)}
for _task, (_backbone, _activation) in MASKED_LMS.items():
    keras_hub_model(_task, TASK_KEYS)(
        lambda config, f, backbone=_backbone, task=_task, activation=_activation:
        _masked_lm(config, f, backbone, task, activation))
del _task, _backbone, _activation


# ---------------------------------------------------------------------- text embedders

MINUS_INFINITY = {"class_name": "__tensor__", "config": {"value": float("-inf"),
                                                         "dtype": "float32"}}


def _text_embedder(config: dict, f: Functional, backbone_class: str, task: str,
                   count_floor: float) -> None:
    """A text embedder: the backbone's ``sequence_output`` x pooled over the sequence by
    ``pooling_mode``: "mean" sum(x * m) / max(sum(m), count_floor), m the padding mask;
    "cls" the first token; "max" the maximum over the positions m keeps (-inf elsewhere);
    then, with ``normalize``, x / max(|x|, 1e-7) (keras.ops.normalize). Keras records
    these as operations; the output is named after the last one, as a fresh process
    loading the model names it: Keras numbers operation names per process, and the
    backbone, built first, has taken ``get_item`` for its ``pooled_output`` (BERT)."""
    mode = f.require(config, "pooling_mode", lambda v: v in ("mean", "cls", "max"),
                     "'mean', 'cls' or 'max'")
    normalize = f.require(config, "normalize", is_flag, "a bool")
    backbone, outputs = f.backbone(config.get("backbone"), backbone_class, task)
    x = outputs["sequence_output"]
    if mode == "cls":
        taken = any(layer["name"] == "get_item" for layer in backbone["layers"])
        x = f.op("GetItem", "get_item_1" if taken else "get_item", x,
                 [slice(None), 0, slice(None)])
    else:
        padding_mask = next(t for t in f.inputs if t.layer == "padding_mask")
        mask = f.op("Cast", "cast", f.op("ExpandDims", "expand_dims", padding_mask, axis=-1),
                    module="keras.src.ops.core", dtype="float32" if mode == "mean" else "bool")
        if mode == "mean":
            total = f.op("Sum", "sum", f.op("Multiply", "multiply", x, mask), axis=1,
                         keepdims=False)
            count = f.op("Maximum", "maximum",
                         f.op("Sum", "sum_1", mask, axis=1, keepdims=False), count_floor)
            x = f.op("TrueDivide", "true_divide", total, count)
        else:
            x = f.op("Max", "max", f.op("Where", "where", mask, x, MINUS_INFINITY), axis=1,
                     keepdims=False, initial=None)
    if normalize:
        x = f.op("Normalize", "normalize", x, module="keras.src.ops.nn", axis=-1, order=2,
                 epsilon=None)
    f.outputs[x.layer] = x
    f.preprocessor(config.get("preprocessor"), task)


# keras_hub's text embedders: task -> (its backbone, the floor of mean pooling's count)
TEXT_EMBEDDERS = {"BertTextEmbedder": ("BertBackbone", 1e-9),
                  "XLMRobertaTextEmbedder": ("XLMRobertaBackbone", 1e-5)}
for _task, (_backbone, _floor) in TEXT_EMBEDDERS.items():
    keras_hub_model(_task, TASK_KEYS | {"pooling_mode", "normalize"})(
        lambda config, f, backbone=_backbone, task=_task, floor=_floor:
        _text_embedder(config, f, backbone, task, floor))
del _task, _backbone, _floor


# ---------------------------------------------------------------------- image classifiers


VIT_CLASSIFIER_KEYS = TASK_KEYS | {"num_classes", "pooling", "intermediate_dim", "activation",
                                   "dropout"}


def _predictions(config: dict, f: Functional, x, task: str) -> None:
    """An image classifier's Dense(num_classes, activation) ``predictions``; the image
    preprocessor noted."""
    classes = f.require(config, "num_classes", is_positive_int, "a positive int")
    f.outputs.update(predictions=f.layer("Dense", "predictions",
                                         {"units": classes,
                                          "activation": config.get("activation"),
                                          "use_bias": True}, x))
    f.preprocessor(config.get("preprocessor"), task, "image converter: resizing, rescaling")


@keras_hub_model("ViTImageClassifier", VIT_CLASSIFIER_KEYS)
def vit_image_classifier(config: dict, f: Functional) -> None:
    """keras_hub's ViTImageClassifier: the backbone's output pooled (``pooling`` "token":
    the class token's row; "gap": the mean over the sequence), Dense(intermediate_dim,
    tanh) ``pre_logits`` when ``intermediate_dim`` is set, Dropout ``output_dropout``,
    Dense(num_classes, activation) ``predictions``; the image preprocessor noted."""
    _, outputs = f.backbone(config.get("backbone"), "ViTBackbone", "ViTImageClassifier")
    x = outputs["sequence_output"]
    pooling = f.option(config, "pooling", "token", lambda v: v in ("token", "gap"),
                       "'token' or 'gap'")
    if pooling == "token":
        x = f.op("GetItem", "get_item", x, [slice(None), 0])
    else:
        x = f.op("Mean", "mean", x, axis=[1], keepdims=False)
    intermediate = f.option(config, "intermediate_dim", None, is_positive_int_or_null,
                            "a positive int or null")
    if intermediate is not None:
        x = f.layer("Dense", "pre_logits", {"units": intermediate, "activation": "tanh",
                                            "use_bias": True}, x)
    x = f.layer("Dropout", "output_dropout",
                {"rate": f.require(config, "dropout", is_rate, "a rate in [0, 1)")}, x)
    _predictions(config, f, x, "ViTImageClassifier")


# ---------------------------------------------------------------------- DeBERTa-v3


def _sequence_output(outputs: dict) -> Tensor:
    """A backbone's hidden states: its ``sequence_output``, or its only output (DeBERTa's
    backbone returns one tensor, named after its last encoder)."""
    return outputs["sequence_output"] if "sequence_output" in outputs else next(
        iter(outputs.values()))


@keras_hub_model("DebertaV3TextClassifier", CLASSIFIER_KEYS | {"hidden_dim"})
def deberta_v3_text_classifier(config: dict, f: Functional) -> None:
    """keras_hub's DebertaV3TextClassifier: the first token of the backbone's output,
    Dropout(dropout) ``pooled_dropout``, Dense(hidden_dim or the backbone's, exact gelu)
    ``pooled_dense``, Dropout(the backbone's dropout) ``classifier_dropout``,
    Dense(num_classes, activation) ``logits``; the preprocessor noted."""
    backbone = config.get("backbone")
    _, outputs = f.backbone(backbone, "DebertaV3Backbone", "DebertaV3TextClassifier")
    x = _first_token_dense(config, f, backbone["config"],
                           {"sequence_output": _sequence_output(outputs)}, "gelu",
                           "pooled_dropout")
    x = f.layer("Dropout", "classifier_dropout", {"rate": backbone["config"]["dropout"]}, x)
    classes = f.require(config, "num_classes", is_positive_int, "a positive int")
    f.outputs.update(logits=f.layer("Dense", "logits",
                                    {"units": classes, "activation": config.get("activation"),
                                     "use_bias": True}, x))
    f.preprocessor(config.get("preprocessor"), "DebertaV3TextClassifier")


# DebertaV3MaskedLM: ``_masked_lm`` over its backbone (its head's activation exact gelu)
keras_hub_model("DebertaV3MaskedLM", TASK_KEYS)(
    lambda config, f: _masked_lm(config, f, "DebertaV3Backbone", "DebertaV3MaskedLM", "gelu"))


# ---------------------------------------------------------------------- DeiT


@keras_hub_model("DeiTImageClassifier", TASK_KEYS | {"num_classes", "pooling", "activation",
                                                      "dropout"})
def deit_image_classifier(config: dict, f: Functional) -> None:
    """keras_hub 0.32's DeiTImageClassifier: one head, Dense(num_classes, activation)
    ``predictions`` of the backbone's output pooled (``pooling`` "token": the class
    token's row; "gap": the mean over the sequence, both extra tokens included). The
    distillation token's row feeds no head, and the ``output_dropout`` it builds is
    never called (``dropout`` is checked, not applied); the image preprocessor noted."""
    _, outputs = f.backbone(config.get("backbone"), "DeiTBackbone", "DeiTImageClassifier")
    x = outputs["sequence_output"]
    pooling = f.require(config, "pooling", lambda v: v in ("token", "gap"), "'token' or 'gap'")
    if pooling == "token":
        x = f.op("GetItem", "get_item", x, [slice(None), 0])
    else:
        x = f.op("Mean", "mean", x, axis=[1], keepdims=False)
    f.require(config, "dropout", is_rate, "a rate in [0, 1)")
    _predictions(config, f, x, "DeiTImageClassifier")
