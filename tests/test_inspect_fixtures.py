"""inspect against what real Keras recorded for every committed fixture, every saved form:
inputs, outputs, per-layer parameter counts and output shapes, in both dialects."""
from __future__ import annotations

import pytest

from conftest import assert_inspect_matches_keras, fixture_cells


@pytest.mark.parametrize("entry, fmt, path, weights", fixture_cells())
def test_inspect_matches_keras(entry, fmt, path, weights):
    assert_inspect_matches_keras(entry, path, weights)
