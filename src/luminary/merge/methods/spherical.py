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

Memory: ``multislerp`` and ``karcher`` go through the models one at a time and never stack them; the
inputs (the executor's) become their task or unit vectors in their own buffers unless they share memory
with the base or another input, so beyond them only a few (n,) tensors are held whatever N
(tests/merge/test_stack_free_memory.py).
"""

from __future__ import annotations

import torch

from luminary.core.errors import LuminaryError
from luminary.merge.methods.base import MergeMethod, Param, deltas_in_place, owned_inputs


def _work(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def nuslerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dim: int = -1, eps: float = 1e-8,
            flatten: bool = False) -> torch.Tensor:
    """SLERP from v0 (t = 0) to v1 along ``dim`` (or of the flattened tensors), linear where collinear.

    Memory: the same operations as the textbook form, but each (n,) temporary freed or reused as soon
    as it is spent, and for flattened tensors (one angle) only the branch taken is computed: at most
    two (n,) tensors beyond the inputs at a time.
    """
    shape = v0.shape
    if flatten:
        v0, v1 = v0.reshape(-1), v1.reshape(-1)
    elif dim != -1:
        v0, v1 = v0.transpose(dim, -1), v1.transpose(dim, -1)
    u0 = v0 / torch.norm(v0, dim=-1, keepdim=True).clamp(min=1e-7)
    u1 = v1 / torch.norm(v1, dim=-1, keepdim=True).clamp(min=1e-7)
    cos = u0.mul_(u1).sum(dim=-1, keepdim=True).clamp(-1, 1)  # Σ u0·u1
    del u0, u1
    collinear = (1 - cos.square()) <= eps**2
    theta = torch.acos(torch.where(collinear, torch.zeros_like(cos), cos))

    def linear() -> torch.Tensor:  # (1 − t)·v0 + t·v1
        return ((1 - t) * v0).add_(t * v1)

    def spherical() -> torch.Tensor:  # (sin((1 − t)θ)·v0 + sin(tθ)·v1) / sin θ
        return (torch.sin((1 - t) * theta) * v0).add_(torch.sin(t * theta) * v1).div_(torch.sin(theta))

    if flatten:  # one angle: one branch
        out = linear() if bool(collinear) else spherical()
    else:
        out = torch.where(collinear, linear(), spherical())
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
        # the task vectors in the inputs' own buffers where they are (the executor owns them)
        owned = deltas_in_place(g, [a, b]) if a is tensors[0] and b is tensors[1] else [False, False]
        da, db = (x if mine else x - g for x, mine in zip((a, b), owned))
        return nuslerp(t, da, db, dim=dim, flatten=flatten).add_(g).to(base.dtype)  # g + slerp


def _row_sum(x: torch.Tensor) -> torch.Tensor:
    """``x.sum(-1, keepdim=True)`` of a 1-D x, added up as one row of an (N, n) stack is: through a two-row
    zero-stride view, as torch splits the one sum of a single output of 32768 entries or more between its
    threads (another rounding) but never a row of several outputs."""
    return x.expand(2, -1).sum(-1, keepdim=True)[0]


def multislerp(tensors: list[torch.Tensor], weights: list[float], base: torch.Tensor | None = None,
               normalize_weights: bool = True, eps: float = 1e-8, in_place: bool = False) -> torch.Tensor:
    """Barycentric interpolation on the sphere (see the module docstring).

    Memory: model by model, never an (N, n) stack. The unit vectors are recomputed in each pass from the
    xᵢ; with a base and ``in_place`` (the inputs are the caller's to overwrite) an input that shares memory
    with neither the base nor another input becomes δᵢ in its own buffer, the others are left as they are
    and δᵢ recomputed. Beyond the inputs: m, one running sum and at most two more (n,) tensors at a time,
    whatever N. The sums over the models are left folds from +0, as torch's CPU sum over the stack's first
    dimension adds them for N ≤ 4, and the per-model norms and dot products reduce each row as over the
    stack: bitwise the stacked formula there (beyond, within rounding).
    """
    if len(tensors) == 1:
        return tensors[0]
    shape = tensors[0].shape
    # whether tensors[i] already holds δᵢ
    delta = deltas_in_place(base, tensors) if base is not None and in_place else [False] * len(tensors)

    def flat(i: int) -> torch.Tensor:  # xᵢ (δᵢ with a base), flattened
        x = tensors[i] if base is None or delta[i] else tensors[i] - base
        return x.reshape(-1)

    first = flat(0)
    w = torch.tensor(weights, dtype=first.dtype, device=first.device)
    if normalize_weights:
        w = w / w.sum()
    del first
    norms = torch.cat([torch.norm(flat(i), dim=-1, keepdim=True) for i in range(len(tensors))])  # (N,)

    def unit(i: int) -> torch.Tensor:  # uᵢ = xᵢ/(‖xᵢ‖ + eps), a new (n,) tensor
        return flat(i) / (norms[i] + eps)

    mean = None  # Σ wᵢuᵢ
    for i in range(len(tensors)):
        term = unit(i).mul_(w[i])
        mean = term.add_(0.0) if mean is None else mean.add_(term)
        del term
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if len(tensors) != 2:
            raise LuminaryError("multislerp: the weighted sum of the unit inputs is zero (antipodal inputs whose "
                                "weights cancel); change the weights")
        out = (flat(0) * w[0] + flat(1) * w[1]).reshape(shape)
        return out if base is None else out + base
    mean = mean.div_(mean_norm)
    tangent = None  # τ = Σ wᵢ(uᵢ − ⟨uᵢ, m⟩m)
    for i in range(len(tensors)):
        u = unit(i)
        along = _row_sum(u * mean) * mean
        u.sub_(along).mul_(w[i])
        del along
        tangent = u.add_(0.0) if tangent is None else tangent.add_(u)
        del u
    length = torch.norm(tangent) + eps
    out = mean.mul_(torch.cos(length)).add_(tangent.mul_(torch.sin(length) / length)).mul_((norms * w).sum())
    del tangent
    out = out.reshape(shape)
    if base is None:
        return out
    return out.add_(base) if out.shape == base.shape and out.dtype == torch.result_type(out, base) else out + base


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
                         None if base is None else _work(base), shared["normalize_weights"], shared["eps"],
                         in_place=True)  # the executor owns the inputs
        return out.to(dtype)


def karcher_mean(tensors: list[torch.Tensor], alphas: list[float], max_iter: int = 10,
                 tol: float = 1e-5, owned: list[bool] | None = None) -> torch.Tensor:
    """The weighted Karcher mean of the inputs' directions, scaled by their weighted mean norm.

    Memory: the inputs are visited one at a time, never stacked. ``owned[i]`` says that tensors[i] may be
    overwritten (the caller's to give, and sharing memory with no other input): it then becomes its unit
    vector in its own buffer; the others get a new one. Inputs left out (norm ≤ tol) get none. Beyond the
    inputs (and the unit vectors of the inputs not owned): u, the step and at most two more (n,) tensors at
    a time, whatever N.
    """
    if len(tensors) == 1:
        return tensors[0]
    dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    norms = [torch.linalg.vector_norm(x.to(dtype)) for x in tensors]
    keep = [i for i, n in enumerate(norms) if n.item() > tol]
    if not keep:
        return torch.zeros_like(tensors[0])

    def unit(i: int) -> torch.Tensor:  # xᵢ/‖xᵢ‖ (0 where ‖xᵢ‖ = 0), in xᵢ's buffer where owned
        x, n = tensors[i], norms[i]
        mine = owned is not None and owned[i] and x.dtype == torch.result_type(x, n)
        if n.item() == 0.0:  # kept only for a negative tol
            return x.zero_() if mine else torch.zeros_like(x)
        return x.div_(n) if mine else (x / n).to(x.dtype)

    total = sum(alphas[i] for i in keep)
    a = [alphas[i] / total for i in keep]
    us = [unit(i) for i in keep]
    u = torch.zeros_like(us[0])
    for ai, ui in zip(a, us):
        u += ai * ui
    length = torch.linalg.vector_norm(u.to(dtype))
    u = us[0].clone() if length.item() < tol else u.div_(length)
    # Each step reuses two buffers (the step and one scratch) and updates u in its own: the products and
    # sums of the textbook form, without a fresh (n,) tensor for each (each would be mapped and faulted in)
    step, along = torch.empty_like(u), torch.empty_like(u)
    for _ in range(max_iter):
        step.zero_()
        for ai, ui in zip(a, us):
            cos = torch.clamp(torch.dot(u.flatten(), ui.flatten()), -1.0, 1.0)
            theta = torch.arccos(cos)
            if theta.item() < tol:
                continue
            # step += aᵢ·(θ/sin θ)·(uᵢ − cos·u)
            torch.mul(u, cos, out=along)
            step += torch.sub(ui, along, out=along).mul_(ai * (theta / torch.sin(theta)))
        size = torch.linalg.vector_norm(step.to(dtype))
        if size.item() < tol:
            break
        # u ← cos‖s‖·u + sin‖s‖·(s/‖s‖), then u/‖u‖
        u.mul_(torch.cos(size)).add_(step.div_(size).mul_(torch.sin(size)))
        length = torch.linalg.vector_norm(u.to(dtype))
        if length.item() > tol:
            u.div_(length)
    del step, along
    return sum(ai * n for ai, n in zip(alphas, norms)) * u


class Karcher(MergeMethod):
    def __init__(self):
        super().__init__(name="karcher", title="Karcher mean", paper="https://arxiv.org/abs/2603.04972",
                         base="ignored", params=(Param("max_iter", int, "shared", default=10),
                                                 Param("tol", float, "shared", default=1e-5)))

    def merge(self, base, tensors, shared, per_model, generator):
        dtype = tensors[0].dtype
        xs = [_work(x) for x in tensors]
        return karcher_mean(xs, [1.0 / len(xs)] * len(xs), shared["max_iter"], shared["tol"],
                            owned=owned_inputs(xs, base)).to(dtype)  # the executor owns the inputs
