"""Rescaling, Normalization (adapted or given statistics, several axis choices, invert) and
the Random* augmentation layers at inference, built with real Keras 3 and tf_keras, weights
randomized, saved, reloaded by Keras (Normalization derives its statistics when it loads),
converted at opset 23 and 17 and compared element by element at two batch sizes and, over
None axes, two sizes. Keras 2's RandomCrop center-crops and resizes at inference; Keras 3's
returns its input."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_keras
from keras_check import Cases, check_conversion, keras_module, make_inputs

pytestmark = requires_keras

OPSETS = (23, 17)
CASES = Cases()
case = CASES.register


def image_inputs(model, batch, length, rng):
    """Pixel values 0..255 for integer inputs, normal floats otherwise."""
    arrays = make_inputs(model, batch, length, rng)
    return [rng.integers(0, 256, a.shape).astype(a.dtype) if a.dtype.kind in "iu" else a
            for a in arrays]


@case(inputs=image_inputs)
def rescaling(k):
    image = k.Input((4, 5, 3), name="image")
    pixels = k.Input((None, None, 3), name="pixels", dtype="uint8")
    R = k.layers.Rescaling
    return k.Model([image, pixels], [
        R(1 / 255)(image), R(1 / 127.5, offset=-1)(image),
        R([0.5, 1.0, 2.0], offset=[1, 0, -1])(image),
        R(1 / 255)(pixels), R(2.0, offset=0.5)(pixels)])


@case()
def normalization_adapted(k):
    """Statistics per feature (default), per position of two axes, one over everything."""
    x = k.Input((5, 4), name="x")
    sequence = k.Input((None, 4), name="sequence")
    N = k.layers.Normalization
    return k.Model([x, sequence], [N()(x), N(axis=1)(x), N(axis=(1, 2))(x), N(axis=None)(x),
                                   N(invert=True)(x), N(axis=(-2, -1), invert=True)(x),
                                   N()(sequence), N(axis=None, invert=True)(sequence)])


@case(inputs=image_inputs)
def normalization_given(k):
    """mean and variance in the config: scalars, per feature, and a zero variance (Keras
    floors the deviation at 1e-7); integer pixels are cast to float first."""
    x = k.Input((5, 3), name="x")
    pixels = k.Input((4, 3), name="pixels", dtype="uint8")
    N = k.layers.Normalization
    return k.Model([x, pixels], [
        N(mean=2.0, variance=4.0)(x), N(mean=[0.5, -1.0, 2.0], variance=[1.0, 0.25, 9.0])(x),
        N(axis=1, mean=[1, 2, 3, 4, 5], variance=[1, 2, 3, 4, 0])(x),
        N(mean=[0.5, -1.0, 2.0], variance=[1.0, 0.0, 9.0], invert=True)(x),
        N(mean=[100.0, 120.0, 90.0], variance=[3600.0, 2500.0, 4900.0])(pixels)])


@case(inputs=image_inputs)
def random_identities(k):
    """Every layer over floats and over uint8 pixels (some Keras 3 layers keep them uint8)."""
    image = k.Input((6, 7, 3), name="image")
    unsized = k.Input((None, None, 3), name="unsized")
    pixels = k.Input((6, 7, 3), name="pixels", dtype="uint8")
    L = k.layers
    layers = [L.RandomFlip(), L.RandomFlip("vertical"), L.RandomRotation(0.2),
              L.RandomZoom(0.2), L.RandomTranslation(0.1, 0.2), L.RandomContrast(0.5),
              L.RandomBrightness(0.3)]
    if k.__name__ == "keras":
        layers += [L.RandomGrayscale(), L.RandomHue(0.2), L.RandomSaturation(0.2),
                   L.RandomSharpness(0.2), L.RandomPerspective(),
                   L.RandomColorJitter(brightness_factor=0.2), L.RandomColorDegeneration(0.3),
                   L.RandomPosterization(4), L.RandomErasing(), L.RandomGaussianBlur(),
                   L.RandomInvert(), L.RandomElasticTransform(), L.AugMix(), L.CutMix(),
                   L.MixUp(), L.RandAugment()]
    outputs = [layer(image) for layer in layers]
    outputs += [layer.from_config({**layer.get_config(), "name": f"{layer.name}_pixels"})(pixels)
                for layer in layers]
    outputs += [L.RandomFlip()(unsized), L.RandomRotation(0.1)(unsized)]
    chained = image
    for layer in (L.RandomFlip(), L.RandomZoom(0.1), L.Dense(2)):
        chained = layer(chained)
    return k.Model([image, unsized, pixels], outputs + [chained])


@case(inputs=image_inputs, atol=2e-4)
def random_crop(k):
    """Smaller, wider, taller, larger and equal targets over a fixed image, and over one of
    unknown size (the window computed at run time). Keras 2 interpolates pixels up to 255,
    where float32's spacing is 1.5e-5: TensorFlow's and onnxruntime's bilinear sums round
    apart by a few of those (2e-4)."""
    image = k.Input((10, 12, 3), name="image")
    unsized = k.Input((None, None, 2), name="unsized")
    pixels = k.Input((10, 12, 3), name="pixels", dtype="uint8")
    crop = k.layers.RandomCrop
    return k.Model([image, unsized, pixels], [
        crop(6, 8)(image), crop(5, 12)(image), crop(10, 4)(image), crop(12, 14)(image),
        crop(10, 12)(image), crop(3, 3)(unsized), crop(2, 5)(unsized), crop(6, 6)(pixels)])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each (case, dialect) model built once, saved, and reloaded by Keras from the file."""
    built = CASES.cache(tmp_path_factory.mktemp("preprocessing_models"))
    reloaded = {}

    def get(name, dialect):
        if (name, dialect) not in reloaded:
            _, path = built(name, dialect)
            reloaded[(name, dialect)] = (keras_module(dialect).models.load_model(path), path)
        return reloaded[(name, dialect)]

    return get


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name, dialect", CASES.params())
def test_preprocessing_matches_keras(saved, name, dialect, opset):
    model, path = saved(name, dialect)
    check_conversion(model, path, opsets=(opset,), **CASES[name].check)
