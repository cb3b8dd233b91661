"""SLERP: spherical linear interpolation between the base and one other model.

Each tensor is flattened. With cos Ω = ⟨a/‖a‖, b/‖b‖⟩ (norms below 1e-8
taken as 1, cos clamped to [−1, 1]):

    θ = sin((1 − t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b,

and θ = (1 − t)·a + t·b when |cos Ω| > 0.9995 (nearly collinear: the sine
ratio is numerically unstable there). t = 0 gives the base a (Shoemake 1985).
Computed as mergekit does, in float32 (float64 stays float64), norms and dot
product over chunks of 2²⁰ entries, Ω = acos(cos Ω) in the working dtype: near
cos Ω = 1 acos amplifies rounding, so a double-precision Ω would differ from
mergekit's by more than 1e-6.
"""

from __future__ import annotations

import torch

from luminary.merge.methods.base import MergeMethod, Param

DOT_THRESHOLD = 0.9995
EPS = 1e-8


CHUNK = 1 << 20


def _chunks(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.split(CHUNK))


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, dot_threshold: float = DOT_THRESHOLD) -> torch.Tensor:
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    x, y = a.reshape(-1).to(dtype), b.reshape(-1).to(dtype)
    if x.numel() == 0:
        return a.clone()
    norm = lambda v: torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(c) for c in _chunks(v)]))
    na, nb = norm(x), norm(y)
    na = na if na > EPS else torch.ones_like(na)
    nb = nb if nb > EPS else torch.ones_like(nb)
    dot = torch.stack([((p / na) * (q / nb)).sum() for p, q in zip(_chunks(x), _chunks(y))]).sum().clamp(-1, 1)
    tt = torch.tensor(t, dtype=dtype)
    if dot.abs() > dot_threshold:
        ca, cb = 1 - tt, tt
    else:
        omega = torch.acos(dot)
        ca, cb = torch.sin((1 - tt) * omega) / torch.sin(omega), torch.sin(tt * omega) / torch.sin(omega)
    return (x * ca.item()).add_(y, alpha=cb.item()).reshape(a.shape).to(a.dtype)


class Slerp(MergeMethod):
    def __init__(self):
        super().__init__(name="slerp", title="SLERP", paper="https://en.wikipedia.org/wiki/Slerp", base="required",
                         min_models=1, max_models=1, params=(Param("t", float, "shared", bounds=(0.0, 1.0)),))

    def merge(self, base, tensors, shared, per_model, generator):
        return slerp(shared["t"], base, tensors[0])
