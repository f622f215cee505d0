"""Benchmarks: how fast kerasonnx converts, against copying the file and against tf2onnx,
and how close onnxruntime runs its graphs to their matrix products alone.

    python benchmarks/bench.py                      # everything (about a minute)
    python benchmarks/bench.py --large-mb 2500      # the generated large model at 2.5 GB
    python benchmarks/bench.py --only latency --runs 100
    python benchmarks/bench.py --only generation

Sections:
- start-up: ``import kerasonnx.cli`` and ``kerasonnx convert`` of the benchmark encoder
  (4 blocks, d 256, 8 heads, ff 1024, vocabulary 20000: 8.3M parameters), each a fresh
  process, wall and CPU seconds, median of 5, interleaved with copying the file.
- conversion: every fixture, the benchmark encoder and a generated large model (the
  encoder at d 1024, ff 4096, 16 heads, as many blocks as ``--large-mb`` asks), each in a
  fresh process: time per stage (load: open
  the file and read the config; parse: the graph and its weight checks; emit: the
  emitters, reading, folding and writing every weight; check: checker and shape inference;
  write: saving), peak memory above the interpreter's own once imports are done, and the
  ratio to copying the file (page cache warm for both; files of 1 MiB and more). Models past
  512 MiB of weights use external data, as `kerasonnx convert` does.
- tf2onnx, when installed: the encoder and the large model (every fixture too with
  ``--tf2onnx-fixtures``) through Keras' own ONNX export (Keras 3) or
  tf2onnx.convert.from_keras (Keras 2), in one process that imports TensorFlow once.
- latency: the benchmark encoder (opset 23 and 17) against a graph of its matrix products
  alone (the same MatMuls with the same weights, chained), and against that graph with
  the attention cores' products added (q kᵀ and scores v per block, same shapes: the
  encoder's matrix products, all of them), onnxruntime with 2 intra-op threads, spinning
  off, runs interleaved, batch 1 and 8.
- generation: a small GPT-style decoder (tokens and learned positions, 4 causal blocks,
  d 256) generating 128 tokens greedily after a 32-token prompt, batch 1, opsets 23 and 17:
  the plain conversion rerun on the whole prefix for every token, against the
  ``--with-past`` conversion fed one token and its key/value cache; total time, the
  per-token time over the first and last 16 tokens, and the ratio.

Figures are printed, never asserted. Building the models needs TensorFlow (Keras 3).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEQUENCE = 128
PROMPT, GENERATED, GPT_VOCABULARY = 32, 128, 5000


# ---------------------------------------------------------------------- models


def encoder(keras, vocabulary: int = 20000, d: int = 256, heads: int = 8, ff: int = 1024,
            blocks: int = 4, initializer: str = "glorot_uniform"):
    """The benchmark encoder: Embedding, then post-norm Transformer blocks."""
    tokens = keras.Input((SEQUENCE,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocabulary, d, embeddings_initializer=initializer,
                               name="embed")(tokens)
    for i in range(blocks):
        attended = keras.layers.MultiHeadAttention(heads, d // heads,
                                                   kernel_initializer=initializer,
                                                   name=f"mha{i}")(x, x)
        x = keras.layers.LayerNormalization(name=f"ln{i}a")(keras.layers.Add()([x, attended]))
        f = keras.layers.Dense(ff, activation="gelu", kernel_initializer=initializer,
                               name=f"ff{i}a")(x)
        f = keras.layers.Dense(d, kernel_initializer=initializer, name=f"ff{i}b")(f)
        x = keras.layers.LayerNormalization(name=f"ln{i}b")(keras.layers.Add()([x, f]))
    return keras.Model(tokens, x)


def gpt(keras, vocabulary: int = GPT_VOCABULARY, d: int = 256, heads: int = 4,
        blocks: int = 4):
    """The generation benchmark's decoder: token and position Embeddings, pre-norm blocks
    of causal MultiHeadAttention and a gelu feed-forward, logits over the vocabulary."""
    L = keras.layers
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    positions = keras.Input((None,), dtype="int32", name="positions")
    x = L.Add()([L.Embedding(vocabulary, d)(tokens),
                 L.Embedding(PROMPT + GENERATED, d)(positions)])
    for _ in range(blocks):
        h = L.LayerNormalization()(x)
        x = L.Add()([x, L.MultiHeadAttention(heads, d // heads)(h, h, use_causal_mask=True)])
        h = L.Dense(4 * d, activation="gelu")(L.LayerNormalization()(x))
        x = L.Add()([x, L.Dense(d)(h)])
    return keras.Model([tokens, positions], L.Dense(vocabulary, name="logits")(
        L.LayerNormalization()(x)))


def large_blocks(large_mb: int) -> int:
    """Blocks of d 1024 (12.6M parameters each) after a 32000 x 1024 Embedding for about
    ``large_mb`` MiB of float32 weights: 3 for 256 MiB, 49 (650M parameters) for 2.5 GB."""
    per_block = 4 * (1024 * 1024 + 1024) + 2 * 1024 * 4096 + 4096 + 1024 + 4 * 1024
    return max(1, round((large_mb * 2**20 / 4 - 32000 * 1024) / per_block))


def build_models(folder: str, large_mb: int) -> None:
    """(worker) Save the benchmark encoder and the large model with Keras 3. The large
    model's weights are constants (quick to make): conversion speed does not depend on
    the values."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    encoder(keras).save(os.path.join(folder, "encoder.keras"))
    gpt(keras).save(os.path.join(folder, "gpt.keras"))
    encoder(keras, vocabulary=32000, d=1024, heads=16, ff=4096, blocks=large_blocks(large_mb),
            initializer=keras.initializers.Constant(0.01)).save(
        os.path.join(folder, f"large_{large_mb}mb.keras"))


