"""Emitters for the recurrent family (see converter/layers/recurrent.py)."""
from __future__ import annotations
