"""NearSwap: take the other model where it is near the base.

From https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001.

With w = clamp(t / max(|θ_base − θ|, 1e-6), 0, 1) per entry: θ' = w·θ + (1 − w)·θ_base.
Entries closer than t to the base become the other model's; far ones stay near the base.
"""

from __future__ import annotations

from luminary.merge.methods.base import MergeMethod, Param


class NearSwap(MergeMethod):
    def __init__(self):
        super().__init__(name="nearswap", title="NearSwap",
                         paper="https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001", base="required", min_models=1, max_models=1, params=(Param("t", float, "shared"),))

    def merge(self, base, tensors, shared, per_model, generator):
        a, b = base, tensors[0]
        weight = (shared["t"] / (a - b).abs().clamp(min=1e-6)).clamp(0, 1)
        return weight * b + (1 - weight) * a
