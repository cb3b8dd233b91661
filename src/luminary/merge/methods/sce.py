"""SCE: select, calculate, erase (FuseChat 2.0, Wan et al. 2024, arXiv:2408.07990).

With task vectors δᵢ = θᵢ − θ_base:

1. select (``select_topk`` < 1): keep the k = ⌊select_topk · #{v ≠ 0}⌋ entries
   of largest variance v = Varᵢ(δᵢ) (population variance across the models),
   the same entries in every δᵢ;
2. calculate: model weights ηᵢ = mean(δᵢ²) / Σⱼ mean(δⱼ²) (1/N when the sum is
   below 1e-6);
3. erase: TIES' sign election (``sum``) gives mᵢ;
4. θ = θ_base + Σᵢ mᵢηᵢδᵢ / max(Σᵢ mᵢηᵢ, 1e-6).

Model weights are computed, so no ``weight`` is read.
"""

from __future__ import annotations

import torch

from luminary.merge.methods.base import MergeMethod, Param


def sce_weights(deltas: torch.Tensor) -> torch.Tensor:
    """ηᵢ for stacked task vectors (N, …)."""
    energy = deltas.square().reshape(deltas.shape[0], -1).mean(dim=1)
    total = energy.sum().item()
    if abs(total) < 1e-6:
        return torch.full_like(energy, 1 / energy.shape[0])
    return energy / total


def sce_mask(deltas: torch.Tensor, density: float) -> torch.Tensor:
    """The selection mask (the shape of one task vector) of the highest-variance entries."""
    if density <= 0:
        return torch.zeros_like(deltas[0])
    if density >= 1:
        return torch.ones_like(deltas[0])
    variance = torch.var(deltas, dim=0, unbiased=False)
    k = int(torch.count_nonzero(variance) * density)
    mask = torch.zeros_like(variance)
    if k:
        mask.view(-1)[torch.topk(variance.abs().view(-1), k=k, largest=True).indices] = 1
    return mask


class Sce(MergeMethod):
    def __init__(self):
        super().__init__(name="sce", title="SCE", paper="https://arxiv.org/abs/2408.07990", base="required", params=(
            Param("select_topk", float, "shared", default=1.0),
            Param("int8_mask", bool, "shared", default=False),  # mergekit memory option; no effect here
        ))

    def merge(self, base, tensors, shared, per_model, generator):
        if not tensors:
            return base
        deltas = torch.stack([t - base for t in tensors])  # (N, …)
        if shared["select_topk"] < 1:
            deltas = deltas * sce_mask(deltas, shared["select_topk"]).unsqueeze(0)
        positive = deltas.sum(dim=0) >= 0  # TIES' sum election, ties to +
        agree = torch.where(positive, deltas > 0, deltas < 0).to(deltas.dtype)
        eta = sce_weights(deltas).view(-1, *[1] * (deltas.dim() - 1))
        kept = eta * agree
        return base + (deltas * kept).sum(dim=0) / kept.sum(dim=0).clamp(min=1e-6)
