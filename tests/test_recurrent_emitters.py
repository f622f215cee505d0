"""LSTM, GRU, SimpleRNN, Bidirectional and TimeDistributed: every case below built with real
Keras 3 and tf_keras (Keras 2), weights randomized, saved, converted at opset 23 and 17, run
in onnxruntime at batch 1 and 3 and two sequence lengths (the time dim is None), and every
output element compared with Keras.

Masked cases pad at the tail: row 1 loses its last two steps, row 2 is fully padded
(``keras_check.make_inputs``), so padded positions, fully padded sequences and the states
Keras carries over are all compared.
"""
from __future__ import annotations

import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from keras_check import Cases, check_conversion, keras_module, save

pytestmark = requires_keras

FEATURES = 5
VOCABULARY = 20


CASES = Cases()
case = CASES.register


def flat(outputs) -> list:
    """Layer results (a tensor or a list of them) as one list of model outputs."""
    items = []
    for output in outputs:
        items.extend(output if isinstance(output, (list, tuple)) else [output])
    return items


def float_sequences(k):
    return k.Input((None, FEATURES), name="x")


def token_sequences(k):
    """(tokens input, embedded sequences whose mask is tokens != 0)."""
    tokens = k.Input((None,), dtype="int32", name="tokens")
    return tokens, k.layers.Embedding(VOCABULARY, FEATURES, mask_zero=True)(tokens)


def masked_sequences(k):
    """(input, sequences masked by Masking where every feature is 0)."""
    x = float_sequences(k)
    return x, k.layers.Masking(mask_value=0.0)(x)


def every_option(k, sequences) -> list:
    """LSTM, GRU (reset_after True and False) and SimpleRNN, each returning the last output,
    every output, the states, going backwards."""
    L = k.layers
    return flat([
        L.LSTM(4)(sequences),
        L.LSTM(4, return_sequences=True, return_state=True)(sequences),
        L.LSTM(3, go_backwards=True, return_sequences=True, return_state=True)(sequences),
        L.LSTM(3, go_backwards=True)(sequences),
        L.GRU(4, return_sequences=True, return_state=True)(sequences),
        L.GRU(3, go_backwards=True)(sequences),
        L.GRU(4, reset_after=False, return_sequences=True, return_state=True)(sequences),
        L.GRU(3, reset_after=False, go_backwards=True, return_sequences=True)(sequences),
        L.SimpleRNN(4, return_sequences=True, return_state=True)(sequences),
        L.SimpleRNN(3, go_backwards=True, return_sequences=True)(sequences),
        L.SimpleRNN(3)(sequences),
    ])


# ---------------------------------------------------------------------- single direction


@case()
def rnn_options(k):
    x = float_sequences(k)
    return k.Model(x, every_option(k, x))


@case(tokens={"tokens": VOCABULARY})
def rnn_options_embedding_mask(k):
    tokens, x = token_sequences(k)
    return k.Model(tokens, every_option(k, x))


@case(padded=("x",))
def rnn_options_masking(k):
    x, masked = masked_sequences(k)
    return k.Model(x, every_option(k, masked))


@case(padded=("x",))
def zero_output_for_mask(k):
    """The output at a padded step is zero instead of the previous output."""
    x, masked = masked_sequences(k)
    L = k.layers
    return k.Model(x, [L.LSTM(3, return_sequences=True, zero_output_for_mask=True)(masked),
                       L.GRU(3, zero_output_for_mask=True)(masked),
                       L.SimpleRNN(3, go_backwards=True, zero_output_for_mask=True)(masked)])


@case(tokens={"tokens": VOCABULARY})
def stacked_masked(k):
    """The mask passes through return_sequences layers to the next one."""
    tokens, x = token_sequences(k)
    L = k.layers
    y = L.LSTM(4, return_sequences=True)(x)
    y = L.GRU(3, return_sequences=True, go_backwards=True)(y)
    return k.Model(tokens, [y, L.SimpleRNN(2)(y)])


