"""Models whose weights live in an external data file: a model made large by a big
Embedding, converted with external data (on request, or past a lowered threshold), run by
onnxruntime from its path and compared with Keras; byte-identical reruns; nothing left
behind when converting or saving fails. Plus the start-up path: `kerasonnx convert` imports
neither onnxruntime nor TensorFlow."""
from __future__ import annotations

import gc
import importlib
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import kerasonnx
from kerasonnx.cli import main
from kerasonnx.emit.builder import PAYLOAD_BYTES, Builder, ExternalData
from kerasonnx.emit.precision import TOLERANCES
from kerasonnx.ir import Graph, Tensor
from conftest import fixture_path
from keras_check import BATCHES, LENGTHS, OPSETS, assert_same, keras_outputs, make_inputs, \
    model_cache

convert_module = importlib.import_module("kerasonnx.convert")  # the module, not the function
BIG_VOCAB = 3000  # a 3000 x 32 float32 table: 375 KiB, the biggest tensor by far


def big_embedding(k):
    tokens = k.Input((None,), dtype="int32", name="tokens")
    x = k.layers.Embedding(BIG_VOCAB, 32, name="embed")(tokens)
    x = k.layers.MultiHeadAttention(2, 16, name="mha")(x, x)
    return k.Model(tokens, k.layers.Dense(8, name="head")(x))


def refused_upsampling(k):
    """A big Embedding, then a bicubic UpSampling2D, which kerasonnx refuses (after the
    Embedding's weights were written)."""
    tokens = k.Input((8,), dtype="int32", name="tokens")
    x = k.layers.Embedding(BIG_VOCAB, 32, name="embed")(tokens)
    x = k.layers.Reshape((8, 32, 1), name="image")(x)
    return k.Model(tokens, k.layers.UpSampling2D(interpolation="bicubic", name="up")(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return model_cache(tmp_path_factory.mktemp("external"),
                       {"big_embedding": big_embedding, "refused_upsampling": refused_upsampling})


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def folder_files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("dialect", ["keras3", "keras2"])
def test_external_data_model_equals_keras(models, dialect, tmp_path):
    model, path = models("big_embedding", dialect)
    rng = np.random.default_rng(2)
    for opset in OPSETS:
        result = kerasonnx.convert(path, opset=opset, external_data=True, data_folder=tmp_path)
        output = tmp_path / f"model{opset}.onnx"
        result.save(output)
        assert {output.name, f"{output.name}.data"} <= set(folder_files(tmp_path))
        stored = onnx.load(output, load_external_data=False)
        big = [t for t in stored.graph.initializer
               if t.data_location == onnx.TensorProto.EXTERNAL]
        assert "embed/embeddings" in {t.name for t in big}
        assert all(dict((e.key, e.value) for e in t.external_data)["location"]
                   == f"model{opset}.onnx.data" for t in big)
        assert output.stat().st_size < 64 * 1024 < (tmp_path / f"{output.name}.data").stat().st_size
        onnx.checker.check_model(str(output))
        loaded = session(output)
        for batch in BATCHES:
            for length in LENGTHS:
                arrays = make_inputs(model, batch, length, rng, tokens={"tokens": BIG_VOCAB})
                assert_same(keras_outputs(model, arrays),
                            loaded.run(None, {"tokens": arrays[0]}),
                            f"{path.name} opset {opset} batch {batch} length {length}")



@pytest.mark.parametrize("opset", OPSETS)
def test_half_precision_reads_back_weights_written_to_external_data(models, opset, tmp_path):
    """--precision float16 re-stores folded float32 weights in half: from the external data
    file as from an inline model, the same numbers (and within float16 tolerance of Keras)."""
    model, path = models("big_embedding", "keras3")
    inline = kerasonnx.convert(path, opset=opset, precision="float16", external_data=False)
    external = kerasonnx.convert(path, opset=opset, precision="float16", external_data=True,
                                 data_folder=tmp_path)
    external.save(tmp_path / "half.onnx")
    stored = onnx.load(tmp_path / "half.onnx", load_external_data=False)
    assert {t.data_type for t in stored.graph.initializer
            if t.name.startswith("embed/")} == {onnx.TensorProto.FLOAT16}
    arrays = make_inputs(model, 3, 5, np.random.default_rng(4), tokens={"tokens": BIG_VOCAB})
    ours = session(tmp_path / "half.onnx").run(None, {"tokens": arrays[0]})
    inline_session = ort.InferenceSession(inline.model.SerializeToString(),
                                          providers=["CPUExecutionProvider"])
    assert_same(inline_session.run(None, {"tokens": arrays[0]}), ours, "inline vs external",
                atol=0)
    atol, rtol = TOLERANCES["float16"]  # verify's documented float16 tolerance
    assert_same(keras_outputs(model, arrays), ours, "float16 vs Keras", atol, rtol)

def test_cli_external_data_reruns_are_byte_identical(models, tmp_path):
    _, path = models("big_embedding", "keras3")
    written = []
    for folder in (tmp_path / "first", tmp_path / "second"):
        folder.mkdir()
        result = run("convert", path, "-o", folder / "model.onnx", "--external-data")
        assert result.exit_code == 0, result.output
        assert f"weights in {folder / 'model.onnx.data'}" in result.output
        assert folder_files(folder) == ["model.onnx", "model.onnx.data"]
        written.append([(folder / name).read_bytes() for name in folder_files(folder)])
    assert written[0] == written[1]


def test_weights_past_the_threshold_go_to_external_data(models, tmp_path, monkeypatch):
    _, path = models("big_embedding", "keras2")
    monkeypatch.setattr(convert_module, "EXTERNAL_DATA_THRESHOLD", 100_000)
    assert kerasonnx.convert(path, data_folder=tmp_path).data is not None
    inline = kerasonnx.convert(path, external_data=False)
    assert inline.data is None
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL
                   for t in inline.model.graph.initializer)
    result = run("convert", path, "-o", tmp_path / "inline.onnx", "--no-external-data")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "inline.onnx.data").exists()


