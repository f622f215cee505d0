"""Models of tf_keras-only packages (keras-multi-head and its family), built in a process
of their own: those packages do ``from tensorflow import keras``, which is tf_keras only
when TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported, and the test process
has imported Keras 3 already. A test module runs itself as a script (``built_by``); the
script builds every case, randomizes and saves it (``record``); the tests read the inputs
and Keras outputs back (``reference``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FORMATS = ("h5", "keras")  # legacy weights (no module keys) and saving_lib's layers/<class>


def built_by(script: str, folder: Path) -> Path:
    """Run ``script FOLDER`` under tf_keras; ``folder`` then holds every case."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="-1")
    result = subprocess.run([sys.executable, script, str(folder)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def record(folder: Path, builds: dict, tokens, batches, lengths) -> None:
    """Build (``builds[name](k)``), randomize and save every case in both formats; record
    inputs and Keras outputs (``<batch>_<length>/in<i>``, ``/out<i>``) in ``<name>.npz``.
    ``tokens(name)`` maps a case's token inputs to their vocabulary."""
    import tf_keras as k
    from keras_check import make_inputs, randomize

    for name, build in builds.items():
        k.utils.set_random_seed(5)
        model = build(k)
        randomize(model)
        for suffix in FORMATS:
            model.save(folder / f"{name}.{suffix}")
        rng = np.random.default_rng(3)
        arrays = {}
        for batch in batches:
            for length in lengths:
                inputs = make_inputs(model, batch, length, rng, tokens(name))
                outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                arrays.update({f"{batch}_{length}/in{i}": a for i, a in enumerate(inputs)})
                arrays.update({f"{batch}_{length}/out{i}": np.asarray(o)
                               for i, o in enumerate(outputs)})
        np.savez(folder / f"{name}.npz", **arrays)


def reference(folder: Path, name: str) -> list:
    """[(where, inputs, expected outputs)] recorded by ``record``."""
    data = np.load(folder / f"{name}.npz")
    result = []
    for cell in sorted({key.split("/")[0] for key in data.files}):
        def arrays(prefix):
            count = sum(1 for key in data.files if key.startswith(f"{cell}/{prefix}"))
            return [data[f"{cell}/{prefix}{i}"] for i in range(count)]
        result.append((cell, arrays("in"), arrays("out")))
    return result
