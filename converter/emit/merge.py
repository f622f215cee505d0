"""Emitters for the merge family (see converter/layers/merge.py)."""
from __future__ import annotations
