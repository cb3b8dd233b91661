"""Continual-learning and imbalance metrics, as pure functions of predictions.

Notation: sessions t = 0..T−1; group j holds the classes new in session j;
a_{t,j} is the accuracy after session t on the test samples of group j
(j ≤ t), A_t the accuracy after session t on all test samples of the classes
seen so far.

- Average incremental accuracy (Rebuffi et al. 2017, iCaRL): Ā = (1/T) Σ_t A_t.
- Last-step accuracy: A_{T−1}.
- Forgetting (Chaudhry et al. 2018, RWalk):
  F = 1/(T−1) Σ_{j<T−1} [ max_{l∈{j..T−2}} a_{l,j} − a_{T−1,j} ].
- Per-class accuracy: recall of each class; macro accuracy: their mean over
  the classes with test samples (micro accuracy hides the tail).
- Head / medium / tail: macro accuracy over classes whose ARIC count is
  ≥ 10,000 / in [1,000, 10,000) / < 1,000 (9 / 13 / 10 classes).
- Few-shot performance drop (CEC, Zhang et al. 2021; FACT): PD = A_0 − A_{T−1}.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from luminary.activity.layout import CLASS_COUNTS, CLASSES

HEAD_MEDIUM_TAIL = (10_000, 1_000)


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(true))) if len(true) else float("nan")


def accuracy_matrix(groups: Sequence[Sequence[int]], preds: Sequence[np.ndarray],
                    trues: Sequence[np.ndarray]) -> np.ndarray:
    """(T, T) a_{t,j}; NaN above the diagonal. ``preds[t]``/``trues[t]``: session t's test predictions."""
    T = len(groups)
    matrix = np.full((T, T), np.nan)
    for t in range(T):
        pred, true = np.asarray(preds[t]), np.asarray(trues[t])
        for j in range(t + 1):
            mask = np.isin(true, list(groups[j]))
            matrix[t, j] = accuracy(pred[mask], true[mask])
    return matrix


def average_incremental_accuracy(step_accuracies: Sequence[float]) -> float:
    """Ā = (1/T) Σ_t A_t."""
    return float(np.mean(step_accuracies))


def forgetting(matrix: np.ndarray) -> float:
    """Chaudhry's F over the groups before the last: best earlier accuracy minus the final one."""
    T = matrix.shape[0]
    if T < 2:
        return 0.0
    drops = [np.nanmax(matrix[j:T - 1, j]) - matrix[T - 1, j] for j in range(T - 1)]
    return float(np.mean(drops))


def per_class_accuracy(pred: np.ndarray, true: np.ndarray) -> dict[int, float]:
    """Recall of each class that has test samples."""
    pred, true = np.asarray(pred), np.asarray(true)
    return {int(c): accuracy(pred[true == c], true[true == c]) for c in np.unique(true)}


def macro_accuracy(per_class: dict[int, float]) -> float:
    return float(np.mean(list(per_class.values()))) if per_class else float("nan")


def class_band(c: int, thresholds: tuple[int, int] = HEAD_MEDIUM_TAIL) -> str:
    """``head``, ``medium`` or ``tail`` by the class's ARIC instance count."""
    n = CLASS_COUNTS[CLASSES[c]]
    return "head" if n >= thresholds[0] else "medium" if n >= thresholds[1] else "tail"


def head_medium_tail(per_class: dict[int, float], thresholds: tuple[int, int] = HEAD_MEDIUM_TAIL) -> dict[str, float]:
    """Macro accuracy within each band (NaN for a band with no class)."""
    out = {}
    for band in ("head", "medium", "tail"):
        values = [a for c, a in per_class.items() if class_band(c, thresholds) == band]
        out[band] = float(np.mean(values)) if values else float("nan")
    return out


def performance_drop(step_accuracies: Sequence[float]) -> float:
    """PD = A_0 − A_{T−1}."""
    return float(step_accuracies[0] - step_accuracies[-1])


def confusion_matrix(pred: np.ndarray, true: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """(n, n) counts, rows the true class, columns the predicted."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(pred)), 1)
    return matrix


def summarize(groups: Sequence[Sequence[int]], preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> dict:
    """Every metric above for one method's sessions (the last session gives the per-class numbers)."""
    steps = [accuracy(p, t) for p, t in zip(preds, trues)]
    matrix = accuracy_matrix(groups, preds, trues)
    per_class = per_class_accuracy(preds[-1], trues[-1])
    return {
        "step_accuracy": steps,
        "average_incremental_accuracy": average_incremental_accuracy(steps),
        "last_accuracy": steps[-1],
        "forgetting": forgetting(matrix),
        "performance_drop": performance_drop(steps),
        "macro_accuracy": macro_accuracy(per_class),
        "per_class_accuracy": {CLASSES[c]: a for c, a in per_class.items()},
        **{f"{band}_accuracy": v for band, v in head_medium_tail(per_class).items()},
        "accuracy_matrix": [[None if np.isnan(v) else float(v) for v in row] for row in matrix],
    }
