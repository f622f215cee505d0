"""Emitters for the third party family (see converter/layers/third_party.py)."""
from __future__ import annotations
