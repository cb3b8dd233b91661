"""Protocols: which classes and samples each session trains on, and what it is tested on.

- ``joint``: one session over all 32 classes (general recognition).
- ``class_incremental``: ARIC's 7 steps of {8, 4, 4, 4, 4, 4, 4} classes
  in a class order; session t trains on the training samples of its new
  classes only and is tested on the test samples of every class seen so far.
- ``few_shot`` (FSCIL, as CEC/FACT on CIFAR-100: 60 base classes then 5-way
  5-shot sessions): a base session with all training samples of the first
  ``base_classes`` classes, then sessions of ``ways`` new classes with
  exactly ``shots`` training samples each (seeded choice); tested on all
  classes seen so far. ARIC's own few-shot numbers were not found; the
  defaults here (16 base, 4-way 5-shot, 4 sessions) are luminary's.

The class order is ``frequency`` (ARIC's list, head first), ``seeded`` (a
permutation drawn from ``order_seed``, as PyCIL's ``shuffle`` with a seed)
or an explicit list of the 32 names, each exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from luminary.activity.layout import CLASSES, STEPS
from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.seed import derive_seed


class ProtocolConfig(Config):
    kind: Literal["joint", "class_incremental", "few_shot"] = "class_incremental"
    class_order: Literal["frequency", "seeded"] | list[str] = Field(
        "frequency", description="frequency (ARIC's list), seeded (order_seed), or the 32 names")
    order_seed: int = 1993  # PyCIL's default seed
    steps: list[int] = Field(default_factory=lambda: list(STEPS), description="classes per step (class_incremental)")
    base_classes: int = Field(16, ge=1, description="few_shot: classes of the base session")
    ways: int = Field(4, ge=1, description="few_shot: new classes per session")
    shots: int = Field(5, ge=1, description="few_shot: training samples per new class")
    preset: Literal["cec_cifar"] | None = Field(
        None, description="few_shot: CEC/FACT's CIFAR-100 setting scaled to ARIC: 5-way 5-shot sessions over "
        "the last 40% of the classes (whole sessions), the first 60% as the base")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict) and data.get("preset") == "cec_cifar":  # CIFAR-100: 60 base, 8 x 5-way 5-shot
            sessions = int(0.4 * len(CLASSES)) // 5
            data = {**data, "ways": 5, "shots": 5, "base_classes": len(CLASSES) - 5 * sessions}
        return data


@dataclass(frozen=True)
class Session:
    """One training session: its new classes, the training rows it sees, the test rows it is scored on."""

    number: int
    new_classes: tuple[int, ...]
    seen_classes: tuple[int, ...]
    train: np.ndarray  # rows of the training split
    test: np.ndarray  # rows of the test split (all seen classes)


def class_order(order: str | list[str], seed: int = 0) -> list[int]:
    """The class order as indices into :data:`CLASSES`; a list must name each class exactly once."""
    if order == "frequency":
        return list(range(len(CLASSES)))
    if order == "seeded":
        rng = np.random.default_rng(derive_seed("class-order", seed))
        return [int(c) for c in rng.permutation(len(CLASSES))]
    if isinstance(order, str):
        raise LuminaryError(f"protocol.class_order: expected frequency, seeded or a list, got {order!r}")
    unknown = [c for c in order if c not in CLASSES]
    if unknown:
        raise LuminaryError(f"protocol.class_order: unknown class '{unknown[0]}'")
    repeated = sorted({c for c in order if order.count(c) > 1})
    if repeated:
        raise LuminaryError(f"protocol.class_order: class '{repeated[0]}' appears more than once")
    missing = [c for c in CLASSES if c not in order]
    if missing:
        raise LuminaryError(f"protocol.class_order: omits {len(missing)} class(es), first '{missing[0]}'")
    return [CLASSES.index(c) for c in order]


def _rows(labels: np.ndarray, classes) -> np.ndarray:
    return np.flatnonzero(np.isin(labels, list(classes)))


def build_sessions(config: ProtocolConfig, train_labels: np.ndarray, test_labels: np.ndarray) -> list[Session]:
    """The sessions of ``config`` over a split's labels (each checked to hold samples)."""
    order = class_order(config.class_order, config.order_seed)
    if config.kind == "joint":
        groups = [order]
    elif config.kind == "class_incremental":
        if sum(config.steps) != len(order) or min(config.steps, default=0) < 1:
            raise LuminaryError(f"protocol.steps: {config.steps} must be positive and add up to {len(order)}")
        bounds = np.cumsum([0, *config.steps])
        groups = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        rest = len(order) - config.base_classes
        if rest <= 0 or rest % config.ways:
            raise LuminaryError(f"protocol: {len(order)} classes minus base_classes {config.base_classes} must be "
                                f"a positive multiple of ways {config.ways}")
        groups = [order[:config.base_classes]] + [order[i:i + config.ways]
                                                  for i in range(config.base_classes, len(order), config.ways)]
    sessions, seen = [], []
    for number, group in enumerate(groups):
        seen = seen + list(group)
        train = _rows(train_labels, group)
        if config.kind == "few_shot" and number > 0:
            train = _shots(train_labels, group, config.shots, derive_seed("shots", config.order_seed, number))
        empty = [CLASSES[c] for c in group if not np.any(train_labels == c)]
        if empty:
            raise LuminaryError(f"protocol: class '{empty[0]}' has no training sample in this split")
        sessions.append(Session(number, tuple(group), tuple(seen), train, _rows(test_labels, seen)))
    return sessions


def _shots(labels: np.ndarray, group, shots: int, seed: int) -> np.ndarray:
    """Exactly ``shots`` training rows per class of ``group``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in group:
        rows = np.flatnonzero(labels == c)
        if len(rows) < shots:
            raise LuminaryError(f"protocol.shots: class '{CLASSES[c]}' has {len(rows)} training samples, "
                                f"fewer than {shots}")
        chosen.append(np.sort(rng.choice(rows, size=shots, replace=False)))
    return np.concatenate(chosen)
