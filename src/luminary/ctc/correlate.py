"""Correlation of metric scores with human judgments, as CTC reports them.

Instance level: Pearson r, Spearman ρ and Kendall τ (τ-b, scipy's default)
between the metric's score and the human score of every example.
System level: first average both scores over the examples of each system
(``groupby(system).mean()`` in CTC's ``test_system_level_correlation.py``),
then correlate the per-system means.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl

CORRELATIONS = ("pearson", "spearman", "kendall")


def correlations(metric: Sequence[float], human: Sequence[float]) -> dict[str, float | None]:
    """Pearson, Spearman and Kendall coefficients (and p-values) of two equal-length lists."""
    import warnings

    from scipy import stats

    if len(metric) != len(human):
        raise LuminaryError(f"{len(metric)} metric scores but {len(human)} human scores")
    if len(metric) < 2:
        raise LuminaryError(f"a correlation needs at least 2 pairs, got {len(metric)}")
    out: dict[str, float | None] = {"n": len(metric)}
    for name, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            result = fn(metric, human)
        out[name] = _finite(result.statistic)
        out[f"{name}_p"] = _finite(result.pvalue)
    return out


def _finite(value) -> float | None:
    """A coefficient, or None where it is undefined (a constant list)."""
    value = float(value)
    return value if math.isfinite(value) else None


def system_means(metric: Sequence[float], human: Sequence[float], systems: Sequence[str]):
    """Per-system means of both scores, systems in first-seen order."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for m, h, s in zip(metric, human, systems):
        groups[s].append((m, h))
    names = list(groups)
    return (names, [sum(m for m, _ in groups[s]) / len(groups[s]) for s in names],
            [sum(h for _, h in groups[s]) / len(groups[s]) for s in names])


def correlate(metric: Sequence[float], human: Sequence[float], systems: Sequence[str] | None = None) -> dict:
    """Instance-level correlations, and system-level ones when systems are given."""
    report = {"instance": correlations(metric, human)}
    if systems is not None:
        _, m, h = system_means(metric, human, systems)
        report["system"] = correlations(m, h)
    return report


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LuminaryError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def correlate_files(scores_path: str | Path, human_path: str | Path, field: str, score_field: str = "score",
                    system_field: str | None = "system") -> dict:
    """Correlate ``score_field`` of SCORES with ``field`` of HUMAN, line by line.

    Systems come from HUMAN's ``system_field`` (else SCORES'); without one
    on every line only instance-level correlations are reported. When both
    files give an ``id`` on a line, the ids must agree.
    """
    scores = read_jsonl(scores_path, required=(score_field,))
    human = read_jsonl(human_path, required=(field,))
    if len(scores) != len(human):
        raise LuminaryError(f"{scores_path} has {len(scores)} lines but {human_path} has {len(human)}")
    for i, (s, h) in enumerate(zip(scores, human), 1):
        if "id" in s and "id" in h and s["id"] != h["id"]:
            raise LuminaryError(f"{scores_path}, {human_path}: example {i}: ids differ ({s['id']!r} vs {h['id']!r})")
    metric = [_number(s[score_field], f"{scores_path}: example {i}: '{score_field}'") for i, s in enumerate(scores, 1)]
    judged = [_number(h[field], f"{human_path}: example {i}: '{field}'") for i, h in enumerate(human, 1)]
    systems = None
    if system_field:
        for rows in (human, scores):
            if all(system_field in r for r in rows):
                systems = [str(r[system_field]) for r in rows]
                break
    return correlate(metric, judged, systems)
