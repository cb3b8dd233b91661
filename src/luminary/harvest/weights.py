"""Prompt weights (BertNet, specs/bertnet.md step 3).

Positives are the seed tuples; negatives are seeds with one entity swapped for
the same slot of another seed, twice as many as the positives. A prompt's raw
weight is

    w_p = (mean_pos − 0.5 · mean_neg) / temperature        (temperature 2)

the top 20 prompts are kept, softmaxed, weights below 0.05 dropped and the
rest renormalised to sum to one.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

TEMPERATURE = 2.0
TOP_PROMPTS = 20
MIN_WEIGHT = 0.05
NEGATIVES_PER_POSITIVE = 2


def negative_tuples(seeds: Sequence[Sequence[str]], per_positive: int = NEGATIVES_PER_POSITIVE,
                    seed: int = 0) -> list[list[str]]:
    """Seeds with one slot swapped for the same slot of another seed; none equals a seed."""
    rng = random.Random(seed)
    positives = {tuple(s) for s in seeds}
    negatives: list[list[str]] = []
    for i, tup in enumerate(seeds):
        made, tries = 0, 0
        while made < per_positive and tries < 100:
            tries += 1
            slot = rng.randrange(len(tup))
            other = rng.choice([j for j in range(len(seeds)) if j != i])
            fake = list(tup)
            fake[slot] = seeds[other][slot]
            if tuple(fake) in positives:
                continue
            negatives.append(fake)
            made += 1
    return negatives


def raw_weight(pos_scores: Sequence[float], neg_scores: Sequence[float], temperature: float = TEMPERATURE) -> float:
    """(mean_pos − 0.5·mean_neg)/temperature."""
    mean_neg = sum(neg_scores) / len(neg_scores) if neg_scores else 0.0
    return (sum(pos_scores) / len(pos_scores) - 0.5 * mean_neg) / temperature


def normalise(raw: dict[str, float], top: int = TOP_PROMPTS, min_weight: float = MIN_WEIGHT) -> dict[str, float]:
    """Top ``top`` by raw weight, softmax, drop below ``min_weight``, renormalise (best one always kept)."""
    best = sorted(raw, key=lambda p: -raw[p])[:top]
    peak = max(raw[p] for p in best)
    exp = {p: math.exp(raw[p] - peak) for p in best}
    total = sum(exp.values())
    soft = {p: v / total for p, v in exp.items()}
    kept = {p: w for p, w in soft.items() if w >= min_weight} or {best[0]: 1.0}
    total = sum(kept.values())
    return {p: w / total for p, w in sorted(kept.items(), key=lambda kv: -kv[1])}
