"""Dtype policies and --precision, against real Keras 3 and tf_keras: models built under
mixed_float16 and mixed_bfloat16 (a transformer encoder block with a padding mask, a causal
block returning its scores, normalizations fed half and float32 values), converted at opset
23 and 17, run in onnxruntime at batch 1 and 3 and two lengths, every output compared with
Keras at the tolerance of the dtype Keras computes in (``TOLERANCES``: half types cannot be
bit-exact across two runtimes whose kernels round at different points; one float16 ulp is
2^-10 relative, and a few of them surface after a dozen rounded layers); plus
``--precision float32`` on a mixed model and ``--precision float16`` on a float32 one."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from conftest import FIXTURES, fixture_cells, requires_keras
from kerasonnx.convert import convert
from kerasonnx.emit.precision import TOLERANCES
from keras_check import (Cases, VOCAB, assert_same, check_conversion, masked_inputs,
                         run_onnx)

pytestmark = requires_keras

CASES = Cases()
POLICIES = ("mixed_float16", "mixed_bfloat16")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return CASES.cache(tmp_path_factory.mktemp("precision_models"))


def _policy_cases(*dialects):
    """Register ``build(k, policy)`` once per mixed policy and once in float32."""
    def register(build):
        for policy in POLICIES + ("float32",):
            def bound(k, policy=policy):
                return build(k, policy)
            bound.__name__ = f"{build.__name__}_{policy}"
            CASES.register(*dialects, **MASKED_IDS)(bound)
        return build
    return register


MASKED_IDS = {"inputs": masked_inputs, "batches": (1, 3), "lengths": (4, 7), "seed": 5}


@_policy_cases("keras3")
def encoder(k, policy):
    """Embedding with padding, self-attention (Keras' fused path), residuals,
    LayerNormalization, a GELU feed-forward, and the float32 head mixed precision asks for;
    the block's half output is a model output too."""
    L = k.layers
    ids = k.Input((None,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 16, mask_zero=True, dtype=policy)(ids)
    x = L.LayerNormalization(dtype=policy)(x + L.MultiHeadAttention(2, 8, dtype=policy)(x, x))
    ff = L.Dense(16, dtype=policy)(L.Dense(32, activation="gelu", dtype=policy)(x))
    x = L.LayerNormalization(epsilon=1e-6, dtype=policy)(x + ff)
    head = L.Activation("softmax", dtype="float32")(L.Dense(5, dtype="float32")(x))
    return k.Model(ids, [head, x])


@_policy_cases("keras2")
def keras2_encoder(k, policy):
    """tf_keras: the same block with Add layers, a BatchNormalization and the float32 head;
    Keras 2 masks the logits with -65504 + logit in float16."""
    L = k.layers
    ids = k.Input((None,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 16, mask_zero=True, dtype=policy)(ids)
    x = L.LayerNormalization(dtype=policy)(
        L.Add(dtype=policy)([x, L.MultiHeadAttention(2, 8, dtype=policy)(x, x)]))
    ff = L.Dense(16, dtype=policy)(L.Dense(32, activation="gelu", dtype=policy)(x))
    x = L.LayerNormalization(epsilon=1e-6, dtype=policy)(L.Add(dtype=policy)([x, ff]))
    x = L.BatchNormalization(dtype=policy)(x)
    head = L.Activation("softmax", dtype="float32")(L.Dense(5, dtype="float32")(x))
    return k.Model(ids, [head, x])


@_policy_cases("keras3")
def causal_scores(k, policy):
    """Causal self-attention returning its scores (Keras' explicit, half-precision softmax),
    BatchNormalization and a float32-policy LayerNormalization fed half values."""
    L = k.layers
    x_in = k.Input((None, 8), name="x")
    x = L.Dense(8, dtype=policy)(x_in)
    attended, scores = L.MultiHeadAttention(2, 4, dtype=policy)(
        x, x, use_causal_mask=True, return_attention_scores=True)
    x = L.BatchNormalization(dtype=policy)(attended)
    x = L.LayerNormalization(dtype="float32")(x)
    x = L.Dense(8, activation="relu", dtype=policy)(x)
    return k.Model(x_in, [x, scores])


@_policy_cases("keras3")
def padded_scores(k, policy):
    """Padding masks on Keras' explicit MultiHeadAttention path (scores returned: a half
    softmax, masked with -3e4, fully masked rows zeroed) and on the Attention layer (which
    subtracts 65504 in float16)."""
    L = k.layers
    ids = k.Input((None,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 8, mask_zero=True, dtype=policy)(ids)
    attended, scores = L.MultiHeadAttention(2, 4, dtype=policy)(x, x,
                                                                return_attention_scores=True)
    dotted = L.Attention(dtype=policy)([x, x])
    return k.Model(ids, [L.Dense(4, dtype="float32")(attended + dotted), scores])


@_policy_cases("keras3", "keras2")
def recurrent(k, policy):
    """A bidirectional LSTM and a GRU in half (ONNX LSTM/GRU on half values)."""
    L = k.layers
    x_in = k.Input((None, 8), name="x")
    x = L.Bidirectional(L.LSTM(8, return_sequences=True, dtype=policy), dtype=policy)(x_in)
    return k.Model(x_in, L.Dense(4, dtype="float32")(L.GRU(8, dtype=policy)(x)))


def _tolerance(policy: str) -> dict:
    atol, rtol = TOLERANCES[policy.removeprefix("mixed_")]
    return {"atol": atol, "rtol": rtol}


@pytest.mark.parametrize("name, dialect", [("encoder", "keras3"), ("causal_scores", "keras3"),
                                           ("padded_scores", "keras3"),
                                           ("keras2_encoder", "keras2"),
                                           ("recurrent", "keras3"), ("recurrent", "keras2")])
@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_policy_matches_keras(saved, name, dialect, policy):
    model, path = saved(f"{name}_{policy}", dialect)
    if policy == "mixed_bfloat16":  # bfloat16 outputs are float32 in ONNX (exactly)
        model = _as_float32(model)
    check_conversion(model, path, **CASES[f"{name}_{policy}"].check, **_tolerance(policy))


@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_graph_computes_in_half(saved, policy):
    """The weights are stored in the compute dtype where onnxruntime has kernels for it;
    the float32 head and the normalizations stay float32; outputs keep Keras' dtypes."""
    half = TensorProto.FLOAT16 if policy == "mixed_float16" else TensorProto.BFLOAT16
    model = convert(saved(f"encoder_{policy}", "keras3")[1], opset=17).model
    outputs = [o.type.tensor_type.elem_type for o in model.graph.output]
    # onnxruntime's Python API cannot return bfloat16: such outputs are float32 (exact)
    assert outputs == [TensorProto.FLOAT, TensorProto.FLOAT16 if policy == "mixed_float16"
                       else TensorProto.FLOAT]
    by_name = {i.name: i.data_type for i in model.graph.initializer}
    assert half in by_name.values()
    layer_norm = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
    assert by_name[layer_norm.input[1]] == TensorProto.FLOAT  # gamma, as Keras keeps it
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert casts, "Keras casts at layer boundaries"


@pytest.mark.parametrize("policy", POLICIES)
def test_float32_precision_of_a_mixed_model(saved, policy):
    """--precision float32: no half value anywhere, compared with Keras' half numbers at
    the half tolerance."""
    model, path = saved(f"encoder_{policy}", "keras3")
    for opset in (23, 17):
        assert not _half_types(convert(path, opset=opset, precision="float32").model)
    check = dict(CASES[f"encoder_{policy}"].check)
    # Keras' outputs are half: compare in float32 after casting them.
    check_conversion(_as_float32(model), path, precision="float32", **check,
                     **_tolerance(policy))


def test_float16_precision_of_a_float32_model(saved):
    """--precision float16: half weights and compute, float32 LayerNormalization and
    softmax, float32 inputs and outputs, within the float16 tolerance of float32 Keras."""
    for name in ("encoder", "causal_scores"):
        model, path = saved(f"{name}_float32", "keras3")
        converted = convert(path, opset=17, precision="float16").model
        graph = converted.graph
        assert {o.type.tensor_type.elem_type for o in graph.output} == {TensorProto.FLOAT}
        assert TensorProto.FLOAT16 in _half_types(converted)
        types = _types(converted)
        kept = [n for n in graph.node if n.op_type in ("Softmax", "LayerNormalization")]
        assert kept and all(types[n.input[0]] == TensorProto.FLOAT for n in kept)
        check_conversion(model, path, precision="float16", **CASES[f"{name}_float32"].check,
                         **_tolerance("float16"))


def test_unknown_precision_is_refused(saved):
    from kerasonnx import ConversionError
    with pytest.raises(ConversionError, match="precision 'half'.*float16"):
        convert(saved("encoder_float32", "keras3")[1], precision="half")


# ---------------------------------------------------------------------- helpers


def _as_float32(model):
    """The Keras model whose outputs are cast to float32 (what a float32 graph outputs)."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras
        return tf_keras.Model(model.inputs, [tf_keras.layers.Activation(
            "linear", dtype="float32", name=f"as_float32_{i}")(o)
            for i, o in enumerate(model.outputs)])
    import keras
    return keras.Model(model.inputs, [keras.ops.cast(o, "float32") for o in model.outputs])


def _types(model) -> dict:
    """Element type of every value and initializer of the model."""
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


def _half_types(model) -> set:
    return set(_types(model).values()) & {TensorProto.FLOAT16, TensorProto.BFLOAT16}


# ---------------------------------------------------------------------- verify


def test_verify_compares_at_the_tolerance_of_the_compute_dtype(saved, tmp_path):
    """verify takes its default tolerance from the least precise dtype either side computes
    in, and its report says which precision it compared."""
    import kerasonnx
    path = saved("encoder_mixed_float16", "keras3")[1]
    report = kerasonnx.verify(path, convert(path).model, batches=(2,), lengths=(5,))
    assert report.passed, report.summary()
    assert (report.atol, report.rtol) == TOLERANCES["float16"]
    assert report.precision == {"mode": "keras", "graph": ["float16", "float32"],
                                "keras": ["float16", "float32"], "tolerance_for": "float16"}
    assert "float16/float32 graph against Keras' float16/float32; the float16 default" in \
        report.summary()


def test_cli_float32_precision_then_verify(saved, tmp_path):
    from click.testing import CliRunner
    from kerasonnx.cli import main
    path = saved("encoder_mixed_bfloat16", "keras3")[1]
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "m.onnx"),
                                       "--precision", "float32", "--verify", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "float32 precision" in result.output
    assert ("float32 graph against Keras' bfloat16/float32; the bfloat16 default"
            in result.output)


# ---------------------------------------------------------------------- committed fixtures


@pytest.mark.parametrize("entry, fmt, path, weights", [
    cell for cell in fixture_cells() if cell.values[1] != "json"])
def test_float16_precision_of_every_fixture(entry, fmt, path, weights):
    """Every committed model (both dialects, every emitter family they use) converted with
    --precision float16 matches the Keras float32 outputs recorded with it, at the float16
    tolerance; no TensorFlow needed."""
    reference = np.load(FIXTURES / entry["npz"])
    inputs = [reference[f"input/{t['name']}"] for t in entry["inputs"]]
    atol, rtol = TOLERANCES["float16"]
    for opset in (23, 17):
        model = convert(path, weights, opset=opset, precision="float16").model
        names = [o.name for o in model.graph.output]
        actual = run_onnx(model, inputs)
        expected = [reference[f"output/{name}"] for name in names]
        assert_same(expected, actual, f"{entry['name']} {fmt} opset {opset}", atol, rtol)
