"""Tensor operations on Keras tensors: ``keras.ops`` nodes (Keras 3) and ``tf.*`` functions
on tf_keras tensors (TFOpLambda layers, Keras 2). Each case builds one functional model
with the real Keras of a dialect, saves it, converts it at opset 23 and 17, runs
onnxruntime and compares every output element (and dtype) with Keras."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import requires_keras
from kerasonnx.convert import convert
from kerasonnx.errors import ConversionError, UnsupportedLayerError
from keras_check import Cases, check_conversion, is_keras2, keras_module, model_cache, save

pytestmark = requires_keras

# name -> (keras.ops function, tf function): the same operation in both dialects
FUNCTIONS = {
    "add": ("add", "math.add"), "subtract": ("subtract", "math.subtract"),
    "multiply": ("multiply", "math.multiply"), "divide": ("divide", "math.truediv"),
    "power": ("power", "math.pow"), "maximum": ("maximum", "math.maximum"),
    "minimum": ("minimum", "math.minimum"), "floor_divide": ("floor_divide", "math.floordiv"),
    "mod": ("mod", "math.floormod"), "matmul": ("matmul", "linalg.matmul"),
    "reshape": ("reshape", "reshape"), "transpose": ("transpose", "transpose"),
    "concatenate": ("concatenate", "concat"), "expand_dims": ("expand_dims", "expand_dims"),
    "squeeze": ("squeeze", "squeeze"), "cast": ("cast", "cast"),
    "not_equal": ("not_equal", "math.not_equal"), "equal": ("equal", "math.equal"),
    "greater": ("greater", "math.greater"),
    "greater_equal": ("greater_equal", "math.greater_equal"),
    "less": ("less", "math.less"), "less_equal": ("less_equal", "math.less_equal"),
    "logical_and": ("logical_and", "math.logical_and"),
    "logical_or": ("logical_or", "math.logical_or"),
    "logical_not": ("logical_not", "math.logical_not"),
    "mean": ("mean", "math.reduce_mean"), "sum": ("sum", "math.reduce_sum"),
    "max": ("max", "math.reduce_max"), "min": ("min", "math.reduce_min"),
    "prod": ("prod", "math.reduce_prod"), "any": ("any", "math.reduce_any"),
    "all": ("all", "math.reduce_all"),
    "sqrt": ("sqrt", "math.sqrt"), "rsqrt": ("rsqrt", "math.rsqrt"), "exp": ("exp", "math.exp"),
    "log": ("log", "math.log"), "tanh": ("tanh", "math.tanh"),
    "sigmoid": ("sigmoid", "math.sigmoid"), "relu": ("relu", "nn.relu"),
    "abs": ("abs", "math.abs"), "negative": ("negative", "math.negative"),
    "square": ("square", "math.square"), "softmax": ("softmax", "nn.softmax"),
    "log_softmax": ("log_softmax", "nn.log_softmax"), "erf": ("erf", "math.erf"),
    "sin": ("sin", "math.sin"), "cos": ("cos", "math.cos"), "gelu": ("gelu", "nn.gelu"),
    "silu": ("silu", "nn.silu"),
}


def ops_for(dialect: str) -> SimpleNamespace:
    """The FUNCTIONS of one dialect: ``keras.ops.add`` or ``tf.math.add`` as ``o.add``."""
    if dialect == "keras3":
        import keras
        root, column = keras.ops, 0
    else:
        import tensorflow as tf
        root, column = tf, 1
    functions = {}
    for name, paths in FUNCTIONS.items():
        function = root
        for part in paths[column].split("."):
            function = getattr(function, part)
        functions[name] = function
    return SimpleNamespace(dialect=dialect, **functions)


# ---------------------------------------------------------------------- cases
# Each builds (inputs, outputs) from the Keras module ``k`` and the ops ``o``.

CASES = Cases()
case = CASES.register


@case()
def arithmetic(k, o):
    x, y = k.Input((None, 5), name="x"), k.Input((None, 5), name="y")
    positive = o.add(o.multiply(y, y), 1.0)
    return [x, y], [
        o.add(x, y), o.subtract(x, y), o.multiply(x, y), o.divide(x, positive),
        x * 2.0, 1.0 - x, 3 * x, x / 4.0, x + y, x - y, -x,
        o.maximum(x, y), o.minimum(x, 0.5), o.power(positive, 1.5), o.power(x, 2.0),
        o.floor_divide(x, 0.7), o.floor_divide(x, -0.3), x // y,
        o.mod(x, 0.7), o.mod(x, -0.7), x % y,
    ]


@case(lengths=(4,))
def structure(k, o):
    x, y = k.Input((4, 6), name="x"), k.Input((4, 6), name="y")
    outputs = [
        o.matmul(x, o.transpose(y, (0, 2, 1))), o.reshape(x, (-1, 4, 3, 2)),
        o.transpose(x, (0, 2, 1)), o.concatenate([x, y], axis=1),
        o.concatenate([x, y], axis=-1), o.expand_dims(x, 1), o.expand_dims(x, -1),
        o.squeeze(o.expand_dims(x, 2), 2), o.cast(x, "int32"), o.cast(x, "bool"),
        o.cast(o.cast(x * 3.0, "int32"), "float32"),
    ]
    if o.dialect == "keras2":  # TF's matmul flags
        outputs.append(o.matmul(x, y, transpose_b=True))
        outputs.append(o.matmul(x, y, transpose_a=True))
    return [x, y], outputs


@case()
def unary(k, o):
    x, z = k.Input((None, 5), name="x"), k.Input((None, 3), name="z")
    positive = o.add(o.multiply(x, x), 1.0)
    outputs = [
        o.sqrt(o.abs(x)), o.exp(x), o.tanh(x), o.sigmoid(x), o.relu(x), o.abs(x),
        o.negative(x), o.square(x), o.log(positive), o.rsqrt(positive), o.erf(x),
        o.sin(x), o.cos(x), o.softmax(x), o.softmax(z, axis=1), o.log_softmax(x),
        o.log_softmax(z, axis=1), o.gelu(x), o.gelu(x, approximate=False),
        o.gelu(x, approximate=True), o.silu(x),
    ]
    if o.dialect == "keras3":  # softmax over every element, batch included
        outputs.append(o.softmax(z, axis=None))
    return [x, z], outputs


@case()
def reductions(k, o):
    z = k.Input((None, 3), name="z")
    return [z], [
        o.mean(z, axis=-1), o.mean(z, axis=(1, 2), keepdims=True), o.sum(z, axis=1),
        o.sum(z), o.max(z, axis=1), o.min(z, axis=-1, keepdims=True), o.prod(z, axis=2),
        o.mean(z),
    ]


@case(tokens={"t": 20})
def integers_and_masks(k, o):
    """Token ids in [0, 20) (0 = padding): comparisons, masks, integer arithmetic."""
    t, x = k.Input((None,), dtype="int32", name="t"), k.Input((None,), name="x")
    mask = o.not_equal(t, 0)
    centred = o.subtract(t, 10)
    outputs = [
        mask, o.equal(t, 3), o.greater(t, 5), o.greater_equal(t, 5), o.less(t, 5),
        o.less_equal(t, 5), o.greater(x, 0.0), o.less(x, 0.5 * x),
        o.logical_or(mask, o.equal(t, 3)), o.logical_and(mask, o.less(t, 9)),
        o.logical_not(mask), o.any(mask, axis=1), o.all(mask, axis=-1),
        t + 1, t * 2, centred // 3, centred // -3, centred % 3, centred % -3,
        o.cast(t, "float32"), o.cast(mask, "float32") * x, o.sum(t, axis=1),
        o.max(t, axis=-1), t / 2,  # Keras 3: float32, Keras 2: float64
        o.mean(centred, axis=1),  # Keras 3: float32, Keras 2: int32, truncated
        o.prod(t, axis=1), o.min(centred, axis=1),
    ]
    if o.dialect == "keras3":  # Keras 3 computes these in float32; TF refuses them
        outputs += [t * 2.5, o.exp(o.cast(t, "int32") // 8),
                    o.sum(mask, axis=1), o.max(mask, axis=1), o.add(t, x)]
    return [t, x], outputs


@case("keras3", lengths=(4,))
def gathers_and_fourier(k, o):
    """Keras 3's take_along_axis (indices of the same rank, and broadcast along the last
    axis) and fft2 of a (real, imaginary) pair (the operations KerasHub's MaskedLMHead and
    FNetEncoder use)."""
    import keras
    x, y = k.Input((4, 6), name="x"), k.Input((4, 6), name="y")
    picks = k.Input((2, 6), dtype="int32", name="picks")
    rows = k.Input((3, 1), dtype="int32", name="rows")
    real, imaginary = keras.ops.fft2((x, y))
    return [x, y, picks, rows], [
        keras.ops.take_along_axis(x, picks, axis=1),
        keras.ops.take_along_axis(x, rows, axis=-2), real, imaginary]


@case("keras3")
def normalize(k, o):
    """Keras 3's L2 normalize (a text embedder's last step) along the last axis, along
    axis 1, and with an epsilon large enough to bound some norms."""
    import keras
    x = k.Input((None, 5), name="x")
    return [x], [keras.ops.normalize(x), keras.ops.normalize(x, axis=1),
                 keras.ops.normalize(x, epsilon=2.0)]


@case("keras3", tokens={"t": 20})
def padding(k, o):
    """Keras 3's pad in "constant" mode: zeros along the sequence (Gemma3TextEmbedder's
    last-token mask), a constant on several axes, integers."""
    import keras
    x, t = k.Input((None, 5), name="x"), k.Input((None,), dtype="int32", name="t")
    return [x, t], [keras.ops.pad(x, [[0, 0], [0, 1], [0, 0]]),
                    keras.ops.pad(x, [[1, 0], [2, 1], [0, 3]], constant_values=0.5),
                    keras.ops.pad(t, [[0, 0], [1, 2]], constant_values=7)]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Build each (case, dialect) model once: (Keras model, saved file)."""
    def builder(case):
        def build(k):
            return k.Model(*case.build(k, ops_for("keras2" if is_keras2(k) else "keras3")))
        return build

    return model_cache(tmp_path_factory.mktemp("operation_models"),
                       {name: builder(case) for name, case in CASES.items()})


