"""Learning-rate schedules as pure functions of the optimizer step.

A schedule counts optimizer updates, never micro-batches (Redco's schedule
counted micro-batches under gradient accumulation and stretched its decay).
Being pure, a schedule needs no state in a checkpoint: ``lr(step)`` is the same
before and after a resume.

For a step s (0-based) with warm-up W, peak p, warm-up start a, end e and decay
length D (t = s − W, clipped to [0, D]):

- warm-up (s < W):   a + (p − a) · s / W
- constant:          p
- linear:            p + (e − p) · t / D
- cosine:            e + (p − e) · (1 + cos(π t / D)) / 2
- inverse_sqrt:      p · √(W / s)  (Vaswani et al. 2017, fairseq's ``inverse_sqrt``; W taken as 1 when 0)
- wsd:               warm-up, then p (stable) until the last D steps of the phase, then a cool-down
                     to e over those D steps, linear p + (e − p)·u or ``1-sqrt`` e + (p − e)(1 − √u),
                     u = (s − (T − D)) / D (warmup-stable-decay: MiniCPM, Hu et al. 2024; the cool-down
                     shapes of Hägele et al. 2024); D defaults to 20% of the phase T

Phases chain (Crystal, ``specs/crystal.md``): a phase may take as its peak the
value where the previous phase stopped (``peak_lr: continue``, then re-warm and
decay as CrystalCoder's phase 2 does), or continue the previous phase's curve
itself (``kind: continue``, as if the phase boundary were not there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Union

from pydantic import Field, model_validator

from luminary.core.config import Config
from luminary.core.errors import LuminaryError


class ScheduleConfig(Config):
    kind: Literal["constant", "linear", "cosine", "inverse_sqrt", "wsd", "continue"] = "cosine"
    peak_lr: Union[float, Literal["continue"]] = 3e-4
    warmup_steps: int = Field(0, ge=0)
    warmup_start_lr: float = Field(0.0, ge=0)
    end_lr: float = Field(0.0, ge=0)
    decay_steps: int | None = Field(None, ge=1, description="steps of decay after warm-up; default: the rest of "
                                    "the phase (wsd: the cool-down at the end; default 20% of the phase)")
    cooldown: Literal["linear", "1-sqrt"] = Field("linear", description="wsd: the cool-down's shape")

    @model_validator(mode="after")
    def _check(self):
        if isinstance(self.peak_lr, float) and self.peak_lr < 0:
            raise ValueError("peak_lr must be >= 0")
        return self


@dataclass(frozen=True)
class WarmupDecay:
    """Warm-up to ``peak``, then constant, linear or cosine decay toward ``end``."""

    kind: str
    peak: float
    warmup_steps: int = 0
    warmup_start: float = 0.0
    end: float = 0.0
    decay_steps: int = 1
    stable_steps: int = 0  # wsd: steps at the peak between warm-up and cool-down
    cooldown: str = "linear"

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (self.peak - self.warmup_start) * step / self.warmup_steps
        if self.kind == "constant":
            return self.peak
        if self.kind == "inverse_sqrt":
            w = max(self.warmup_steps, 1)
            return self.peak * math.sqrt(w / max(step, w))
        if self.kind == "wsd":
            u = min(max(step - self.warmup_steps - self.stable_steps, 0) / self.decay_steps, 1.0)
            if self.cooldown == "1-sqrt":
                return self.end + (self.peak - self.end) * (1.0 - math.sqrt(u))
            return self.peak + (self.end - self.peak) * u
        t = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        if self.kind == "linear":
            return self.peak + (self.end - self.peak) * t
        if self.kind == "cosine":
            return self.end + (self.peak - self.end) * 0.5 * (1.0 + math.cos(math.pi * t))
        raise ValueError(f"unknown schedule kind {self.kind!r}")


@dataclass(frozen=True)
class Shifted:
    """``inner`` seen from ``offset`` steps later: a phase that continues a curve."""

    inner: "Schedule"
    offset: int

    def __call__(self, step: int) -> float:
        return self.inner(step + self.offset)


Schedule = Union[WarmupDecay, Shifted, "PhasedSchedule"]


def build_schedule(config: ScheduleConfig, total_steps: int, previous: Schedule | None = None,
                   previous_steps: int = 0, field: str = "schedule") -> Schedule:
    """The schedule of one phase of ``total_steps`` optimizer updates.

    ``previous`` and ``previous_steps`` describe the phase before (its schedule
    and its length), needed by ``kind: continue`` and ``peak_lr: continue``.
    """
    if config.kind == "continue" or config.peak_lr == "continue":
        if previous is None:
            raise LuminaryError(f"{field}: 'continue' needs a previous phase, and this is the first")
    if config.kind == "continue":
        return Shifted(previous, previous_steps)
    peak = previous(previous_steps) if config.peak_lr == "continue" else float(config.peak_lr)
    if config.kind == "wsd":
        decay = config.decay_steps or max(round(0.2 * total_steps), 1)
        stable = max(total_steps - config.warmup_steps - decay, 0)
        return WarmupDecay("wsd", peak, config.warmup_steps, config.warmup_start_lr, config.end_lr, decay,
                           stable, config.cooldown)
    decay = config.decay_steps or max(total_steps - config.warmup_steps, 1)
    return WarmupDecay(config.kind, peak, config.warmup_steps, config.warmup_start_lr, config.end_lr, decay)


@dataclass(frozen=True)
class PhasedSchedule:
    """Phases one after another; ``boundaries[i]`` is the first global step of phase i."""

    phases: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __call__(self, step: int) -> float:
        i = max(j for j, start in enumerate(self.boundaries) if start <= step) if step >= 0 else 0
        return self.phases[i](step - self.boundaries[i])


def build_phased_schedule(configs: list[ScheduleConfig], lengths: list[int], fields: list[str] | None = None) -> PhasedSchedule:
    phases: list[Schedule] = []
    boundaries, start = [], 0
    for i, (config, length) in enumerate(zip(configs, lengths)):
        field = fields[i] if fields else f"phases[{i}].schedule"
        previous = phases[-1] if phases else None
        phases.append(build_schedule(config, length, previous, lengths[i - 1] if i else 0, field))
        boundaries.append(start)
        start += length
    return PhasedSchedule(tuple(phases), tuple(boundaries))