def test_a_failed_conversion_leaves_nothing(models, tmp_path):
    _, path = models("refused_upsampling", "keras3")
    output = tmp_path / "out" / "model.onnx"
    output.parent.mkdir()
    result = run("convert", path, "-o", output, "--external-data")
    assert result.exit_code == 2
    assert "bicubic" in result.stderr
    assert folder_files(output.parent) == []
    with pytest.raises(kerasonnx.ConversionError):
        kerasonnx.convert(path, external_data=True, data_folder=output.parent)
    assert folder_files(output.parent) == []


def test_a_failed_save_leaves_nothing_and_the_data_goes_with_the_result(models, tmp_path):
    _, path = models("big_embedding", "keras3")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = kerasonnx.convert(path, external_data=True, data_folder=scratch)
    assert len(folder_files(scratch)) == 1  # the data, written while converting
    with pytest.raises(kerasonnx.ConversionError, match="cannot write there"):
        result.save(tmp_path / "missing" / "model.onnx")
    assert not (tmp_path / "missing").exists()
    del result
    gc.collect()
    assert folder_files(scratch) == []


def test_saving_twice_copies_the_placed_data(models, tmp_path):
    _, path = models("big_embedding", "keras3")
    result = kerasonnx.convert(path, external_data=True, data_folder=tmp_path)
    result.save(tmp_path / "a.onnx")
    result.save(tmp_path / "b.onnx")
    assert folder_files(tmp_path) == ["a.onnx", "a.onnx.data", "b.onnx", "b.onnx.data"]
    assert (tmp_path / "a.onnx.data").read_bytes() == (tmp_path / "b.onnx.data").read_bytes()
    del result
    gc.collect()
    assert len(folder_files(tmp_path)) == 4  # placed files are never removed