def fixture_models() -> list:
    return [p for p in sorted((ROOT / "fixtures").glob("keras*/*"))
            if p.suffix in (".keras", ".h5") and not p.name.endswith(".weights.h5")]


# ---------------------------------------------------------------------- conversion


def convert_stages(path: str, folder: str) -> dict:
    """(worker) Convert ``path`` as ``kerasonnx.convert`` does, timing every stage."""
    baseline = _peak_mb()
    import importlib

    convert_module = importlib.import_module("kerasonnx.convert")  # the module, not the function
    from kerasonnx.emit.builder import Builder, ExternalData
    from kerasonnx.load import load as load_file
    from kerasonnx.model import check_weights
    from kerasonnx.parse import parse

    imported = _peak_mb()
    finish = Builder.finish
    check_time = []

    def timed_finish(self, *args):
        start = time.perf_counter()
        try:
            return finish(self, *args)
        finally:
            check_time.append(time.perf_counter() - start)

    Builder.finish = timed_finish
    stages = {}
    cpu = time.process_time()
    start = time.perf_counter()
    saved = load_file(path)
    stages["load"] = time.perf_counter() - start
    start = time.perf_counter()
    graph = parse(saved)
    graph.source = saved
    check_weights(graph)
    stages["parse"] = time.perf_counter() - start
    external = convert_module.weight_bytes(graph) > convert_module.EXTERNAL_DATA_THRESHOLD
    start = time.perf_counter()
    data = ExternalData(folder) if external else None
    model = convert_module.to_onnx(graph, convert_module.DEFAULT_OPSET, data)
    stages["emit"] = time.perf_counter() - start - check_time[0]
    stages["check"] = check_time[0]
    graph.close()
    start = time.perf_counter()
    output = os.path.join(folder, "model.onnx")
    convert_module.ConversionResult(model, path, convert_module.DEFAULT_OPSET, data).save(output)
    stages["write"] = time.perf_counter() - start
    cpu = time.process_time() - cpu
    written = os.path.getsize(output) + (os.path.getsize(output + ".data") if external else 0)
    return {"stages": stages, "cpu": cpu, "import_mb": imported - baseline, "peak_mb": _peak_mb() - imported,
            "external": external, "written_mb": written / 2**20}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_seconds(path: Path, folder: str, repeats: int = 3) -> float:
    """Best time to copy the file (its pages read once before, like conversion's)."""
    target = os.path.join(folder, "copy")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        shutil.copyfile(path, target)
        times.append(time.perf_counter() - start)
        os.unlink(target)
    return min(times)