@case(padded=("x",))
def activations(k):
    """Non-default activations that ONNX's operators compute exactly (hard_sigmoid differs
    between Keras 2, 0.2 x + 0.5, and Keras 3, x / 6 + 0.5)."""
    x, masked = masked_sequences(k)
    L = k.layers
    return k.Model(x, [
        L.LSTM(3, activation="relu", recurrent_activation="hard_sigmoid",
               return_sequences=True)(masked),
        L.GRU(3, activation="softsign", recurrent_activation="hard_sigmoid",
              return_sequences=True)(masked),
        L.GRU(3, activation="elu", recurrent_activation="sigmoid", reset_after=False)(masked),
        L.LSTM(3, activation="softplus", recurrent_activation="hard_sigmoid")(masked),
        L.SimpleRNN(3, activation="linear", return_sequences=True)(masked),
        L.SimpleRNN(3, activation="relu", go_backwards=True)(masked),
    ])


@case()
def no_bias(k):
    x = float_sequences(k)
    L = k.layers
    return k.Model(x, [L.LSTM(3, use_bias=False, return_sequences=True)(x),
                       L.GRU(3, use_bias=False)(x),
                       L.GRU(3, use_bias=False, reset_after=False)(x),
                       L.SimpleRNN(3, use_bias=False)(x)])


@case(tokens={"tokens": VOCABULARY})
def initial_states(k):
    """States passed in (an encoder-decoder's decoder); a fully padded row keeps them.
    Keras 2 applies the sequences' mask; Keras 3 does not when states are passed (it hands
    a layer its input's mask only for a single tensor argument) unless given explicitly."""
    tokens, x = token_sequences(k)
    h, c = k.Input((4,), name="h"), k.Input((4,), name="c")
    L = k.layers
    plain = k.Input((None, FEATURES), name="plain")
    outputs = [
        L.LSTM(4, return_sequences=True, return_state=True)(x, initial_state=[h, c]),
        L.GRU(4, go_backwards=True, return_state=True)(x, initial_state=h),
        L.SimpleRNN(4, return_sequences=True)(plain, initial_state=[h]),
        L.Bidirectional(L.LSTM(4, return_state=True))(x, initial_state=[h, c, c, h]),
    ]
    if hasattr(k, "ops"):  # Keras 3
        outputs.append(L.LSTM(4, return_sequences=True, return_state=True)(
            x, initial_state=[h, c], mask=k.ops.not_equal(tokens, 0)))
    return k.Model([tokens, h, c, plain], flat(outputs))


# ---------------------------------------------------------------------- Bidirectional


def masked_bidirectionals(k, sequences) -> list:
    """Each cell, returning sequences or not, with states, merged in a few ways; with
    merge_mode None both outputs carry the mask (a GRU reads the second one's)."""
    L = k.layers
    forward, backward = L.Bidirectional(L.SimpleRNN(2, return_sequences=True),
                                        merge_mode=None)(sequences)
    return flat([
        L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True))(sequences),
        L.Bidirectional(L.LSTM(3), merge_mode="ave")(sequences),
        L.Bidirectional(L.GRU(3, return_state=True), merge_mode=None)(sequences),
        L.Bidirectional(L.GRU(2, return_sequences=True, reset_after=False),
                        merge_mode="mul")(sequences),
        forward, backward, L.GRU(2)(backward),
    ])


@case()
def bidirectional_merges(k):
    """Every merge mode on sequences; last outputs with states (GRU, SimpleRNN)."""
    x = float_sequences(k)
    L = k.layers
    return k.Model(x, flat(
        [L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=mode)(x)
         for mode in ("concat", "sum", "mul", "ave", None)]
        + [L.Bidirectional(L.GRU(3, return_state=True), merge_mode="sum")(x),
           L.Bidirectional(L.SimpleRNN(2, return_state=True), merge_mode=None)(x)]))


