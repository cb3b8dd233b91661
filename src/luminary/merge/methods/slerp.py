"""SLERP: spherical linear interpolation between the base and one other model.

Each tensor is flattened. With cos Ω = ⟨a/‖a‖, b/‖b‖⟩ (norms below 1e-8
taken as 1, cos clamped to [−1, 1]):

    θ = sin((1 − t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b,

and θ = (1 − t)·a + t·b when |cos Ω| > 0.9995 (nearly collinear: the sine
ratio is numerically unstable there). t = 0 gives the base a (Shoemake 1985).
Computed as mergekit does, in float32 (float64 stays float64), with
Ω = acos(cos Ω) in the working dtype: near cos Ω = 1 acos amplifies rounding,
so a double-precision Ω would differ from mergekit's by more than 1e-6.
mergekit normalises both vectors and then sums their product; here
cos Ω = Σ_c ⟨a_c, b_c⟩ / (‖a‖‖b‖) over chunks a_c, b_c of 2²⁰ entries (BLAS
dot products, no temporaries), the same value to float32 rounding. The norms
are mergekit's: ‖a‖ = ‖(‖a_c‖)_c‖ with torch's ``vector_norm``. That is
less exact than the BLAS sum of squares (1e-5 against 2e-7 relative error
on 4M entries), but mergekit's cos Ω, and so its output, carries the same
error, and agreeing with mergekit to 1e-7 is the point. Every statistic
comes from one pass while a chunk pair is in cache, and the result is formed
chunk by chunk, in place when the caller hands over ``a`` (the merge
executor does): a 1B SLERP reads each input twice from memory instead of
five times and allocates nothing.
"""

from __future__ import annotations

import torch

from luminary.merge.methods.base import MergeMethod, Param

DOT_THRESHOLD = 0.9995
EPS = 1e-8


CHUNK = 1 << 20


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, dot_threshold: float = DOT_THRESHOLD,
          in_place: bool = False) -> torch.Tensor:
    """SLERP from ``a`` (t = 0) to ``b`` (t = 1); ``in_place`` may write the result into ``a``."""
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    x, y = a.reshape(-1).to(dtype), b.reshape(-1).to(dtype)
    if x.numel() == 0:
        return a.clone()
    pairs = list(zip(x.split(CHUNK), y.split(CHUNK)))
    stats = torch.stack([torch.stack([torch.linalg.vector_norm(p), torch.linalg.vector_norm(q), torch.dot(p, q)])
                         for p, q in pairs])
    na, nb = torch.linalg.vector_norm(stats[:, 0]), torch.linalg.vector_norm(stats[:, 1])
    na = na if na > EPS else torch.ones_like(na)
    nb = nb if nb > EPS else torch.ones_like(nb)
    dot = (stats[:, 2].sum() / (na * nb)).clamp(-1, 1)
    tt = torch.tensor(t, dtype=dtype)
    if dot.abs() > dot_threshold:
        ca, cb = 1 - tt, tt
    else:
        omega = torch.acos(dot)
        ca, cb = torch.sin((1 - tt) * omega) / torch.sin(omega), torch.sin(tt * omega) / torch.sin(omega)
    ca, cb = ca.item(), cb.item()
    shares_a = in_place and x.data_ptr() == a.data_ptr() and x.data_ptr() != y.data_ptr()
    out = x if shares_a else torch.empty_like(x)
    for o, (p, q) in zip(out.split(CHUNK), pairs):
        torch.mul(p, ca, out=o).add_(q, alpha=cb)
    return out.reshape(a.shape).to(a.dtype)


class Slerp(MergeMethod):
    def __init__(self):
        super().__init__(name="slerp", title="SLERP", paper="https://en.wikipedia.org/wiki/Slerp", base="required",
                         min_models=1, max_models=1, params=(Param("t", float, "shared", bounds=(0.0, 1.0)),))

    def merge(self, base, tensors, shared, per_model, generator):
        return slerp(shared["t"], base, tensors[0], in_place=True)  # the executor owns base
