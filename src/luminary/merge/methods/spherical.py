"""Merges on the sphere: NuSLERP (two models), Multi-SLERP (any number), the Karcher mean.

As mergekit 0.1.5 computes them, in the working dtype (float32 for 16-bit inputs).

- ``nuslerp``: SLERP between two models at t = w₂/(w₁ + w₂) (0.5 when
  |w₁ + w₂| < 1e-6), of the whole flattened tensors (``nuslerp_flatten``,
  the default) or of each row (``nuslerp_flatten: false``; each column with
  ``nuslerp_row_wise``). With a base, of the task vectors: θ = θ_base +
  slerp(t, δ₁, δ₂). Unit vectors are x/max(‖x‖, 1e-7); where
  1 − cos²Ω ≤ 1e-16 the interpolation is linear.
- ``multislerp`` (https://goddard.blog/posts/multislerp-wow-what-a-cool-idea):
  with wᵢ normalised to sum 1 (``normalize_weights``), uᵢ = xᵢ/(‖xᵢ‖ + eps)
  for the flattened xᵢ (task vectors with a base), m = Σ wᵢuᵢ/‖Σ wᵢuᵢ‖, the
  tangent τ = Σ wᵢ(uᵢ − ⟨uᵢ, m⟩m), then θ = (Σ wᵢ‖xᵢ‖)·(m cos‖τ‖' +
  τ sin‖τ‖'/‖τ‖'), ‖τ‖' = ‖τ‖ + eps. When ‖Σ wᵢuᵢ‖ < eps: the weighted sum for
  two models, an error for more.
- ``karcher`` (https://arxiv.org/abs/2603.04972): the Riemannian mean of the
  unit vectors xᵢ/‖xᵢ‖ (equal weights; inputs of norm ≤ tol left out), by at
  most ``max_iter`` steps of u ← exp_u(Σ aᵢ θᵢ/sin θᵢ (uᵢ − cos θᵢ u)) from the
  normalised mean, stopping when the step is below ``tol``; scaled by the mean
  norm of all inputs. Every model is an input; a base not listed is one more.
"""

from __future__ import annotations

import torch

from luminary.core.errors import LuminaryError
from luminary.merge.methods.base import MergeMethod, Param


def _work(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def nuslerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dim: int = -1, eps: float = 1e-8,
            flatten: bool = False) -> torch.Tensor:
    """SLERP from v0 (t = 0) to v1 along ``dim`` (or of the flattened tensors), linear where collinear."""
    shape = v0.shape
    if flatten:
        v0, v1 = v0.reshape(-1), v1.reshape(-1)
    elif dim != -1:
        v0, v1 = v0.transpose(dim, -1), v1.transpose(dim, -1)
    u0 = v0 / torch.norm(v0, dim=-1, keepdim=True).clamp(min=1e-7)
    u1 = v1 / torch.norm(v1, dim=-1, keepdim=True).clamp(min=1e-7)
    cos = (u0 * u1).sum(dim=-1, keepdim=True).clamp(-1, 1)
    collinear = (1 - cos.square()) <= eps**2
    theta = torch.acos(torch.where(collinear, torch.zeros_like(cos), cos))
    spherical = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
    out = torch.where(collinear, (1 - t) * v0 + t * v1, spherical)
    if dim != -1 and not flatten:
        out = out.transpose(dim, -1)
    return out.reshape(shape)


class NuSlerp(MergeMethod):
    def __init__(self):
        super().__init__(name="nuslerp", title="NuSLERP", base="optional", min_models=2, max_models=2, params=(
            Param("weight", float, "model", default=1.0),
            Param("nuslerp_row_wise", bool, "shared", default=False),
            Param("nuslerp_flatten", bool, "shared", default=True),
        ))

    def merge(self, base, tensors, shared, per_model, generator):
        w0, w1 = (p["weight"] for p in per_model)
        t = 0.5 if abs(w0 + w1) < 1e-6 else w1 / (w0 + w1)
        a, b = (_work(x) for x in tensors)
        dim, flatten = (0 if shared["nuslerp_row_wise"] else -1), shared["nuslerp_flatten"]
        if base is None:
            return nuslerp(t, a, b, dim=dim, flatten=flatten).to(tensors[0].dtype)
        g = _work(base)
        return (g + nuslerp(t, a - g, b - g, dim=dim, flatten=flatten)).to(base.dtype)


