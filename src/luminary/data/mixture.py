"""The data mixture: a pure function from a global sample index to a sample.

    (recipe, seed, i) -> (phase, source, draw k of that source, epoch, window, FIM)

Phases. Phase p covers the optimizer steps [S_p, S_p + steps_p), hence the
global samples [S_p·B, (S_p + steps_p)·B): the switch happens exactly at the
requested step (levanter #876 switched early).

Blending inside a phase. Local sample j goes to a source so that the realised
count c_d(j) of every source stays within one sample of w_d·j at every prefix.
Megatron's ``BlendedDataset`` picks argmax_d (w_d·max(j,1) − c_d); that rule,
and even the largest deficit w_d·(j+1) − c_d, drift above one sample for skewed
weights (1.17 measured here over random weight vectors). We use Tijdeman's
chairman-assignment rule (Tijdeman 1980), which proves
|c_d(j) − w_d·j| ≤ 1 − 1/(2k−2) for k sources with positive weight: at step
t = j + 1, among the sources with w_d·t − c_d ≥ C (C = 1/(2k−2)), choose the
one with the earliest deadline (c_d + 1 − C)/w_d. ``blend="megatron"`` takes
Megatron's rule instead (:func:`megatron_blend`), to reproduce a Megatron run.

Within a source. Source d's training samples are fixed windows of its token
stream (length seq_len + 1, stride seq_len, Megatron's packing); the k-th draw
of source d over the whole run reads window perm_{d,e}[k mod n_d] of epoch
e = k div n_d, a permutation seeded by (seed, d, e): each epoch is a fresh
order, and the epoch is recorded.

FIM. Each EOS-separated document of a sample from a FIM phase is transformed
with the rate the phase gives the sample's source (CrystalCoder: code sources
only) and the phase's SPM share, drawing from a generator seeded by (seed, i)
(see :mod:`luminary.data.fim`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from luminary.core.seed import derive_seed
from luminary.data.fim import FimTokens, apply_fim
from luminary.data.shards import Shard


def tijdeman_blend(weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Source of each of ``n`` samples and how many of that source came before.

    Returns (assign, draw): ``assign[j]`` is the source of local sample j and
    ``draw[j]`` the count of that source among samples 0..j−1.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    active = [d for d in range(len(w)) if w[d] > 0]
    k = len(active)
    c_bound = 1.0 / (2 * k - 2) if k > 1 else 0.0
    counts = [0] * len(w)
    assign = np.empty(n, dtype=np.int16)
    draw = np.empty(n, dtype=np.int64)
    wl = w.tolist()
    for j in range(n):
        t = j + 1
        best, best_deadline = -1, float("inf")
        for d in active:
            if wl[d] * t - counts[d] >= c_bound - 1e-12:
                deadline = (counts[d] + 1 - c_bound) / wl[d]
                if deadline < best_deadline:
                    best, best_deadline = d, deadline
        assign[j] = best
        draw[j] = counts[best]
        counts[best] += 1
    return assign, draw


class SourceSamples:
    """A source's windows: the held-out validation ones and the training ones."""

    def __init__(self, shard: Shard, seq_len: int, n_validation: int, seed: int):
        self.shard = shard
        self.seq_len = seq_len
        n = (shard.n_tokens - 1) // seq_len
        if n < n_validation + 1:
            raise ValueError(f"source '{shard.name}' has {n} windows of {seq_len} tokens; "
                             f"{n_validation} held out for validation leaves none to train on")
        rng = np.random.Generator(np.random.PCG64(derive_seed("validation", seed, shard.name)))
        held = np.sort(rng.choice(n, size=n_validation, replace=False)) if n_validation else np.array([], np.int64)
        mask = np.ones(n, dtype=bool)
        mask[held] = False
        self.validation_windows = held.astype(np.int64)
        self.train_windows = np.flatnonzero(mask).astype(np.int64)

    @property
    def n_train(self) -> int:
        return len(self.train_windows)

    def window(self, w: int) -> np.ndarray:
        start = int(w) * self.seq_len
        return np.asarray(self.shard.tokens[start : start + self.seq_len + 1], dtype=np.int64)


