"""Rebuild every fixture with the installed Keras 3 and tf_keras and check inspect against
what live Keras records now, so the parser is tested against today's Keras, not only
against the committed files."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import (FIXTURES, ROOT, assert_inspect_matches_keras, fixture_cells,
                      load_manifest, requires_keras)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures")
    subprocess.run([sys.executable, str(ROOT / "fixtures" / "generate.py"), "--out", str(out)],
                   check=True, capture_output=True, text=True)
    return out


def _layer_facts(manifest: dict) -> dict:
    return {(e["name"], e["dialect"]): (e["inputs"], e["outputs"],
                                        [(layer["name"], layer["class_name"], layer["params"],
                                          layer["output_shapes"]) for layer in e["layers"]])
            for e in manifest["fixtures"]}


@requires_keras
def test_committed_fixtures_match_live_keras(rebuilt):
    assert _layer_facts(load_manifest(rebuilt)) == _layer_facts(load_manifest(FIXTURES))


@requires_keras
def test_inspect_matches_live_keras(rebuilt):
    cells = fixture_cells(rebuilt)
    assert len(cells) == len(fixture_cells())
    for cell in cells:
        entry, _fmt, path, weights = cell.values
        assert_inspect_matches_keras(entry, path, weights, rebuilt)
