"""Merge methods, each a small object registered by name in ``registry.py``."""

from luminary.merge.methods.registry import METHODS, get_method

__all__ = ["METHODS", "get_method"]
