"""Emitters for the reshaping family (see converter/layers/reshaping.py)."""
from __future__ import annotations
