"""keras-multi-head's MultiHeadAttention and MultiHead wrapper, checked against the real
library. keras_multi_head only works with tf_keras, which it gets from ``tensorflow.keras``
when TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported; the test process has
imported Keras 3 already, so ONE subprocess (this file run as a script) builds every model,
randomizes and saves it (.h5 and tf_keras' .keras) and records inputs and Keras outputs
(.npz) at two batch sizes and two lengths. The test process converts each file at opset 23
and 17 and compares every output element with onnxruntime's."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import requires_keras  # noqa: E402
from keras_check import BATCHES, LENGTHS, assert_same, run_onnx  # noqa: E402
from tf_keras_subprocess import FORMATS, built_by, record, reference  # noqa: E402

pytestmark = requires_keras

OPSETS = (23, 17)
TOKENS = {"tokens": 20, "query_tokens": 20, "key_tokens": 20}

# ---------------------------------------------------------------------- models
# Built in the subprocess: ``k`` is tf_keras, ``kmh`` keras_multi_head.

CASES = {}


def case(build):
    CASES[build.__name__] = build
    return build


@case
def readme_attention(k, kmh):
    """The keras-multi-head README: MultiHeadAttention(head_num=3) on a (2, 3) input."""
    x = k.Input((2, 3), name="x")
    return k.Model(x, kmh.MultiHeadAttention(head_num=3, name="Multi-Head")(x))


@case
def attention_options(k, kmh):
    """Self attention, [q, k, v] with three feature sizes, history_only (causal, square
    and not), no bias, another activation."""
    MHA = kmh.MultiHeadAttention
    x, h = k.Input((None, 6), name="x"), k.Input((None, 4), name="h")
    q, key, v = (k.Input((None, 5), name="q"), k.Input((None, 7), name="k"),
                 k.Input((None, 6), name="v"))
    fixed_q = k.Input((3, 5), name="fixed_q")
    fixed_kv = k.Input((5, 6), name="fixed_kv")
    return k.Model([x, h, q, key, v, fixed_q, fixed_kv], [
        MHA(head_num=2, name="self")(x),
        MHA(head_num=3, name="qkv")([q, key, v]),
        MHA(head_num=2, history_only=True, use_bias=False, name="history")(h),
        MHA(head_num=3, activation="tanh", name="tanh")([q, key, v]),
        MHA(head_num=2, activation="linear", history_only=True, name="history_qkv")(
            [fixed_q, fixed_kv, fixed_kv]),
    ])


@case
def attention_masks(k, kmh):
    """Embedding(mask_zero=True) masks: one masked tensor, and [q, k, v] with masks of
    their own (only the key's masks the logits), with and without history_only."""
    MHA = kmh.MultiHeadAttention
    tokens = k.Input((None,), dtype="int32", name="tokens")
    query_tokens = k.Input((None,), dtype="int32", name="query_tokens")
    key_tokens = k.Input((None,), dtype="int32", name="key_tokens")
    embed = k.layers.Embedding(20, 6, mask_zero=True, name="embed")
    x, q, key = embed(tokens), embed(query_tokens), embed(key_tokens)
    return k.Model([tokens, query_tokens, key_tokens], [
        MHA(head_num=2, name="self")(x),
        MHA(head_num=3, history_only=True, name="history")(x),
        MHA(head_num=2, name="qkv")([q, key, key]),
    ])


@case
def multi_head_dense(k, kmh):
    """MultiHead around Dense: plain copies, and with a hidden_dim projection (with and
    without its bias; keras_multi_head builds the copies for the input's width, so
    hidden_dim must equal it), and a single copy."""
    x = k.Input((None, 4), name="x")
    MultiHead, Dense = kmh.MultiHead, k.layers.Dense
    return k.Model(x, [
        MultiHead(Dense(3, activation="tanh"), layer_num=3, name="copies")(x),
        MultiHead(Dense(2), layer_num=2, hidden_dim=4, name="hidden")(x),
        MultiHead(Dense(2, use_bias=False), layer_num=3, hidden_dim=4, use_bias=False,
                  name="hidden_no_bias")(x),
        MultiHead(Dense(5), layer_num=1, hidden_dim=4, name="single")(x),
    ])


@case
def multi_head_conv1d(k, kmh):
    x = k.Input((None, 4), name="x")
    MultiHead, Conv1D = kmh.MultiHead, k.layers.Conv1D
    return k.Model(x, [
        MultiHead(Conv1D(3, 2, padding="same"), layer_num=2, name="same")(x),
        MultiHead(Conv1D(2, 3, activation="relu"), layer_num=3, hidden_dim=4,
                  name="valid_hidden")(x),
    ])


@case
def readme_lstm(k, kmh):
    """The keras-multi-head README model, LSTM units shrunk from 64 to 8."""
    return k.Sequential([
        k.Input((None,), dtype="int32", name="tokens"),
        k.layers.Embedding(input_dim=100, output_dim=20, name="Embedding"),
        kmh.MultiHead(k.layers.LSTM(units=8), layer_num=3, name="Multi-LSTMs"),
        k.layers.Flatten(name="Flatten"),
        k.layers.Dense(units=4, activation="softmax", name="Dense"),
    ])


@case
def multi_head_masked_lstm(k, kmh):
    """Each copy gets the Embedding's mask (LSTM takes it); sequences returned."""
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.layers.Embedding(20, 6, mask_zero=True, name="embed")(tokens)
    lstm = k.layers.LSTM(4, return_sequences=True)
    return k.Model(tokens, kmh.MultiHead(lstm, layer_num=2, name="lstms")(x))


def build_all(folder: Path) -> None:
    """Every case built with the real keras_multi_head (in the tf_keras process)."""
    import keras_multi_head as kmh
    import tf_keras as k

    assert issubclass(kmh.MultiHeadAttention, k.layers.Layer), "TF_USE_LEGACY_KERAS unset?"
    record(folder, {name: (lambda k, build=build: build(k, kmh)) for name, build in CASES.items()},
           lambda name: TOKENS, BATCHES, LENGTHS)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Every case built by real keras-multi-head, in one subprocess."""
    return built_by(__file__, tmp_path_factory.mktemp("keras_multi_head"))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_multi_head_matches_keras(built, name, suffix, opset):
    from kerasonnx.convert import convert
    converted = convert(built / f"{name}.{suffix}", opset=opset).model
    assert "Einsum" not in {n.op_type for n in converted.graph.node}
    for cell, inputs, expected in reference(built, name):
        assert_same(expected, run_onnx(converted, inputs),
                    f"{name}.{suffix} opset {opset} {cell}")


@pytest.mark.parametrize("name, fused", [("readme_attention", True),
                                         ("attention_options", True),
                                         ("attention_masks", False)])
def test_attention_operator_without_key_mask(built, name, fused):
    """Opset 23 uses ONNX's Attention operator unless a key mask is present (its
    subtractions are then reproduced in Keras' order with MatMul / Softmax)."""
    from kerasonnx.convert import convert
    ops = {n.op_type for n in convert(built / f"{name}.h5", opset=23).model.graph.node}
    assert ("Attention" in ops) == fused
    assert "Attention" not in {n.op_type for n in
                               convert(built / f"{name}.h5", opset=17).model.graph.node}


def test_multi_head_around_an_unknown_layer_is_refused(built, tmp_path):
    import h5py
    from kerasonnx.convert import convert
    from kerasonnx.errors import ConversionError
    path = tmp_path / "mystery.h5"
    path.write_bytes((built / "multi_head_dense.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            for copy in layer["config"].get("layers", []):
                copy["class_name"] = "Mystery"
        f.attrs["model_config"] = json.dumps(config)
    # MultiHead is a composite layer: around an unknown class it stays one call, unconverted
    with pytest.raises(ConversionError, match=r"cannot be converted yet: copies \(MultiHead\)"):
        convert(path)


if __name__ == "__main__":
    build_all(Path(sys.argv[1]))