@case(tokens={"tokens": VOCABULARY})
def bidirectional_embedding_mask(k):
    tokens, x = token_sequences(k)
    return k.Model(tokens, masked_bidirectionals(k, x))


@case(padded=("x",))
def bidirectional_masking(k):
    x, masked = masked_sequences(k)
    return k.Model(x, masked_bidirectionals(k, masked))


@case()
def bidirectional_backward_layer(k):
    """A given backward layer (its own activations) with states, and a second
    Bidirectional on the first one's sequences."""
    x = float_sequences(k)
    L = k.layers
    forward = L.LSTM(3, return_sequences=True, return_state=True)
    backward = L.LSTM(3, return_sequences=True, return_state=True, go_backwards=True,
                      activation="relu", recurrent_activation="hard_sigmoid")
    y, *states = L.Bidirectional(forward, backward_layer=backward)(x)
    return k.Model(x, [y, *states, L.Bidirectional(L.GRU(2), merge_mode="mul")(y)])


# ---------------------------------------------------------------------- TimeDistributed


@case()
def time_distributed(k):
    x = float_sequences(k)
    L = k.layers
    frames = k.Input((None, 6, 2), name="frames")
    return k.Model([x, frames], [
        L.TimeDistributed(L.Dense(3))(x),
        L.TimeDistributed(L.Dense(2, activation="relu", use_bias=False))(x),
        L.TimeDistributed(L.Conv1D(3, 2))(frames),
        L.TimeDistributed(L.Conv1D(2, 3, padding="same", activation="tanh"))(frames),
        L.TimeDistributed(L.LSTM(3, return_sequences=True))(frames),
        L.TimeDistributed(L.GRU(2))(frames),
    ])


# ---------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Build each (case, dialect) model once: (Keras model, saved file)."""
    return CASES.cache(tmp_path_factory.mktemp("recurrent_models"))


@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
@pytest.mark.parametrize("name", sorted(CASES))
def test_recurrent_matches_keras(saved_models, name, dialect):
    model, path = saved_models(name, dialect)
    check_conversion(model, path, **CASES[name].check)


@pytest.mark.parametrize("name, dialect", [("bidirectional_backward_layer", "keras3"),
                                           ("bidirectional_backward_layer", "keras2"),
                                           ("time_distributed", "keras3"),
                                           ("time_distributed", "keras2")])
def test_other_file_layout(saved_models, tmp_path, name, dialect):
    """Keras 3 writing legacy .h5 (weights named after layers) and tf_keras writing .keras
    (saving_lib paths) locate the same weights."""
    model, _ = saved_models(name, dialect)
    path = tmp_path / f"{name}.{'h5' if dialect == 'keras3' else 'keras'}"
    model.save(path)
    check_conversion(model, path, **CASES[name].check, batches=(3,), lengths=(5,))


def test_recurrences_are_onnx_operators(saved_models):
    _, path = saved_models("bidirectional_merges", "keras3")
    ops = {n.op_type for n in convert(path).model.graph.node}
    assert {"LSTM", "GRU", "RNN"} <= ops
    assert not ops & {"Loop", "Scan", "Einsum"}


@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
@pytest.mark.parametrize("option, activation", [("activation", "selu"),
                                                ("recurrent_activation", "exponential")])
def test_inexact_activation_refused(tmp_path, dialect, option, activation):
    k = keras_module(dialect)
    x = k.Input((None, FEATURES))
    model = k.Model(x, k.layers.GRU(2, **{option: activation})(x))
    path = save(model, dialect, tmp_path, "refused")
    with pytest.raises(ConversionError, match=f"{option} '{activation}' of GRU"):
        convert(path)


def test_stateful_refused(tmp_path):
    k = keras_module("keras3")
    x = k.Input((None, FEATURES), batch_size=2)
    path = save(k.Model(x, k.layers.LSTM(2, stateful=True)(x)), "keras3", tmp_path, "stateful")
    with pytest.raises(ConversionError, match="stateful=True not supported"):
        convert(path)
