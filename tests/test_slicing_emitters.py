"""Slicing, indexing and the tensor operations around attention: ``x[...]`` (Keras 3
``GetItem`` op nodes, Keras 2 ``SlicingOpLambda`` layers) and ``take``, ``slice``,
``split``, ``stack``, ``where``, ``einsum``, ``tile``, ``repeat``, ``cumsum``, ``arange``
on a shape, ``expand_dims`` and ``squeeze`` (Keras 3 ``keras.ops``; Keras 2 the tf.*
functions tf_keras saves as TFOpLambda). Each case is a real Keras model, saved,
converted at opsets 23 and 17 and compared element by element with Keras at batch 1 and 3
and two sequence lengths."""
from __future__ import annotations

import json

import pytest

import kerasonnx

from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError
from keras_check import Cases, check_conversion, is_keras2, keras_module, save

pytestmark = requires_keras

CASES = Cases()


def case(*dialects, **check):
    """Register ``build(k) -> (inputs, outputs)`` as the model of a case."""
    def add(build):
        def model(k):
            return k.Model(*build(k))
        model.__name__ = build.__name__
        CASES.register(*dialects, **check)(model)
        return build

    return add


def functions(k):
    """``keras.ops`` for Keras 3, ``tensorflow`` for Keras 2."""
    if is_keras2(k):
        import tensorflow as tf
        return tf
    import keras
    return keras.ops


@case()
def basic_indexing(k):
    """Ints (negative too), slices with every kind of bound and step, None, Ellipsis, on a
    dynamic length and static dims."""
    x = k.Input((None, 6, 5), name="x")
    return [x], [
        x[:, 0, :], x[:, 0], x[:, -1], x[:, -2, 3], x[..., 0], x[..., -1, :],
        x[:, 1:], x[:, :-1], x[:, ::2], x[:, 1::2], x[:, ::-1], x[:, -2::-1],
        x[:, :, 4:1:-1], x[:, :, -1:-6:-2], x[:, :, ::-2, 1:4], x[:, :, 2:100],
        x[:, :, -100:3], x[:, None], x[:, :, None, 1], x[None, ..., None], x[..., 1:4:2],
        x[:, -3:, 1:-1], x[0:1, :], x[:, 0, None, ::-1],
    ]


@case()
def slicing_then_layers(k):
    """Slices feeding layers and ops: the rank and dims downstream stay right."""
    x = k.Input((None, 6), name="x")
    first = x[:, 0]
    pooled = k.layers.Dense(3)(first)
    tail = k.layers.Dense(2)(x[:, 1:, 2:])
    return [x], [pooled, tail, x[:, 1:] - x[:, :-1]]


@case("keras2", lengths=(4, 7))
def bounds_from_tensors(k):
    """Keras 2 slices whose bounds come from tf.shape (Keras 3 has no dynamic equivalent:
    ops.shape gives None for a dynamic dim)."""
    import tensorflow as tf
    x, y = k.Input((None, 6), name="x"), k.Input((None, 6), name="y")
    n = tf.shape(y)[1]
    return [x, y], [x[:, : n - 2], x[:, n - 1], x[:, 1:n:2], x[:, -n + 1:], x[:, n - 5],
                    x[:, tf.shape(x)[1] - 1 - n + 2, 1:tf.shape(x)[2] - 1],
                    x[:, n - 2::-1], x[:, :, -1 * (n - 3)]]


@case(lengths=(4, 7))
def tokens_and_shapes(k):
    """Keras 3: ``arange`` on a static dim saves its values; Keras 2: ``tf.range`` of a
    ``tf.shape`` entry stays dynamic."""
    o = functions(k)
    x = k.Input((None, 6), name="x")
    y = k.Input((5, 6), name="y")
    if is_keras2(k):
        positions = o.range(o.shape(x)[1])
        outputs = [o.cast(positions, "float32")[None, :, None] + x,
                   o.shape(x)[1:], o.range(2, o.shape(x)[1], 2), o.shape(y)[-1] * 2]
    else:
        outputs = [y + o.arange(o.shape(y)[2], dtype="float32"),
                   o.take(y, o.arange(3), axis=1), y * o.arange(5, dtype="float32")[:, None]]
    return [x, y], outputs


@case(tokens={"i": 4})
def take_and_gather(k):
    o = functions(k)
    x, i = k.Input((None, 6), name="x"), k.Input((3,), dtype="int32", name="i")
    if is_keras2(k):
        return [x, i], [o.gather(x, i, axis=2), o.gather(x, 2, axis=-1),
                        o.gather(x, [0, 5, 1], axis=2), o.gather(x[:, :4], i, axis=1,
                                                                 batch_dims=1)]
    return [x, i], [o.take(x, i, axis=2), o.take(x, 2, axis=-1), o.take(x, -1, axis=2),
                    o.take(x, [0, 5, -2], axis=2), o.take(x[:, 0], i - 4, axis=1),
                    o.take(x[:, :2], i, axis=None)]


