"""Emitters for the operations family (see converter/layers/operations.py)."""
from __future__ import annotations
