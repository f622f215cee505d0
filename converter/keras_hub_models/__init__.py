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

The package: ``builder`` writes the Functional config and holds the registry and the
checks every model shares; ``encoders`` (BERT-style text encoders), ``decoders`` (causal
language-model backbones), ``vision`` (image backbones) and ``tasks`` (task models over
those backbones) register one build function per keras_hub class; ``qwen`` holds the newest
Qwen backbones, ``phi3`` the Phi-3 backbone, ``gemma3`` Gemma 3's, ``moe`` the
mixture-of-experts ones (Mixtral, Qwen 3 MoE).
"""
from . import decoders, encoders, gemma3, moe, phi3, qwen, tasks, vision  # noqa: F401  (they register)
from .builder import functional_config, supported_models

__all__ = ["functional_config", "supported_models"]
