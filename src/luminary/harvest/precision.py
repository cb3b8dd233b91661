"""Precision of a harvest against ground truth: precision@n per relation.

A tuple matches a truth tuple when their entities agree after lower-casing and
collapsing whitespace. Seeds are left out of the ranking before the cut (the
harvest was told them; finding them again is not knowledge it found), so

    precision@n = |top n non-seed tuples ∩ truth| / n

with a tuple missing from a harvest shorter than n counted as wrong (a
harvest cannot raise its precision by returning less).
"""

from __future__ import annotations

from typing import Sequence

PRECISION_AT = 10


def normalise_tuple(entities: Sequence[str]) -> tuple[str, ...]:
    return tuple(" ".join(e.lower().split()) for e in entities)


def precision_at(tuples: Sequence[Sequence[str]], truth: Sequence[Sequence[str]], n: int = PRECISION_AT,
                 seeds: Sequence[Sequence[str]] = ()) -> dict:
    """``{"n", "hits", "found", "precision"}`` of ``tuples`` (best first) against ``truth``."""
    known = {normalise_tuple(t) for t in truth}
    skip = {normalise_tuple(s) for s in seeds}
    ranked = [normalise_tuple(t) for t in tuples if normalise_tuple(t) not in skip][:n]
    hits = sum(t in known for t in ranked)
    return {"n": n, "hits": hits, "found": len(ranked), "precision": hits / n}