@case(lengths=(4, 6))
def slice_split_stack(k):
    o = functions(k)
    x, y = k.Input((None, 6), name="x"), k.Input((None, 6), name="y")
    outputs = [o.slice(x, (0, 1, 2), (-1, 2, 3)), o.stack([x, y], axis=1),
               o.stack([x, y, x], axis=-1), o.concatenate([x, y], axis=1) if not is_keras2(k)
               else o.concat([x, y], axis=1)]
    if is_keras2(k):
        outputs += [*o.split(x, 2, axis=-1), *o.split(x, [1, 3, 2], axis=2),
                    *o.split(x, [1, -1, 2], axis=2), *o.split(x, [1, -1], axis=1),
                    *o.split(x, [-1, 1], axis=1), *o.split(x, 2, axis=1)]
    else:
        outputs += [*o.split(x, 2, axis=-1), *o.split(x, [1, 4], axis=2),
                    *o.split(x, [1, 3], axis=1), *o.split(x, 2, axis=1)]
    return [x, y], outputs


@case()
def where_tile_repeat_cumsum(k):
    o = functions(k)
    x, y = k.Input((None, 6), name="x"), k.Input((None, 6), name="y")
    outputs = [o.where(x > 0, x, y), o.where(x > y, x, 0.0), o.where(x > 0, 1.0, y),
               o.tile(x, (1, 2, 3)), o.repeat(x, 2, axis=1), o.repeat(x, 2, axis=0),
               o.repeat(x, 3, axis=-1), o.repeat(x, [1, 0, 2, 1, 1, 3], axis=2)]
    if is_keras2(k):
        outputs += [o.cumsum(x, axis=1), o.math.cumsum(x, axis=-1, exclusive=True),
                    o.math.cumsum(x, axis=2, reverse=True),
                    o.math.cumsum(x, axis=1, exclusive=True, reverse=True)]
    else:
        outputs += [o.cumsum(x, axis=1), o.cumsum(x, axis=-1), o.cumsum(x[:, :2]),
                    o.cumsum(o.cast(x > 0, "int32"), axis=1), o.where(x > 0, 1, 0),
                    o.repeat(x[:, :2], 2), o.tile(x, (2, 1, 1, 2)), o.tile(x, 2),
                    o.where(o.cast(x > 0, "int32"), x, y)]  # a non-zero condition
    return [x, y], outputs


@case()
def expand_and_squeeze(k):
    o = functions(k)
    x = k.Input((None, 1, 6), name="x")
    return [x], [o.expand_dims(x, 1), o.expand_dims(x, -1), o.squeeze(x, 2),
                 o.squeeze(o.expand_dims(x[:, :, 0], 1)), o.squeeze(x)]


@case("keras3")
def einsum(k):
    """Equations attention code writes, and batch, outer-product, reduction, implicit-output
    and ellipsis forms, all lowered to MatMul / Transpose / ReduceSum."""
    o = functions(k)
    q, kk = k.Input((None, 2, 3), name="q"), k.Input((None, 2, 3), name="k")
    v, w = k.Input((None, 3), name="v"), k.Input((3, 4), name="w")
    scores = o.einsum("bqhd,bkhd->bhqk", q, kk)
    return [q, kk, v, w], [
        scores, o.einsum("bhqk,bkhd->bqhd", scores, kk), o.einsum("btd,bde->bte", v, w),
        o.einsum("bij,bkj->bik", v, v), o.einsum("bi,bj->bij", v[:, 0], v[:, 1]),
        o.einsum("bi,bi->b", v[:, 0], v[:, 1]), o.einsum("btd->bdt", v), o.einsum("btd->b", v),
        o.einsum("btd,bdhk->bthk", v, o.reshape(w, (-1, 3, 2, 2))),
        o.einsum("bthd,bthd->bt", q, kk), o.einsum("b...d,bde->b...e", v, w),
        o.einsum("btd,bsd", v, v), o.einsum("btd,bsd->bts", v, v),
        o.einsum("bti,bij->btj", v, w[:, :, :3]), o.einsum("bthd,bd->bth", q, w[:, :, 0]),
        o.einsum("bqhd,bkhd->bqk", q, kk), o.einsum("bqd,bkd->bkq", v, v),
    ]


def _bert_classifier(k, mask_zero=False):
    """A BERT-style classifier: embeddings, one post-norm encoder block (MHA, residual,
    LayerNormalization, feed-forward), the [CLS] vector x[:, 0] pooled into a classifier."""
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.layers.Embedding(20, 8, mask_zero=mask_zero)(tokens)
    attended = k.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = k.layers.LayerNormalization()(x + attended)
    hidden = k.layers.Dense(16, activation="gelu")(x)
    x = k.layers.LayerNormalization()(x + k.layers.Dense(8)(hidden))
    cls = x[:, 0]
    pooled = k.layers.Dense(8, activation="tanh")(cls)
    return [tokens], [k.layers.Dense(3, activation="softmax")(pooled), x[:, 0, :4]]


