"""Emitters for the pooling family (see converter/layers/pooling.py)."""
from __future__ import annotations