def multislerp(tensors: list[torch.Tensor], weights: list[float], base: torch.Tensor | None = None,
               normalize_weights: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Barycentric interpolation on the sphere (see the module docstring)."""
    if len(tensors) == 1:
        return tensors[0]
    xs = torch.stack(tensors)
    if base is not None:
        xs = xs - base
    flat = xs.reshape(len(tensors), -1)
    w = torch.tensor(weights, dtype=flat.dtype, device=flat.device)
    if normalize_weights:
        w = w / w.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)  # (N, 1)
    units = flat / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if len(tensors) != 2:
            raise LuminaryError("multislerp: the weighted sum of the unit inputs is zero (antipodal inputs whose "
                                "weights cancel); change the weights")
        out = (xs[0] * w[0] + xs[1] * w[1]).reshape(xs.shape[1:])
        return out if base is None else out + base
    mean = mean / mean_norm
    tangents = units - (units * mean).sum(-1, keepdim=True) * mean
    tangent = (tangents * w.view(-1, 1)).sum(0)
    length = torch.norm(tangent) + eps
    out = (mean * torch.cos(length) + tangent * (torch.sin(length) / length)) * (norms.squeeze(-1) * w).sum()
    out = out.reshape(xs.shape[1:])
    return out if base is None else out + base


class MultiSlerp(MergeMethod):
    def __init__(self):
        super().__init__(name="multislerp", title="Multi-SLERP",
                         paper="https://goddard.blog/posts/multislerp-wow-what-a-cool-idea", base="optional", params=(
                             Param("weight", float, "model", default=1.0),
                             Param("normalize_weights", bool, "shared", default=True),
                             Param("eps", float, "shared", default=1e-8),
                         ))

    def merge(self, base, tensors, shared, per_model, generator):
        dtype = tensors[0].dtype
        out = multislerp([_work(x) for x in tensors], [p["weight"] for p in per_model],
                         None if base is None else _work(base), shared["normalize_weights"], shared["eps"])
        return out.to(dtype)


def karcher_mean(tensors: list[torch.Tensor], alphas: list[float], max_iter: int = 10,
                 tol: float = 1e-5) -> torch.Tensor:
    """The weighted Karcher mean of the inputs' directions, scaled by their weighted mean norm."""
    if len(tensors) == 1:
        return tensors[0]
    dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    norms = [torch.linalg.vector_norm(x.to(dtype)) for x in tensors]
    units = [torch.zeros_like(x) if n.item() == 0.0 else (x / n).to(x.dtype) for x, n in zip(tensors, norms)]
    keep = [i for i, n in enumerate(norms) if n.item() > tol]
    if not keep:
        return torch.zeros_like(tensors[0])
    total = sum(alphas[i] for i in keep)
    a = [alphas[i] / total for i in keep]
    us = [units[i] for i in keep]
    u = torch.zeros_like(us[0])
    for ai, ui in zip(a, us):
        u += ai * ui
    length = torch.linalg.vector_norm(u.to(dtype))
    u = us[0].clone() if length.item() < tol else (u / length).to(u.dtype)
    for _ in range(max_iter):
        step = torch.zeros_like(u)
        for ai, ui in zip(a, us):
            cos = torch.clamp(torch.dot(u.flatten(), ui.flatten()), -1.0, 1.0)
            theta = torch.arccos(cos)
            if theta.item() < tol:
                continue
            step += ai * (theta / torch.sin(theta)) * (ui - cos * u)
        size = torch.linalg.vector_norm(step.to(dtype))
        if size.item() < tol:
            break
        u = (torch.cos(size) * u + torch.sin(size) * (step / size)).to(u.dtype)
        length = torch.linalg.vector_norm(u.to(dtype))
        if length.item() > tol:
            u = (u / length).to(u.dtype)
    return sum(ai * n for ai, n in zip(alphas, norms)) * u


class Karcher(MergeMethod):
    def __init__(self):
        super().__init__(name="karcher", title="Karcher mean", paper="https://arxiv.org/abs/2603.04972",
                         base="ignored", params=(Param("max_iter", int, "shared", default=10),
                                                 Param("tol", float, "shared", default=1e-5)))

    def merge(self, base, tensors, shared, per_model, generator):
        dtype = tensors[0].dtype
        xs = [_work(x) for x in tensors]
        return karcher_mean(xs, [1.0 / len(xs)] * len(xs), shared["max_iter"], shared["tol"]).to(dtype)
