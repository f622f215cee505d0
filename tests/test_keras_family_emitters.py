"""The keras-multi-head family (keras-self-attention, keras-pos-embd,
keras-layer-normalization, keras-position-wise-feed-forward, keras-embed-sim, keras-bert,
keras-transformer) checked against the real packages on tf_keras: ONE subprocess (this
file run as a script, with TF_USE_LEGACY_KERAS=1) builds every model of
tests/keras_family_cases.py, saves it as .h5 and tf_keras' .keras and records Keras'
outputs at batch 1 and 3 and two lengths; the test process converts each file at opsets
23 and 17 and compares every element with onnxruntime's."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import requires_keras  # noqa: E402
from keras_check import BATCHES, LENGTHS, OPSETS, assert_same, run_onnx  # noqa: E402
from keras_family_cases import CASES, build_all  # noqa: E402
from tf_keras_subprocess import FORMATS, built_by, reference  # noqa: E402

pytestmark = requires_keras


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return built_by(__file__, tmp_path_factory.mktemp("keras_family"))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_family_matches_keras(built, name, suffix, opset):
    from kerasonnx.convert import convert
    converted = convert(built / f"{name}.{suffix}", opset=opset).model
    assert "Einsum" not in {n.op_type for n in converted.graph.node}
    for cell, inputs, expected in reference(built, name):
        assert_same(expected, run_onnx(converted, inputs), f"{name}.{suffix} opset {opset} "
                                                             f"{cell}")


@pytest.mark.parametrize("class_name, module, config, family", [
    ("LayerNormalization", "keras_layer_normalization.layer_normalization", {"axis": -1},
     "keras_transformer"),
    ("LayerNormalization", "keras.layers", {}, "normalization"),
    ("LayerNormalization", "", {"epsilon": 1e-14, "center": True}, "keras_transformer"),
    ("LayerNormalization", "", {"axis": -1, "epsilon": 1e-3}, "normalization"),
    ("PositionEmbedding", "keras_pos_embd.pos_embd", {}, "keras_transformer"),
    ("PositionEmbedding", "", {"input_dim": 8, "output_dim": 4, "mode": "add"},
     "keras_transformer"),
    ("PositionEmbedding", "keras_hub.src.layers", {"mode": "add", "input_dim": 8},
     "keras_hub"),
    ("PositionEmbedding", "", {"sequence_length": 8}, None),
    ("MultiHeadAttention", "keras_multi_head.multi_head_attention", {}, "keras_multi_head"),
    ("MultiHeadAttention", "", {"head_num": 2}, "keras_multi_head"),
    ("MultiHeadAttention", "", {"num_heads": 2, "key_dim": 4}, "attention"),
    ("MultiHeadAttention", "keras.layers", {"num_heads": 2, "key_dim": 4}, "attention"),
])
def test_shared_class_names_told_apart(class_name, module, config, family):
    """By the module a .keras file records, else (legacy .h5, JSON) by config keys."""
    from kerasonnx.layers import kind_for
    kind = kind_for(class_name, module, config)
    assert (kind and kind.family) == family


def test_gelu_is_keras_transformers_in_its_models(built):
    """'gelu' in a keras-bert model is keras_transformer's tanh approximation (Keras' exact
    gelu would put the MLM head ~1e-3 off, which the comparison above would catch)."""
    from kerasonnx.model import load
    with load(built / "bert_pretraining.h5") as graph:
        activation = graph.layers["MLM-Dense"].config["activation"]
    assert activation["module"] == "keras_transformer.gelu"


if __name__ == "__main__":
    build_all(Path(sys.argv[1]), BATCHES, LENGTHS)