def conversion_table(models: list, tf2onnx_times: dict) -> None:
    print("\nconversion, each model in a fresh process (wall seconds per stage, CPU seconds "
          "in all; peak memory in MiB above the interpreter after imports):")
    header = (f"  {'model':<44} {'MiB':>7} {'load':>6} {'parse':>6} {'emit':>6} {'check':>6} "
              f"{'write':>6} {'total':>6} {'CPU':>6} {'copy':>6} {'ratio':>6} {'peak':>6}")
    print(header + ("  tf2onnx" if tf2onnx_times else ""))
    for path in models:
        with tempfile.TemporaryDirectory(prefix="kerasonnx-bench-") as folder:
            copy = copy_seconds(path, folder)
            result = _worker("convert", str(path), folder)
        name = _short(path)
        if "error" in result:
            print(f"  {name:<44} not convertible: {result['error'][:60]}")
            continue
        stages = result["stages"]
        total = sum(stages.values())
        other = tf2onnx_times.get(str(path))
        print(f"  {name:<44} {path.stat().st_size / 2**20:7.1f} "
              + " ".join(f"{stages[s]:6.3f}" for s in ("load", "parse", "emit", "check", "write"))
              + f" {total:6.3f} {result['cpu']:6.3f} {copy:6.3f} "
              + (f"{total / copy:5.1f}x" if path.stat().st_size >= 2**20 else "     -")
              + f" {result['peak_mb']:6.0f}"
              + ("" if other is None else f"  {other}")
              + ("  (external data)" if result["external"] else ""))


