"""Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate and Dot, and the masks
merges compute: each case built with real Keras 3 and tf_keras (Keras 2), weights
randomized, saved, converted at opset 23 and 17 and compared with Keras on every output.

Masked cases feed two token inputs with DIFFERENT random padding to Embedding(mask_zero),
so AND (Keras 2) and OR (Keras 3) masks differ, and read the merged mask back through
layers that use it: MultiHeadAttention (its query/value masks are the mask the merge
emitter computes) and GlobalAveragePooling1D (in Keras 3 it gets a mask Keras recomputes
with ops nodes, converted by the operations emitters).
"""
from __future__ import annotations

import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from keras_check import (DIALECTS, MASKED, VOCAB, Cases, check_conversion, float_inputs,
                         is_keras2, keras_module, save)

pytestmark = requires_keras

# ---------------------------------------------------------------------- cases

CASES = Cases()
case = CASES.register


@case()
def elementwise(k):
    # 3 features, not a test length: Keras 3's TF add takes a (1, T, 1) operand for a bias
    # over the features when T equals their number (a Keras bug, not reproduced).
    a, b, c = float_inputs(k, (None, 3), (None, 3), (None, 1))
    layers = k.layers
    return k.Model([a, b, c], [
        layers.Add()([a, b]), layers.Add()([a, b, c]), layers.Subtract()([a, b]),
        layers.Multiply()([a, b, c]), layers.Average()([a, b]), layers.Average()([a, b, c]),
        layers.Maximum()([a, b, c]), layers.Minimum()([a, c]), layers.Minimum()([a, b, c])])


@case()
def elementwise_lower_rank(k):
    """A (B, 4) input meets a (B, T, 4) one: Keras gives it an axis after the batch."""
    sequence, vector = float_inputs(k, (None, 4), (4,))
    layers = k.layers
    return k.Model([sequence, vector], [layers.Add()([sequence, vector]),
                                        layers.Subtract()([vector, sequence]),
                                        layers.Maximum()([vector, sequence])])


@case()
def concatenate_axes(k):
    a, b, c, d, e = float_inputs(k, (None, 4), (None, 3), (None, 4), (2, 3, 4), (2, 1, 4))
    cat = k.layers.Concatenate
    return k.Model([a, b, c, d, e], [
        cat()([a, b]), cat(axis=2)([a, b, c]), cat(axis=1)([a, c]), cat(axis=-2)([c, a]),
        cat(axis=1)([d, d]), cat(axis=2)([d, e]), cat(axis=-1)([d, d])])


@case()
def dot_products(k):
    seq_a, seq_b, seq_c, vec_a, vec_b = float_inputs(k, (None, 4), (5, 4), (5, 3), (4,), (4,))
    dot = k.layers.Dot
    return k.Model([seq_a, seq_b, seq_c, vec_a, vec_b], [
        dot(axes=2)([seq_a, seq_b]), dot(axes=(1, 1))([seq_b, seq_c]),
        dot(axes=(-1, 2))([seq_b, seq_a]), dot(axes=-1)([vec_a, vec_b]),
        dot(axes=(1, 2))([vec_a, seq_a]), dot(axes=(2, 1))([seq_b, vec_b]),
        dot(axes=2, normalize=True)([seq_a, seq_b]),
        dot(axes=(1, 1), normalize=True)([seq_b, seq_c]),
        dot(axes=1, normalize=True)([vec_a, vec_b])])


def embedded_tokens(k, count: int = 2):
    tokens = [k.Input((None,), dtype="int32", name=f"tokens_{i}") for i in range(count)]
    return tokens, [k.layers.Embedding(VOCAB, 4, mask_zero=True)(t) for t in tokens]


def read_masks(k, merged: list, pool: bool = True) -> list:
    """Each merged tensor, then what mask-using layers make of it."""
    outputs = []
    for x in merged:
        outputs += [x, k.layers.MultiHeadAttention(num_heads=1, key_dim=2)(x, x)]
        if pool:
            outputs.append(k.layers.GlobalAveragePooling1D()(x))
    return outputs


@case(**MASKED)
def masked_merges(k):
    tokens, (a, b) = embedded_tokens(k)
    layers = k.layers
    merged = [layers.Add()([a, b]), layers.Subtract()([a, b]), layers.Multiply()([a, b]),
              layers.Average()([a, b]), layers.Maximum()([a, b]), layers.Minimum()([b, a]),
              layers.Add()([a, a])]
    return k.Model(tokens, read_masks(k, merged))


@case(**MASKED)
def masked_merges_three_inputs(k):
    tokens, (a, b, c) = embedded_tokens(k, 3)
    layers = k.layers
    merged = [layers.Add()([a, b, c]), layers.Multiply()([a, b, c]),
              layers.Maximum()([a, b, c]), layers.Minimum()([c, a, b])]
    return k.Model(tokens, read_masks(k, merged))


@case(**MASKED)
def partly_masked_merges(k):
    """An unmasked input: Keras 2 keeps the other inputs' mask, Keras 3 drops it (yet its
    Multiply, Maximum and Minimum still use the masks they get)."""
    tokens, (a, b) = embedded_tokens(k)
    (x,) = float_inputs(k, (None, 4))
    layers = k.layers
    merged = [layers.Add()([a, x]), layers.Multiply()([x, a]), layers.Multiply()([a, x, b]),
              layers.Maximum()([a, x, b]), layers.Maximum()([x, a]), layers.Minimum()([a, x])]
    return k.Model(tokens + [x], read_masks(k, merged))


@case(**MASKED)
def masked_concatenate(k):
    tokens, (a, b) = embedded_tokens(k)
    (x,) = float_inputs(k, (None, 4))
    cat = k.layers.Concatenate
    merged = [cat()([a, b]), cat(axis=1)([a, b]), cat()([a, x]), cat()([x, b, a])]
    if not is_keras2(k):  # Keras 2 fails to build the mask of this one
        merged.append(cat(axis=1)([x, a]))
    # Keras 3 computes the mask pooling gets with ops.zeros_like, not converted yet
    return k.Model(tokens + [x], read_masks(k, merged, pool=is_keras2(k)))


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    return CASES.cache(tmp_path_factory.mktemp("merge_models"))


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_merge_matches_keras(saved_models, name, dialect):
    model, path = saved_models(name, dialect)
    check_conversion(model, path, **CASES[name].check)



def test_dot_over_rank_4_refused(tmp_path):
    k = keras_module("keras3")
    (x,) = float_inputs(k, (2, 3, 4))
    model = k.Model(x, k.layers.Dot(axes=3)([x, x]))
    with pytest.raises(ConversionError, match="Dot on inputs of rank 4 is not supported yet"):
        convert(save(model, "keras3", tmp_path, "dot4"))
