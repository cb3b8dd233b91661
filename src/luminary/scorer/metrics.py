"""How well a scorer ranks: AUC, pairwise accuracy, choice accuracy.

AUC is the Mann–Whitney statistic: the probability that a random positive
scores above a random negative, ties counted one half,
AUC = (1 / (n₊ n₋)) Σᵢ Σⱼ [s⁺ᵢ > s⁻ⱼ] + ½ [s⁺ᵢ = s⁻ⱼ]  (Hanley & McNeil, 1982),
computed by scikit-learn in O(n log n).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from luminary.core.errors import LuminaryError


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties ½: scikit-learn's ``roc_auc_score``
    (the area under the ROC curve equals the Mann–Whitney statistic above)."""
    from sklearn.metrics import roc_auc_score

    n_pos, n_neg = len(positive), len(negative)
    if n_pos == 0 or n_neg == 0:
        raise LuminaryError(f"AUC needs positives and negatives (got {n_pos} and {n_neg})")
    labels = np.concatenate([np.ones(n_pos), np.zeros(n_neg)])
    scores = np.concatenate([np.asarray(positive, float), np.asarray(negative, float)])
    return float(roc_auc_score(labels, scores))


def label_auc(examples: Sequence[dict[str, Any]], scores: Sequence[float]) -> float:
    """AUC of gold (label 1) against negatives (label 0) among labelled examples."""
    pos = [s for e, s in zip(examples, scores) if float(e["label"]) == 1.0]
    neg = [s for e, s in zip(examples, scores) if float(e["label"]) == 0.0]
    return auc(pos, neg)


def choice_accuracy(groups: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    """Fraction of groups whose highest score is the gold index (first wins ties)."""
    if not groups:
        raise LuminaryError("no groups to score")
    hits = [int(np.argmax(np.asarray(g, float)) == k) for g, k in zip(groups, gold)]
    return float(np.mean(hits))
