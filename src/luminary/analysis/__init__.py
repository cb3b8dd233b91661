"""Analyses over checkpoints (Analysis360's, and beyond): memorization, curves, benchmarks, the HTML report."""
