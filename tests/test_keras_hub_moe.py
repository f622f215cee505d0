"""KerasHub's sparse mixture-of-experts backbones and causal LMs, Mixtral and Qwen 3 MoE
(Keras 3 only), rebuilt from their constructor config: tiny configs (4 experts, top 2)
built with real keras_hub 0.32, weights randomized (no exact ties between router
probabilities), saved as ``.keras``, converted at opset 23 and 17, run in onnxruntime at
batch 1 and 3 and two sequence lengths on padded token ids, every output compared with
keras_hub's by name."""
from __future__ import annotations

import numpy as np
import pytest

from keras_check import randomize, run_onnx
from keras_hub_model_check import (OPSETS, VOCABULARY, assert_config_error, check_by_name,
                                   requires_keras_hub, resaved, saved_models_fixture,
                                   token_inputs)

from kerasonnx.convert import convert

pytestmark = requires_keras_hub

MIXTRAL = {"vocabulary_size": VOCABULARY, "num_layers": 2, "num_query_heads": 4,
           "num_key_value_heads": 2, "hidden_dim": 8, "intermediate_dim": 12,
           "num_experts": 4, "top_k": 2, "rope_max_wavelength": 500}
QWEN3_MOE = {"vocabulary_size": VOCABULARY, "num_query_heads": 4, "num_key_value_heads": 2,
             "hidden_dim": 8, "intermediate_dim": 16, "moe_intermediate_dim": 6,
             "num_experts": 4, "top_k": 2, "rope_max_wavelength": 500}


def mixtral_backbone(keras_hub):
    """A sliding window (3) shorter than both test lengths, rotary scaling."""
    return keras_hub.models.MixtralBackbone(**MIXTRAL, sliding_window=3,
                                            rope_scaling_factor=2.0)


def mixtral_causal_lm(keras_hub):
    """No sliding window, the training-only router keys set."""
    backbone = keras_hub.models.MixtralBackbone(**MIXTRAL, sliding_window=None,
                                                router_jitter_noise=0.1,
                                                router_aux_loss_coef=0.5)
    return keras_hub.models.MixtralCausalLM(backbone, preprocessor=None)


def qwen3_moe_backbone(keras_hub):
    """Three blocks: 0 dense (mlp_only_layers), 1 sparse, 2 dense (decoder_sparse_step 2);
    the top-k renormalised, a head_dim of its own, a sliding window of 3."""
    return keras_hub.models.Qwen3MoeBackbone(**QWEN3_MOE, num_layers=3, head_dim=6,
                                             norm_top_k_prob=True, decoder_sparse_step=2,
                                             mlp_only_layers=[0], sliding_window_size=3)


def qwen3_moe_causal_lm(keras_hub):
    """Every block sparse, the top-k not renormalised (keras_hub's default), head_dim
    null, a tied embedding."""
    backbone = keras_hub.models.Qwen3MoeBackbone(**QWEN3_MOE, num_layers=2,
                                                 tie_word_embeddings=True)
    return keras_hub.models.Qwen3MoeCausalLM(backbone, preprocessor=None)


MODELS = {"mixtral_backbone": mixtral_backbone, "mixtral_causal_lm": mixtral_causal_lm,
          "qwen3_moe_backbone": qwen3_moe_backbone,
          "qwen3_moe_causal_lm": qwen3_moe_causal_lm}


saved_models = saved_models_fixture("keras_hub_moe", MODELS)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_moe_matches_keras_hub(saved_models, name, opset):
    model, path = saved_models(name)
    check_by_name(model, path, opset)


def _differs_from_keras(model, path) -> float:
    """The largest difference between keras_hub and the converted ``path`` on padded
    inputs (batch 3, length 9)."""
    arrays = token_inputs(model, 3, 9, np.random.default_rng(5))
    onnx_model = convert(path).model
    names = [i.name for i in onnx_model.graph.input]
    actual = run_onnx(onnx_model, [arrays[n] for n in names])[0]
    return float(np.max(np.abs(np.asarray(model(arrays, training=False)) - actual)))


def test_dropping_the_renormalisation_would_be_noticed(saved_models, tmp_path):
    """The Qwen 3 MoE backbone renormalises its top-k: converted as if it did not
    (norm_top_k_prob false in a copy of its config), its output is far from keras_hub's,
    so the comparison above checks the renormalisation."""
    model, path = saved_models("qwen3_moe_backbone")
    unnormalised = resaved(path, tmp_path, lambda c: c["config"].update(norm_top_k_prob=False))
    assert _differs_from_keras(model, unnormalised) > 1e-2
    assert _differs_from_keras(model, path) < 1e-5


def test_top_k_ties_go_to_the_lower_expert(tmp_path):
    """With zero routers every expert ties; keras_hub's ops.top_k picks the lower
    indices, and so does the ONNX TopK (distinct experts: another pick would show)."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(7)
    model = keras_hub.models.MixtralBackbone(**MIXTRAL, sliding_window=None)
    randomize(model)
    for weight in model.weights:
        if "sparse_feedforward_gate_dense" in weight.path:
            weight.assign(np.zeros(weight.shape, "float32"))
    path = tmp_path / "tied_router.keras"
    model.save(path)
    check_by_name(model, path, 23)


@pytest.mark.parametrize("name, change, message", [
    ("mixtral_backbone", lambda c: c.update(top_k=5),
     "MixtralBackbone config key 'top_k' (5) is above num_experts (4)"),
    ("mixtral_backbone", lambda c: c.update(num_experts=0),
     "MixtralBackbone config key 'num_experts' is 0"),
    ("mixtral_backbone", lambda c: c.update(sliding_window=0),
     "config key 'sliding_window' is 0"),
    ("mixtral_backbone", lambda c: c.update(router_jitter_noise="x"),
     "config key 'router_jitter_noise' is 'x'"),
    ("mixtral_backbone", lambda c: c.update(output_router_logits=True),
     "MixtralBackbone config key 'output_router_logits' is not one"),
    ("qwen3_moe_backbone", lambda c: c.update(norm_top_k_prob=1),
     "Qwen3MoeBackbone config key 'norm_top_k_prob' is 1"),
    ("qwen3_moe_backbone", lambda c: c.update(mlp_only_layers="0"),
     "config key 'mlp_only_layers' is '0'"),
    ("qwen3_moe_backbone", lambda c: c.update(decoder_sparse_step=0),
     "config key 'decoder_sparse_step' is 0"),
    ("qwen3_moe_backbone", lambda c: c.pop("moe_intermediate_dim"),
     "Qwen3MoeBackbone config has no 'moe_intermediate_dim'"),
    ("qwen3_moe_backbone", lambda c: c.update(router_aux_loss_coefficient=None),
     "config key 'router_aux_loss_coefficient' is None"),
])
def test_moe_config_outside_the_contract_is_one_line_error(saved_models, tmp_path, name,
                                                            change, message):
    _, path = saved_models(name)
    assert_config_error(path, tmp_path, lambda config: change(config["config"]), message)
