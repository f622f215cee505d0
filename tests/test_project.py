"""Project rules: no TensorFlow on the reading path; README in step with the code and CI."""
from __future__ import annotations

import re
import subprocess
import sys

from kerasonnx.layer_table import markdown_table
from conftest import ROOT, fixture_path

HEAVY = ("tensorflow", "keras", "tf_keras", "keras_multi_head", "keras_self_attention",
         "keras_pos_embd", "keras_layer_normalization", "keras_position_wise_feed_forward",
         "keras_embed_sim", "keras_transformer", "keras_bert")


def test_reading_and_converting_import_no_tensorflow_or_keras():
    fixtures = [fixture_path("keras3", "masked_encoder"), fixture_path("keras2", "kmh_attention"),
                fixture_path("keras2", "ops_nodes")]
    converted = [fixture_path("keras3", "three_attention"), fixture_path("keras2", "mha_4d"),
                 fixture_path("keras2", "keras_bert_pretraining")]
    code = (
        "import sys, kerasonnx, kerasonnx.cli\n"
        f"for path in {[str(p) for p in fixtures]!r}:\n"
        "    kerasonnx.inspect(path)\n"
        f"for path in {[str(p) for p in converted]!r}:\n"
        "    kerasonnx.convert(path, opset=23)\n"
        "    kerasonnx.convert(path, opset=17)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_readme_layer_table_is_generated_table():
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- layer-table:start -->\n(.*?)\n<!-- layer-table:end -->", readme,
                      re.S).group(1)
    assert table == markdown_table()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && python -m pytest' in readme
    assert 'pip install --quiet -e ".[test]"' in ci and "python -m pytest" in ci
