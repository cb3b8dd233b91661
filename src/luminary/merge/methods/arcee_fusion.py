"""Arcee Fusion (https://arcee.ai): take the other model's change only where it matters most.

Importance of each entry: sᵢ = |θ − θ_base|ᵢ · KL(softmax(θ) ‖ softmax(θ_base)), the KL
divergence taken along the last dimension (1e-8 added to both distributions).
With the quartiles of s (sorted values at ⌊q·(n − 1)⌋; over a sample of 10⁶
entries drawn with replacement when the tensor is larger), the threshold is
median + 1.5·(Q3 − Q1), and θ' = θ_base + [s ≥ threshold]·(θ − θ_base).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from luminary.merge.methods.base import MergeMethod, deltas_in_place

QUANTILE_SAMPLE = 1_000_000


def importance(tensor: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """s = |θ − θ_base| · Σ p·log(p/q) along the last dimension, in two buffers: the products and sums of
    the formula written out, without a fresh tensor for each step (at 1B each is mapped and faulted in)."""
    p = F.softmax(tensor, dim=-1).add_(1e-8)
    q = F.softmax(base, dim=-1).add_(1e-8)
    kl = torch.div(p, q, out=q).log_().mul_(p).sum(dim=-1, keepdim=True)
    del q
    return torch.sub(tensor, base, out=p).abs_().mul_(kl)


def quantiles(x: torch.Tensor, q: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The sorted sample's values at ⌊q·(n − 1)⌋, each found by selection (``kthvalue``, linear time)
    instead of sorting the whole sample: the same values (``test_quantiles_by_selection_equal_the_sort``)."""
    flat = x.reshape(-1)
    if flat.numel() > QUANTILE_SAMPLE:
        flat = flat[torch.randint(flat.numel(), (QUANTILE_SAMPLE,), generator=generator).to(flat.device)]
    ranks = (q * (flat.numel() - 1)).long().tolist()
    if flat.is_cuda or torch.isnan(flat).any():  # the sort's order (NaN last) where selection may differ
        return torch.sort(flat).values[torch.tensor(ranks, device=flat.device)]
    return torch.stack([torch.kthvalue(flat, k + 1).values for k in ranks])


class ArceeFusion(MergeMethod):
    def __init__(self):
        super().__init__(name="arcee_fusion", title="Arcee Fusion", paper="https://arcee.ai", base="required",
                         min_models=1, max_models=1)

    def merge(self, base, tensors, shared, per_model, generator):
        other = tensors[0]
        score = importance(other, base)
        q1, median, q3 = quantiles(score, torch.tensor([0.25, 0.5, 0.75]), generator)
        keep = score >= median + 1.5 * (q3 - q1)
        del score
        # θ_base + [s ≥ t]·(θ − θ_base), in the input's buffer where it is its own (the executor owns it)
        if other.dtype == base.dtype and deltas_in_place(base, [other])[0]:
            return other.mul_(keep).add_(base)
        return base + (other - base) * keep.to(base.dtype)