def _short(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else path.name


def _worker(*args) -> dict:
    process = subprocess.run([sys.executable, __file__, "_worker", *args],
                             capture_output=True, text=True)
    if process.returncode != 0:
        last = [line for line in process.stderr.splitlines() if line.strip()]
        return {"error": last[-1] if last else "failed"}
    return json.loads(process.stdout.splitlines()[-1])


# ---------------------------------------------------------------------- start-up


def startup(encoder_path: Path, repeats: int = 5) -> None:
    """Fresh processes, interleaved: import, CLI conversion, and copying the file."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached
    commands = {
        "import kerasonnx.cli": [sys.executable, "-c", "import kerasonnx.cli"],
        "kerasonnx convert encoder": [sys.executable, "-m", "kerasonnx", "convert",
                                      str(encoder_path), "-o", "{out}", "-q"],
        "cp encoder.keras": ["cp", str(encoder_path), "{out}"],
    }
    samples = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="kerasonnx-bench-") as folder:
        out = os.path.join(folder, "out")
        subprocess.run(commands["kerasonnx convert encoder"][:-3] + ["-o", out, "-q"], env=env,
                       stdout=subprocess.DEVNULL)
        for _ in range(repeats):
            for name, command in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run([out if part == "{out}" else part for part in command],
                               env=env, check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                samples[name].append((wall, cpu))
    print(f"start-up, fresh processes, median of {repeats} interleaved (wall / CPU seconds):")
    for name, values in samples.items():
        print(f"  {name:<28} {statistics.median(w for w, _ in values):6.3f} / "
              f"{statistics.median(c for _, c in values):6.3f}")


# ---------------------------------------------------------------------- tf2onnx


def tf2onnx_times(models: list) -> dict:
    """Seconds per model through tf2onnx (a note when it fails), TensorFlow imported once
    per dialect; {} when tf2onnx is not installed."""
    try:
        import importlib.util
        if importlib.util.find_spec("tf2onnx") is None:
            return {}
    except ImportError:
        return {}
    times = {}
    for dialect, suffix in (("keras3", ".keras"), ("keras2", ".h5")):
        chosen = [str(p) for p in models if p.suffix == suffix]
        if chosen:
            times.update(_worker("tf2onnx", dialect, *chosen))
    return times


def tf2onnx_convert(dialect: str, paths: list) -> dict:
    """(worker) Convert every model with tf2onnx; seconds (load + conversion) per model."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["TF_USE_LEGACY_KERAS"] = "1" if dialect == "keras2" else "0"
    import logging
    logging.disable(logging.WARNING)
    if dialect == "keras2":
        import tf_keras as keras
        import tf2onnx
    else:
        import keras
    times = {}
    with tempfile.TemporaryDirectory(prefix="kerasonnx-bench-") as folder:
        for path in paths:
            start = time.perf_counter()
            try:
                model = keras.models.load_model(path, compile=False)
                output = os.path.join(folder, "model.onnx")
                if dialect == "keras2":
                    tf2onnx.convert.from_keras(model, output_path=output)
                else:  # Keras exports only a model that was called once
                    model([np.zeros([1 if d is None else d for d in t.shape],
                                    t.dtype if isinstance(t.dtype, str) else t.dtype.name)
                           for t in model.inputs])
                    model.export(output, format="onnx", verbose=False)
                seconds = time.perf_counter() - start
                session(open(output, "rb").read())  # tf2onnx may write ops it could not map
                times[path] = f"{seconds:7.2f}"
            except Exception as exc:  # any failure of the other converter is a result
                times[path] = (f"fails after {time.perf_counter() - start:.1f} s: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}")
    return times


# ---------------------------------------------------------------------- latency


def session(model_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def gemm_floor(model, attention_products: bool = False):
    """A graph of the model's matrix products alone: every MatMul whose right operand is a
    weight, in graph order, with the same weights, each fed the previous one's output.
    ``attention_products`` adds, per Attention node, the two products of its core:
    q kᵀ of (batch, heads, T, key_dim) by (batch, heads, key_dim, T), and those logits by
    v of (batch, heads, T, value_dim), on inputs ``q``, ``kt`` and ``v``."""
    import onnx
    from onnx import helper

    weights = {t.name: t for t in model.graph.initializer}
    products = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    first = weights[products[0].input[1]].dims[0]
    nodes, previous = [], "x"
    for i, node in enumerate(products):
        nodes.append(helper.make_node("MatMul", [previous, node.input[1]], [f"y{i}"]))
        previous = f"y{i}"
    inputs = [helper.make_tensor_value_info("x", 1, ["batch", SEQUENCE, first])]
    outputs = [helper.make_tensor_value_info(previous, 1, ["batch", SEQUENCE,
                                                           weights[products[-1].input[1]].dims[1]])]
    if attention_products:
        producers = {n.output[0]: n for n in model.graph.node}
        for i, node in enumerate(n for n in model.graph.node if n.op_type == "Attention"):
            heads = next(a.i for a in node.attribute if a.name == "q_num_heads")
            query, value = (weights[producers[producers[name].input[0]].input[1]].dims[1]
                            for name in (node.input[0], node.input[2]))
            if i == 0:
                inputs += [helper.make_tensor_value_info(name, 1, ["batch", heads, *dims])
                           for name, dims in (("q", (SEQUENCE, query // heads)),
                                              ("kt", (query // heads, SEQUENCE)),
                                              ("v", (SEQUENCE, value // heads)))]
            nodes += [helper.make_node("MatMul", ["q", "kt"], [f"logits{i}"]),
                      helper.make_node("MatMul", [f"logits{i}", "v"], [f"context{i}"])]
            outputs.append(helper.make_tensor_value_info(
                f"context{i}", 1, ["batch", heads, SEQUENCE, value // heads]))
    graph = helper.make_graph(nodes, "gemm_floor", inputs, outputs,
                              [weights[n.input[1]] for n in products])
    floor = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    floor.ir_version = 8
    onnx.checker.check_model(floor)
    return floor, first


def latency(encoder_path: Path, runs: int) -> None:
    import kerasonnx

    models = {f"encoder opset {opset}": kerasonnx.convert(encoder_path, opset=opset).model
              for opset in (23, 17)}
    floor, width = gemm_floor(models["encoder opset 23"])
    full_floor, _ = gemm_floor(models["encoder opset 23"], attention_products=True)
    sessions = {name: session(m.SerializeToString()) for name, m in models.items()}
    sessions["matrix products alone"] = session(floor.SerializeToString())
    sessions["+ attention's products"] = session(full_floor.SerializeToString())
    print(f"\nonnxruntime latency, 2 threads, spinning off, {runs} interleaved runs "
          f"({max(5, runs // 3)} at batch 8), sequence {SEQUENCE} (median ms; ratio to the "
          f"matrix products with weights alone, and to those with attention's q kᵀ and "
          f"scores v too):")
    rng = np.random.default_rng(0)
    for batch, batch_runs in ((1, runs), (8, max(5, runs // 3))):
        feeds = {name: {"tokens": rng.integers(0, 20000, (batch, SEQUENCE)).astype(np.int32)}
                 for name in models}
        feeds["matrix products alone"] = {
            "x": rng.normal(size=(batch, SEQUENCE, width)).astype(np.float32)}
        feeds["+ attention's products"] = {
            i.name: rng.normal(size=[batch if d == "batch" else d for d in
                                     (v.dim_param or v.dim_value
                                      for v in i.type.tensor_type.shape.dim)]
                               ).astype(np.float32) for i in full_floor.graph.input}
        times = {name: [] for name in sessions}
        for name, s in sessions.items():  # warm up
            s.run(None, feeds[name])
        for _ in range(batch_runs):
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run(None, feeds[name])
                times[name].append(time.perf_counter() - start)
        bases = [statistics.median(times[n]) for n in ("matrix products alone",
                                                          "+ attention's products")]
        for name, samples in times.items():
            median = statistics.median(samples)
            print(f"  batch {batch}  {name:<24} {median * 1000:7.2f} ms  "
                  + "  ".join(f"{median / base:5.2f}x" for base in bases))


def generation(gpt_path: Path) -> None:
    """Greedy generation with and without the key/value cache (see the module docstring)."""
    import kerasonnx

    print(f"\ngenerating {GENERATED} tokens after a {PROMPT}-token prompt, batch 1, "
          f"2 threads, spinning off (per-token ms over the first / last 16 tokens):")
    prompt = np.random.default_rng(0).integers(1, GPT_VOCABULARY, (1, PROMPT)).astype(np.int32)
    for opset in (23, 17):
        loops = {"whole prefix each token": _generate_uncached,
                 "key/value cache": _generate_cached}
        results = {}
        for name, loop in loops.items():
            model = kerasonnx.convert(gpt_path, opset=opset,
                                      with_past=loop is _generate_cached).model
            results[name] = loop(session(model.SerializeToString()), prompt)
        (plain_tokens, plain), (cached_tokens, cached) = results.values()
        for name, (_, steps) in results.items():
            print(f"  opset {opset}  {name:<24} {sum(steps):6.2f} s  "
                  f"{statistics.mean(steps[1:17]) * 1000:6.2f} / "
                  f"{statistics.mean(steps[-16:]) * 1000:6.2f} ms")
        print(f"  opset {opset}  cache speed-up {sum(plain) / sum(cached):.1f}x, same tokens: "
              f"{np.array_equal(plain_tokens, cached_tokens)}")


def _positions(start: int, end: int) -> np.ndarray:
    return np.arange(start, end, dtype=np.int32)[None]


def _generate_uncached(s, prompt) -> tuple:
    """Run the whole sequence for every new token; (tokens, seconds per step)."""
    tokens, steps = prompt, []
    for _ in range(GENERATED):
        start = time.perf_counter()
        logits = s.run(None, {"tokens": tokens, "positions": _positions(0, tokens.shape[1])})[0]
        steps.append(time.perf_counter() - start)
        tokens = np.concatenate([tokens, logits[:, -1:].argmax(-1).astype(np.int32)], 1)
    return tokens, steps


def _generate_cached(s, prompt) -> tuple:
    """The prompt on an empty cache, then one token and the cache at a time."""
    from kerasonnx.with_past import PAST_PREFIX, PRESENT_PREFIX, empty_cache
    past = empty_cache(s, 1)
    names = [o.name for o in s.get_outputs()]
    tokens, new, steps = prompt, prompt, []
    for _ in range(GENERATED):
        start = time.perf_counter()
        length = tokens.shape[1]
        outputs = s.run(None, {"tokens": new, "positions": _positions(length - new.shape[1],
                                                                      length), **past})
        steps.append(time.perf_counter() - start)
        past = {n.replace(PRESENT_PREFIX, PAST_PREFIX, 1): v
                for n, v in zip(names[1:], outputs[1:])}
        new = outputs[0][:, -1:].argmax(-1).astype(np.int32)
        tokens = np.concatenate([tokens, new], 1)
    return tokens, steps


# ---------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        kind, *args = sys.argv[2:]
        if kind == "build":
            build_models(args[0], int(args[1]))
            print("{}")
        elif kind == "convert":
            print(json.dumps(convert_stages(*args)))
        else:
            print(json.dumps(tf2onnx_convert(args[0], args[1:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30,
                        help="latency samples per model at batch 1 (a third at batch 8)")
    parser.add_argument("--large-mb", type=int, default=256,
                        help="size of the generated large model's weights, in MiB")
    parser.add_argument("--only", choices=["startup", "conversion", "latency", "generation"],
                        default=None)
    parser.add_argument("--no-fixtures", action="store_true",
                        help="convert only the encoder and the large model")
    parser.add_argument("--tf2onnx-fixtures", action="store_true",
                        help="also convert every fixture with tf2onnx (slow)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="kerasonnx-bench-models-") as folder:
        result = _worker("build", folder, str(args.large_mb))
        if "error" in result:
            sys.exit(f"building the benchmark models needs Keras 3: {result['error']}")
        encoder_path = Path(folder) / "encoder.keras"
        large_path = Path(folder) / f"large_{args.large_mb}mb.keras"
        if args.only in (None, "startup"):
            startup(encoder_path)
        if args.only in (None, "conversion"):
            models = ([] if args.no_fixtures else fixture_models()) + [encoder_path, large_path]
            compared = models if args.tf2onnx_fixtures else [encoder_path, large_path]
            conversion_table(models, tf2onnx_times(compared))
        if args.only in (None, "latency"):
            latency(encoder_path, args.runs)
        if args.only in (None, "generation"):
            generation(Path(folder) / "gpt.keras")


if __name__ == "__main__":
    main()