@pytest.mark.parametrize("name, dialect", CASES.params())
def test_operations_match_keras(saved_models, name, dialect):
    model, path = saved_models(name, dialect)
    check_conversion(model, path, **CASES[name].check)


def test_keras2_true_division_of_integers_gives_float64(saved_models):
    """TF's truediv turns int32 into float64 (Keras 3 gives float32): both reproduced."""
    for dialect, dtype in (("keras2", "float64"), ("keras3", "float32")):
        _, path = saved_models("integers_and_masks", dialect)
        outputs = convert(path, opset=17).model.graph.output
        assert outputs[23].type.tensor_type.elem_type == {"float64": 11, "float32": 1}[dtype]


@pytest.mark.parametrize("dialect", ("keras3", "keras2"))
def test_unknown_function_is_listed_before_conversion(tmp_path, dialect):
    """An operation kerasonnx does not lower is named in the list of layers it cannot
    convert (Keras 3: an ops class without an emitter; Keras 2: a TF function)."""
    k = keras_module(dialect)
    x = k.Input((4,), name="x")
    if dialect == "keras3":
        import keras
        y = keras.ops.sort(x, axis=1)
        expected = r"sort(_\d+)? \(keras\.ops\.Sort\)"
    else:
        import tensorflow as tf
        y = tf.sort(x, axis=1)
        expected = r"tf\.sort(_\d+)? \(TFOpLambda, function tf\.sort\)"
    path = save(k.Model(x, y), dialect, tmp_path, "unknown")
    with pytest.raises(UnsupportedLayerError, match=expected):
        convert(path)


