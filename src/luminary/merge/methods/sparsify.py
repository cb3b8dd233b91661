"""Sparsifying a task vector: keep the largest entries (TIES) or a random part (DARE).

- magnitude (TIES, Yadav et al. 2023, arXiv:2306.01708): keep the
  k = max(1, ⌊density·n⌋) entries of largest |δ| (mergekit's count; the spec's
  ⌈density·n⌉ differs from it by at most one entry). The k-th largest |δ| is
  found by selection (O(n)); only when several entries tie at that size (common:
  deltas of nearby float32 weights are quantised) is the full ``argsort`` used,
  so that the same tied entries are kept as in mergekit.
- bernoulli (DARE, Yu et al. 2023, arXiv:2311.03099): keep each entry with
  probability ``density``, drawn from a seeded generator.

Rescaling the kept entries: ``l1`` multiplies by ‖δ‖₁ / ‖mask ⊙ δ‖₁ (current
mergekit; nothing is rescaled when either norm is below 1e-7); ``density``
divides by the density (the DARE paper's 1/p).
"""

from __future__ import annotations

import torch

EPS = 1e-7


def rescale(delta: torch.Tensor, kept: torch.Tensor, mode: str | None, density: float) -> torch.Tensor:
    if mode is None:
        return kept
    if mode == "density":
        return kept / density
    before, after = delta.abs().sum(), kept.abs().sum()
    if before < EPS or after < EPS:
        return kept
    return kept * (before / after)


def magnitude(delta: torch.Tensor, density: float, mode: str | None = None) -> torch.Tensor:
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    n = delta.numel()
    k = max(1, int(density * n))
    size = delta.abs().reshape(-1).float()
    threshold = size.kthvalue(n - k + 1).values  # the k-th largest |δ|
    mask = size >= threshold
    if int(mask.sum()) != k:  # ties at the threshold: keep the ones a descending argsort puts first
        mask = torch.zeros_like(mask)
        mask[torch.argsort(size, descending=True)[:k]] = True
    kept = delta * mask.reshape(delta.shape).to(delta.dtype)
    return rescale(delta, kept, mode, density)


def bernoulli(delta: torch.Tensor, density: float, generator: torch.Generator, mode: str | None = None) -> torch.Tensor:
    if density >= 1:
        return delta
    work = delta if delta.dtype in (torch.float32, torch.float64, torch.bfloat16) else delta.float()
    # drawn on the CPU from a CPU generator: the same mask whichever device merges
    mask = torch.bernoulli(torch.full(work.shape, density), generator=generator).to(work.device, work.dtype)
    return rescale(work, work * mask, mode, density).to(delta.dtype)
