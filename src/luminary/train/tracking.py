"""A metric of the step records, watched: the best checkpoint and early stopping.

``deploy.checkpoints.best`` keeps, among the checkpoints saved, the one whose
latest value of the metric is best (Hugging Face Trainer's
``metric_for_best_model``): it is never pruned, and ``checkpoints/best.json``
names it. ``deploy.early_stopping`` stops the run after ``patience``
evaluations in a row that do not beat the best value by more than
``min_delta`` (Keras' and Hugging Face's ``EarlyStopping``: improved when
v < best − δ for ``min``, v > best + δ for ``max``). Both states travel in
every checkpoint, so a resumed run watches on from where it was.
"""

from __future__ import annotations

import math
from typing import Any

from luminary.core.deploy import TrackedMetric
from luminary.core.errors import LuminaryError

EVALUATION_PREFIXES = ("eval_", "val_")


def lookup(record: dict[str, Any], dotted: str) -> float | None:
    """``record[a][b]`` for ``"a.b"``; None when absent or not a number."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def record_keys(record: dict[str, Any], prefix: str = "") -> list[str]:
    """Every numeric key of a record, dotted."""
    keys = []
    for key, value in record.items():
        if isinstance(value, dict):
            keys += record_keys(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            keys.append(f"{prefix}{key}")
    return keys


class MetricWatch:
    """The best value of one metric so far, and how many evaluations since it improved."""

    def __init__(self, config: TrackedMetric, field: str, min_delta: float = 0.0):
        self.config, self.field, self.min_delta = config, field, min_delta
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0

    def value(self, record: dict[str, Any]) -> float | None:
        """The metric in ``record``; a record that carries evaluation results but not the metric is a typo."""
        value = lookup(record, self.config.metric)
        if value is None and any(k.startswith(EVALUATION_PREFIXES) for k in record):
            keys = [k for k in record_keys(record) if k.startswith(EVALUATION_PREFIXES)]
            raise LuminaryError(f"{self.field}.metric: '{self.config.metric}' is not in the step records "
                                f"(evaluation logs: {', '.join(keys)})")
        return value

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.config.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float, step: int) -> bool:
        """Take one evaluation; True when it is the new best."""
        if self.improves(value):
            self.best, self.best_step, self.stale = value, step, 0
            return True
        self.stale += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step, self.stale = state.get("best"), state.get("best_step"), state.get("stale", 0)