def test_unsupported_argument_is_named(tmp_path):
    """An argument that changes the result and that kerasonnx does not read."""
    import keras
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.ops.max(x, axis=1, initial=0.5))
    path = save(model, "keras3", tmp_path, "initial")
    with pytest.raises(ConversionError, match=r"'Max' \(keras.ops\) with initial=0.5 is not "
                                              r"supported"):
        convert(path)


def test_normalize_of_another_order_is_refused(tmp_path):
    import keras
    x = keras.Input((4,), name="x")
    path = save(keras.Model(x, keras.ops.normalize(x, order=1)), "keras3", tmp_path, "l1")
    with pytest.raises(ConversionError, match=r"'Normalize' \(keras.ops\) with order=1 is "
                                              r"not supported yet \(only 2\)"):
        convert(path)


def test_pad_of_another_mode_is_refused(tmp_path):
    import keras
    x = keras.Input((4,), name="x")
    path = save(keras.Model(x, keras.ops.pad(x, [[0, 0], [1, 1]], mode="reflect")), "keras3",
                tmp_path, "reflect")
    with pytest.raises(ConversionError, match=r"'Pad' \(keras.ops\) with mode='reflect' is "
                                              r"not supported yet \(only 'constant'\)"):
        convert(path)


@pytest.mark.parametrize("name", ("arithmetic", "integers_and_masks"))
def test_keras3_operations_in_a_legacy_h5(saved_models, tmp_path, name):
    """Keras 3 writing .h5 drops every config's ``module``: operations are still told
    from the layers of the same name (Add, Multiply, ...)."""
    model, _ = saved_models(name, "keras3")
    path = tmp_path / f"{name}.h5"
    model.save(path)
    check_conversion(model, path, **CASES[name].check)


def test_every_problem_is_reported_in_one_run(tmp_path):
    import keras
    x = keras.Input((1, 4), name="x")
    model = keras.Model(x, [keras.ops.max(x, axis=1, initial=0.5), keras.ops.where(x > 0)[0]])
    with pytest.raises(ConversionError) as info:
        convert(save(model, "keras3", tmp_path, "two_problems"))
    message = str(info.value)
    assert "with initial=0.5 is not supported" in message and "only a condition" in message
    assert "\n" not in message