def test_verify_takes_an_onnx_path_with_external_data(models, tmp_path):
    _, path = models("big_embedding", "keras3")
    kerasonnx.convert(path, external_data=True, data_folder=tmp_path).save(tmp_path / "m.onnx")
    report = kerasonnx.verify(path, tmp_path / "m.onnx", batches=(2,), lengths=(5,))
    assert report.passed, report.summary()


def test_verify_refuses_an_in_memory_model_with_external_data(models, tmp_path):
    _, path = models("big_embedding", "keras3")
    result = kerasonnx.convert(path, external_data=True, data_folder=tmp_path)
    with pytest.raises(kerasonnx.ConversionError, match="pass its path"):
        kerasonnx.verify(path, result.model)


def test_pruned_weights_are_dropped_from_the_data_file(tmp_path):
    """A big constant that no output needs leaves no bytes behind in the data file."""
    data = ExternalData(tmp_path)
    builder = Builder(23, data)
    x = Tensor("x", (None, 300), "float32")
    y = Tensor("y", (None, 300), "float32")
    builder.bind(x, "x")
    unused = builder.constant("unused", np.ones((300,), np.float32))
    weight = np.arange(300, dtype=np.float32)
    builder.bind(y, builder.op("Add", ["x", builder.constant("used", weight)], "y"))
    assert weight.nbytes >= PAYLOAD_BYTES and unused
    graph = Graph("g", "keras3", None, inputs=[x], outputs=[y], output_names=["y"])
    model = builder.finish(graph, "g")
    result = convert_module.ConversionResult(model, "test", 23, data)
    result.save(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx.data").read_bytes() == weight.tobytes()
    (actual,) = session(tmp_path / "m.onnx").run(None, {"x": np.zeros((1, 300), np.float32)})
    assert np.array_equal(actual[0], weight)


def test_compressed_keras_zip_converts_the_same(tmp_path):
    """Keras stores model.weights.h5 uncompressed and kerasonnx reads it in place; a
    re-compressed archive is decompressed in memory and gives the same model."""
    original = fixture_path("keras3", "transformer_encoder")
    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(deflated, "w",
                                                              zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    assert (kerasonnx.convert(deflated).model.SerializeToString()
            == kerasonnx.convert(original).model.SerializeToString())


def test_convert_imports_neither_onnxruntime_nor_tensorflow(tmp_path):
    code = ("import sys\nfrom kerasonnx.cli import main\n"
            f"main(['convert', {str(fixture_path('keras3', 'transformer_encoder'))!r}, '-o', "
            f"{str(tmp_path / 'm.onnx')!r}, '-q'], standalone_mode=False)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'onnxruntime', 'tensorflow', 'keras', 'tf_keras'}))")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines()[-1] == "[]"


def test_progress_bar_waits_a_second_then_counts_weight_bytes(monkeypatch, capsys):
    from kerasonnx import cli

    clock = iter([0.0, 0.5, 1.5, 1.55, 2.0])
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    bar = cli.ProgressBar()  # started at 0.0
    bar(1 << 20, 4 << 20)  # 0.5 s: too early to draw
    assert capsys.readouterr().err == ""
    bar(2 << 20, 4 << 20)  # 1.5 s
    bar(3 << 20, 4 << 20)  # 1.55 s: drawn at most ten times a second
    assert capsys.readouterr().err == "\rconverting [" + "#" * 15 + "." * 15 + "] 2 of 4 MiB of weights"
    bar(4 << 20, 4 << 20)  # 2.0 s
    bar.close()
    assert capsys.readouterr().err.endswith("] 4 of 4 MiB of weights\n")


def test_quiet_or_not_a_terminal_prints_no_progress(tmp_path):
    result = run("convert", fixture_path("keras3", "transformer_encoder"), "-o",
                 tmp_path / "m.onnx")
    assert result.exit_code == 0 and result.stderr == ""
