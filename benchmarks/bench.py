"""Benchmarks: how fast kerasonnx converts, and how fast the two attention lowerings run.

    python benchmarks/bench.py               # conversion time of every fixture + latency
    python benchmarks/bench.py --runs 200    # more latency samples

Latency: a Transformer encoder block built with Keras 3 (d_model 256, 8 heads, sequence
128, batch 8, the sizes of ../shared/onnx-notes.md), converted at opset 23 (ONNX Attention
operator) and 17 (MatMul/Softmax), timed in onnxruntime with 2 intra-op threads, thread
spinning off, the two models' runs interleaved. Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kerasonnx  # noqa: E402
from kerasonnx.errors import ConversionError  # noqa: E402


def conversion_times(repeats: int = 3) -> None:
    print("conversion time (best of 3, no TensorFlow):")
    for path in sorted((ROOT / "fixtures").glob("keras*/*.[kh]*")):
        if path.suffix not in (".keras", ".h5") or path.name.endswith("weights.h5"):
            continue
        try:
            best = min(_timed(lambda: kerasonnx.convert(path)) for _ in range(repeats))
        except ConversionError as exc:
            print(f"  {path.relative_to(ROOT)}: not convertible ({str(exc)[:60]}...)")
            continue
        print(f"  {str(path.relative_to(ROOT)):<50} {best * 1000:7.1f} ms")


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def encoder_block_model(folder: Path) -> Path:
    import keras

    tokens = keras.Input((128, 256), name="x")
    attention = keras.layers.MultiHeadAttention(8, 32)(tokens, tokens)
    model = keras.Model(tokens, attention)
    path = folder / "encoder_attention.keras"
    model.save(path)
    return path


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def latency(runs: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = encoder_block_model(Path(folder))
        sessions = {opset: session(kerasonnx.convert(path, opset=opset).model)
                    for opset in (23, 17)}
    x = np.random.default_rng(0).normal(size=(8, 128, 256)).astype(np.float32)
    times = {opset: [] for opset in sessions}
    for opset, s in sessions.items():  # warm up
        s.run(None, {"x": x})
    for _ in range(runs):
        for opset, s in sessions.items():  # interleaved
            times[opset].append(_timed(lambda: s.run(None, {"x": x})))
    print(f"MultiHeadAttention(8 heads, key_dim 32) on (8, 128, 256), {runs} interleaved runs:")
    for opset, samples in times.items():
        samples.sort()
        print(f"  opset {opset}: median {statistics.median(samples) * 1000:6.2f} ms, "
              f"p90 {samples[int(0.9 * len(samples))] * 1000:6.2f} ms")
    ratio = statistics.median(times[23]) / statistics.median(times[17])
    print(f"  Attention operator / MatMul lowering: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    conversion_times()
    latency(args.runs)


if __name__ == "__main__":
    main()
