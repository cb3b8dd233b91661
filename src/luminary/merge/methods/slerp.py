"""SLERP: spherical linear interpolation between the base and one other model.

Each tensor is flattened. With cos Ω = ⟨a/‖a‖, b/‖b‖⟩ (norms below 1e-8
taken as 1, cos clamped to [−1, 1]):

    θ = sin((1 − t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b,

and θ = (1 − t)·a + t·b when |cos Ω| > 0.9995 (nearly collinear: the sine
ratio is numerically unstable there). t = 0 gives the base a. Computed in
float32 (float64 stays float64), as mergekit does (Shoemake 1985).
"""

from __future__ import annotations

import math

import torch

from luminary.merge.methods.base import MergeMethod, Param

DOT_THRESHOLD = 0.9995
EPS = 1e-8


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, dot_threshold: float = DOT_THRESHOLD) -> torch.Tensor:
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    x, y = a.reshape(-1).to(dtype), b.reshape(-1).to(dtype)
    if x.numel() == 0:
        return a.clone()
    na, nb = torch.linalg.vector_norm(x), torch.linalg.vector_norm(y)
    na = na if na > EPS else torch.ones_like(na)
    nb = nb if nb > EPS else torch.ones_like(nb)
    dot = float(((x / na) * (y / nb)).sum().clamp(-1, 1))
    if abs(dot) > dot_threshold:
        ca, cb = 1 - t, t
    else:
        omega = math.acos(dot)
        s = math.sin(omega)
        ca, cb = math.sin((1 - t) * omega) / s, math.sin(t * omega) / s
    ca, cb = torch.tensor(ca, dtype=dtype).item(), torch.tensor(cb, dtype=dtype).item()
    return (x * ca).add_(y, alpha=cb).reshape(a.shape).to(a.dtype)


class Slerp(MergeMethod):
    def __init__(self):
        super().__init__(name="slerp", title="SLERP", paper="https://en.wikipedia.org/wiki/Slerp", base="required",
                         min_models=1, max_models=1, params=(Param("t", float, "shared", bounds=(0.0, 1.0)),))

    def merge(self, base, tensors, shared, per_model, generator):
        return slerp(shared["t"], base, tensors[0])
