"""RAM, Reinforced Agent Merging (arXiv:2601.13572), and its tensor-local RAM+ variant.

With task vectors δᵢ = θᵢ − θ_base, an entry contributes where |δᵢ| > ε; c is the
number of models that contribute to it. Entries one model alone changes (c = 1)
are kept whole; shared ones (c > 1) are averaged over their contributors:
θ = θ_base + Σᵢ [|δᵢ| > ε]·δᵢ·([c = 1] + [c > 1]/c).

``ramplus_tl`` scales model i's unique entries by λᵢ = 1 + r·clamp(ρᵢ, 0, α),
ρᵢ = (#shared entries i contributes to) / max(#unique entries of i, ε), counted
within the tensor.
"""

from __future__ import annotations

import torch

from luminary.merge.methods.base import MergeMethod, Param


def _contributions(base: torch.Tensor, tensors: list[torch.Tensor], epsilon: float):
    deltas = torch.stack([t - base for t in tensors]).reshape(len(tensors), -1)  # (N, n)
    active = deltas.abs() > epsilon
    count = active.sum(dim=0, keepdim=True)  # (1, n)
    return deltas * active, active, count


class Ram(MergeMethod):
    def __init__(self, plus: bool):
        params = ((Param("r", float, "shared", default=0.1), Param("alpha", float, "shared", default=0.2))
                  if plus else ())
        super().__init__(name="ramplus_tl" if plus else "ram",
                         title="Reinforced Agent Merging Plus (tensor-local)" if plus else "Reinforced Agent Merging",
                         paper="https://arxiv.org/abs/2601.13572", base="required",
                         params=params + (Param("epsilon", float, "shared", default=1e-5),))
        object.__setattr__(self, "plus", plus)

    def merge(self, base, tensors, shared, per_model, generator):
        if not tensors:
            return base
        deltas, active, count = _contributions(base, tensors, shared["epsilon"])
        unique, overlap = count == 1, count > 1
        scale = torch.ones(len(tensors), 1, dtype=deltas.dtype, device=deltas.device)
        if self.plus:
            shared_n = (active & overlap).sum(dim=1)
            unique_n = (active & unique).sum(dim=1)
            rho = shared_n / unique_n.clamp(min=shared["epsilon"])
            scale = (1 + shared["r"] * rho.clamp(min=0, max=shared["alpha"])).unsqueeze(-1).to(deltas.dtype)
        merged = (deltas * unique * scale + deltas * overlap / count.clamp(min=1)).sum(dim=0)
        return base + merged.reshape(base.shape)