def megatron_blend(weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Megatron-LM's ``BlendedDataset`` order (``build_blending_indices`` in its ``helpers.cpp``).

    With weights normalised to sum 1, sample j goes to argmax_d (w_d·max(j, 1) − c_d), the first
    source on a tie; the option ``blend: megatron`` reproduces a Megatron run's order exactly.
    Returns (assign, draw) as :func:`tijdeman_blend`.
    """
    w = np.asarray(weights, dtype=np.float64)
    wl = (w / w.sum()).tolist()
    counts = [0] * len(wl)
    assign = np.empty(n, dtype=np.int16)
    draw = np.empty(n, dtype=np.int64)
    for j in range(n):
        t = max(float(j), 1.0)
        best, best_error = 0, wl[0] * t - counts[0]
        for d in range(1, len(wl)):
            error = wl[d] * t - counts[d]
            if error > best_error:
                best, best_error = d, error
        assign[j] = best
        draw[j] = counts[best]
        counts[best] += 1
    return assign, draw


BLENDS: dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]] = {
    "tijdeman": tijdeman_blend, "megatron": megatron_blend}


def blend_drift(weights: np.ndarray, assign: np.ndarray) -> float:
    """max over prefixes j and sources d of |c_d(j) − w_d·j|: how far a blend strays from its weights."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    counts = np.zeros((len(assign) + 1, len(w)))
    counts[1:] = np.cumsum(np.eye(len(w))[assign], axis=0)
    j = np.arange(len(assign) + 1, dtype=np.float64)[:, None]
    return float(np.abs(counts - w[None, :] * j).max())


@dataclass(frozen=True)
class Phase:
    name: str
    start_step: int
    steps: int
    weights: tuple[float, ...]  # in source order
    fim_rate: float = 0.0  # the phase's rate, as the recipe gives it
    fim_spm: float = 0.5
    fim_rates: tuple[float, ...] | None = None  # per source, in source order; None: fim_rate for every source
    fim_truncate: str = "chunk"

    def fim_rate_of(self, source: int) -> float:
        return self.fim_rate if self.fim_rates is None else self.fim_rates[source]


@dataclass(frozen=True)
class Location:
    """Where global sample ``index`` comes from."""

    index: int
    phase: int
    source: int
    draw: int
    epoch: int
    window: int


class Mixture:
    """Samples by global index; the Trainer reads it through ``samples(start, stop)``."""

    def __init__(
        self,
        sources: list[SourceSamples],
        phases: list[Phase],
        global_batch: int,
        seed: int,
        fim_tokens: FimTokens | None = None,
        encode: Callable[[str], list[int]] | None = None,
        decode: Callable[[np.ndarray], str] | None = None,
        blend: str = "tijdeman",
    ):
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {sorted(BLENDS)}, got {blend!r}")
        self.blend_rule = blend
        self.sources = sources
        self.names = [s.shard.name for s in sources]
        self.phases = phases
        self.global_batch = global_batch
        self.seed = seed
        self.fim_tokens, self.encode, self.decode = fim_tokens, encode, decode
        self._blends: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        # draws of each source before each phase (phases are consecutive)
        self._base = np.zeros((len(phases) + 1, len(sources)), dtype=np.int64)
        for p, phase in enumerate(phases):
            self._base[p + 1] = self._base[p] + self.phase_counts(p)

    @property
    def total_steps(self) -> int:
        last = self.phases[-1]
        return last.start_step + last.steps

    @property
    def total_samples(self) -> int:
        return self.total_steps * self.global_batch

    def phase_of_step(self, step: int) -> int:
        for p in range(len(self.phases) - 1, -1, -1):
            if step >= self.phases[p].start_step:
                return p
        raise IndexError(step)

    def blend(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        if p not in self._blends:
            phase = self.phases[p]
            self._blends[p] = BLENDS[self.blend_rule](np.asarray(phase.weights), phase.steps * self.global_batch)
        return self._blends[p]

    def phase_counts(self, p: int) -> np.ndarray:
        """Samples of each source in phase p."""
        assign, _ = self.blend(p)
        return np.bincount(assign, minlength=len(self.sources)).astype(np.int64)

    def permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._perms:
            if len(self._perms) > 64:
                self._perms.clear()
            rng = np.random.Generator(np.random.PCG64(derive_seed("mixture", self.seed, self.names[source], epoch)))
            self._perms[key] = rng.permutation(self.sources[source].n_train)
        return self._perms[key]

    def locate(self, i: int) -> Location:
        if not 0 <= i < self.total_samples:
            raise IndexError(f"sample {i} is outside the recipe's {self.total_samples} samples")
        p = self.phase_of_step(i // self.global_batch)
        j = i - self.phases[p].start_step * self.global_batch
        assign, draw = self.blend(p)
        d = int(assign[j])
        k = int(self._base[p, d] + draw[j])
        n = self.sources[d].n_train
        epoch, pos = divmod(k, n)
        window = int(self.sources[d].train_windows[self.permutation(d, epoch)[pos]])
        return Location(i, p, d, k, epoch, window)

    def sample(self, i: int) -> dict[str, Any]:
        loc = self.locate(i)
        tokens = self.sources[loc.source].window(loc.window)
        phase = self.phases[loc.phase]
        rate = phase.fim_rate_of(loc.source)
        if rate > 0 and self.fim_tokens is not None:
            rng = np.random.Generator(np.random.PCG64(derive_seed("fim", self.seed, i)))
            tokens, _ = apply_fim(tokens, rng, rate, phase.fim_spm, self.fim_tokens,
                                  self.encode, self.decode, truncate=phase.fim_truncate)
        return {"input_ids": tokens, "source": self.names[loc.source]}

    def samples(self, start: int, stop: int) -> list[dict[str, Any]]:
        return [self.sample(i) for i in range(start, stop)]

    def batch(self, step: int) -> list[dict[str, Any]]:
        """The global batch of optimizer step ``step``."""
        return self.samples(step * self.global_batch, (step + 1) * self.global_batch)

    def validation(self, source: int) -> list[dict[str, Any]]:
        s = self.sources[source]
        return [{"input_ids": s.window(w), "source": self.names[source]} for w in s.validation_windows]
