"""Linear merge ("model soups", Wortsman et al. 2022, arXiv:2203.05482).

θ = Σᵢ wᵢ θᵢ / Σᵢ wᵢ (without ``normalize``: Σᵢ wᵢ θᵢ). Computed in float32
(float64 inputs stay float64), accumulated in model order as mergekit does.
"""

from __future__ import annotations

import torch

from luminary.core.errors import LuminaryError
from luminary.merge.methods.base import MergeMethod, Param


class Linear(MergeMethod):
    def __init__(self):
        super().__init__(
            name="linear", title="Linear (model soup)", paper="https://arxiv.org/abs/2203.05482", base="ignored",
            params=(Param("weight", float, "model", default=1.0), Param("normalize", bool, "shared", default=True)),
        )

    def check_weights(self, shared, per_model, where):
        if shared["normalize"] and sum(p["weight"] for p in per_model) == 0:
            raise LuminaryError(f"{where}: the weights sum to zero, so they cannot be normalised")

    def merge(self, base, tensors, shared, per_model, generator):
        first = tensors[0]
        if not first.is_floating_point():
            raise LuminaryError("linear merge needs floating-point tensors")
        dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        weights = torch.tensor([p["weight"] for p in per_model], dtype=dtype)
        # 0 + w₀θ₀ = w₀θ₀ exactly, so the first product can be taken in place (the executor owns the inputs)
        result = first.to(dtype).mul_(weights[0].item())
        for tensor, w in zip(tensors[1:], weights[1:]):
            result.add_(tensor.to(dtype), alpha=w.item())
        if shared["normalize"]:
            result.div_(weights.sum())
        return result.to(first.dtype)
