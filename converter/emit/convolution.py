"""Emitters for the convolution family (see converter/layers/convolution.py)."""
from __future__ import annotations
