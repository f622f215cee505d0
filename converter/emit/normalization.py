"""Emitters for the normalization family (see converter/layers/normalization.py)."""
from __future__ import annotations
