"""keras_hub's task models: a backbone and its task head."""
from __future__ import annotations

from typing import Optional

from ..errors import ModelConfigError
from .builder import (Functional, keras_hub_model, is_positive_int, is_rate, Tensor)


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
              "QwenCausalLM": "QwenBackbone", "GemmaCausalLM": "GemmaBackbone"}
for _task, _backbone in CAUSAL_LMS.items():
    keras_hub_model(_task, TASK_KEYS)(
        lambda config, f, backbone=_backbone, task=_task:
        _causal_lm(config, f, backbone, task))
del _task, _backbone


# ---------------------------------------------------------------------- image classifiers


VIT_CLASSIFIER_KEYS = TASK_KEYS | {"num_classes", "pooling", "intermediate_dim", "activation",
                                   "dropout"}


@keras_hub_model("ViTImageClassifier", VIT_CLASSIFIER_KEYS)
def vit_image_classifier(config: dict, f: Functional) -> None:
    """keras_hub's ViTImageClassifier: the backbone's output pooled (``pooling`` "token":
    the class token's row; "gap": the mean over the sequence), Dense(intermediate_dim,
    tanh) ``pre_logits`` when ``intermediate_dim`` is set, Dropout ``output_dropout``,
    Dense(num_classes, activation) ``predictions``; the image preprocessor noted."""
    _, outputs = f.backbone(config.get("backbone"), "ViTBackbone", "ViTImageClassifier")
    x = outputs["sequence_output"]
    pooling = config.get("pooling", "token")
    if pooling == "token":
        x = f.op("GetItem", "get_item", x, [slice(None), 0])
    elif pooling == "gap":
        x = f.op("Mean", "mean", x, axis=[1], keepdims=False)
    else:
        raise ModelConfigError(f"{f.source}: ViTImageClassifier config key 'pooling' is "
                               f"{pooling!r}; kerasonnx rebuilds it for 'token' or 'gap'")
    intermediate = config.get("intermediate_dim")
    if intermediate is not None:
        if not is_positive_int(intermediate):
            raise ModelConfigError(f"{f.source}: ViTImageClassifier config key "
                                   f"'intermediate_dim' is {intermediate!r}; kerasonnx "
                                   f"rebuilds it for a positive int or null")
        x = f.layer("Dense", "pre_logits", {"units": intermediate, "activation": "tanh",
                                            "use_bias": True}, x)
    x = f.layer("Dropout", "output_dropout",
                {"rate": f.require(config, "dropout", is_rate, "a rate in [0, 1)")}, x)
    classes = f.require(config, "num_classes", is_positive_int, "a positive int")
    f.outputs.update(predictions=f.layer("Dense", "predictions",
                                         {"units": classes,
                                          "activation": config.get("activation"),
                                          "use_bias": True}, x))
    f.preprocessor(config.get("preprocessor"), "ViTImageClassifier",
                   "image converter: resizing, rescaling")