@case(tokens={"tokens": 20}, lengths=(5, 9))
def bert_classifier(k):
    return _bert_classifier(k)


@case(tokens={"tokens": 20}, lengths=(5, 9))
def bert_classifier_with_padding_mask(k):
    """The same with Embedding(mask_zero=True): padded keys are masked in attention."""
    return _bert_classifier(k, mask_zero=True)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    return CASES.cache(tmp_path_factory.mktemp("slicing_models"))


@pytest.mark.parametrize("name,dialect", CASES.params())
def test_slicing_and_operations_match_keras(saved_models, name, dialect):
    model, path = saved_models(name, dialect)
    check_conversion(model, path, **CASES[name].check)


def test_slicing_lowers_to_one_slice_without_shape_ops(saved_models):
    """x[:, 1:, ::-1, 0] is one Slice (plus Squeeze for the int), no Shape arithmetic."""
    for dialect in ("keras3", "keras2"):
        _, path = saved_models("basic_indexing", dialect)
        ops = {n.op_type for n in convert(path, opset=17).model.graph.node}
        assert ops <= {"Slice", "Squeeze", "Unsqueeze", "Identity"}, ops


def test_bert_classifier_pools_the_first_token(saved_models):
    for dialect in ("keras3", "keras2"):
        _, path = saved_models("bert_classifier", dialect)
        model = convert(path).model
        assert "Attention" in {n.op_type for n in model.graph.node}
        assert "Gather" not in {n.op_type for n in model.graph.node if "get_item" in n.name
                                or "getitem" in n.name}


def test_tensors_in_a_key_are_inputs_of_the_slice(saved_models):
    """inspect shows the tensors a Keras 2 key holds as inputs (index0, ...) and the key
    with markers, as JSON."""
    _, path = saved_models("bounds_from_tensors", "keras2")
    report = kerasonnx.inspect(path)
    first = next(n for n in report["nodes"] if n["class_name"] == "SlicingOpLambda"
                 and n["inputs"].get("arg0") == "x")  # x[:, : n - 2]
    assert first["inputs"]["index0"].startswith("tf.math.subtract")
    assert first["arguments"]["slice_spec"][1]["stop"] == {"__input__": "index0"}
    json.dumps(report)


def test_verify_compares_every_layer_scalars_included(saved_models):
    """verify --per-layer on a Keras 2 model whose tf.shape(y)[1] layers output scalars."""
    _, path = saved_models("bounds_from_tensors", "keras2")
    report = kerasonnx.verify(path, convert(path).model, per_layer=True, batches=(1,),
                              lengths=(5,))
    assert report.passed, report.summary()
    assert any(c.keras_shape == [] for c in report.runs[0].layers)


@pytest.mark.parametrize("name", ("basic_indexing", "bert_classifier", "slice_split_stack"))
def test_keras3_operations_in_a_legacy_h5(saved_models, tmp_path, name):
    """Keras 3 writing .h5 drops every config's ``module``; GetItem and friends are still
    told from layers by their config."""
    model, _ = saved_models(name, "keras3")
    path = tmp_path / f"{name}.h5"
    model.save(path)
    check_conversion(model, path, opsets=(17,), **CASES[name].check)


def _convert_error(tmp_path, dialect, build) -> str:
    """The message converting the model ``build(k, functions(k))`` fails with."""
    k = keras_module(dialect)
    inputs, outputs = build(k, functions(k))
    path = save(k.Model(inputs, outputs), dialect, tmp_path, "refused")
    with pytest.raises(ConversionError) as info:
        convert(path)
    return str(info.value)


def test_einsum_it_cannot_lower_is_named(tmp_path):
    message = _convert_error(tmp_path, "keras3", lambda k, o: (
        [x := k.Input((3, 3), name="x")], [o.einsum("bii->bi", x)]))
    assert "'Einsum' (keras.ops) 'bii->bi' cannot be lowered" in message
    message = _convert_error(tmp_path, "keras3", lambda k, o: (
        [x := k.Input((3,), name="x")], [o.einsum("bi,bi,bi->b", x, x, x)]))
    assert "'bi,bi,bi->b' cannot be lowered (only one or two operands" in message


def test_boolean_index_is_refused(tmp_path):
    message = _convert_error(tmp_path, "keras3", lambda k, o: (
        [x := k.Input((4, 3), name="x")], [x[:, True]]))
    assert "'GetItem' (keras.ops) with the index True is not supported" in message


def test_where_with_only_a_condition_is_refused(tmp_path):
    message = _convert_error(tmp_path, "keras3", lambda k, o: (
        [x := k.Input((3,), name="x")], [o.where(x > 0)[1]]))
    assert "'Where' (keras.ops) with only a condition" in message
