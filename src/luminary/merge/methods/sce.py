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

Memory: model by model, never an (N, n) stack. Each input becomes δᵢ (then its masked δᵢ, then its term
mᵢηᵢδᵢ) in its own buffer unless it shares memory with the base or another input (then δᵢ is recomputed).
Beyond the inputs: the mask (a byte an entry), the running sums (float32 for 16-bit inputs, as torch's sum) and at most two
more (n,) tensors at a time; the variance pass holds Welford's float64 mean, m2 and step, as torch computes the
variance in float64. The sums over the models are left folds, which torch's CPU sum over the stack's first
dimension matches for N ≤ 4: bitwise the stacked formula there (tests/merge/test_stack_free_memory.py).
"""

from __future__ import annotations

import torch

from luminary.merge.methods.base import ACCUMULATE, MergeMethod, Param, deltas_in_place


def _row_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.reshape(-1).mean()`` added up as one row of an (N, n) stack is (torch splits the sum of a single
    output of 32768 entries or more between its threads, another rounding, but never a row of several)."""
    return x.reshape(1, -1).expand(2, -1).mean(dim=1)[0]


def _eta(energy: torch.Tensor) -> torch.Tensor:
    """ηᵢ from the (N,) mean squares."""
    total = energy.sum().item()
    if abs(total) < 1e-6:
        return torch.full_like(energy, 1 / energy.shape[0])
    return energy / total


def sce_weights(deltas: torch.Tensor) -> torch.Tensor:
    """ηᵢ for stacked task vectors (N, …)."""
    return _eta(deltas.square().reshape(deltas.shape[0], -1).mean(dim=1))


def _select(variance: torch.Tensor, density: float) -> torch.Tensor:
    """The boolean mask of the ⌊density · #{v ≠ 0}⌋ entries of largest |variance| (``variance`` is
    taken as the caller's: its absolute value is taken in place).

    The k-th largest |v| is found by selection (``kthvalue``, linear time) and every entry above it
    kept; only where entries tie with it across the boundary does ``topk``'s own order (mergekit's)
    decide, as before. The same mask either way (``test_sce_selection_by_kthvalue_equals_topk``).
    """
    k = int(torch.count_nonzero(variance) * density)
    mask = torch.zeros(variance.shape, dtype=torch.bool, device=variance.device)
    if not k:
        return mask
    size = variance.abs_().reshape(-1)
    if not size.is_cuda and not bool(torch.isnan(size).any()):
        threshold = torch.kthvalue(size, size.numel() - k + 1).values  # the k-th largest
        keep = torch.ge(size, threshold, out=mask.view(-1))
        if int(keep.sum()) == k:  # no tie across the boundary
            return mask
        mask.zero_()
    mask.view(-1)[torch.topk(size, k=k, largest=True).indices] = True
    return mask


def sce_mask(deltas: torch.Tensor, density: float) -> torch.Tensor:
    """The selection mask (the shape of one task vector) of the highest-variance entries."""
    if density <= 0:
        return torch.zeros_like(deltas[0])
    if density >= 1:
        return torch.ones_like(deltas[0])
    return _select(torch.var(deltas, dim=0, unbiased=False), density).to(deltas.dtype)


CHUNK = 1 << 20  # entries a time in the variance pass: its float64 accumulators stay this small


def _variance(delta_slice, count: int, n: int, like: torch.Tensor) -> torch.Tensor:
    """``torch.var(torch.stack(deltas), dim=0, unbiased=False)`` (flattened), one task vector at a time:
    Welford's update in float64 from mean = m2 = 0, as torch's CPU kernel runs it down each entry, rounded
    to the task vectors' dtype at the end. The entries are independent, so they go ``CHUNK`` at a time:
    the float64 accumulators hold a chunk, not the tensor. ``delta_slice(i, lo, hi)``: δᵢ's flat entries."""
    out = torch.empty(n, dtype=like.dtype, device=like.device)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        mean = torch.zeros(hi - lo, dtype=torch.float64, device=like.device)
        m2 = torch.zeros_like(mean)
        for i in range(count):
            d = delta_slice(i, lo, hi)
            step = d - mean  # δ − mean, in float64
            mean.add_(step / (i + 1))
            step.mul_(d - mean)
            m2.add_(step)
            del step, d
        out[lo:hi] = m2.div_(count)
    return out


class Sce(MergeMethod):
    def __init__(self):
        super().__init__(name="sce", title="SCE", paper="https://arxiv.org/abs/2408.07990", base="required", params=(
            Param("select_topk", float, "shared", default=1.0),
            Param("int8_mask", bool, "shared", default=False),  # mergekit memory option; no effect here
        ))

    def merge(self, base, tensors, shared, per_model, generator):
        if not tensors:
            return base
        owned = deltas_in_place(base, tensors)  # the executor owns the inputs
        mask = None

        def delta(i: int) -> torch.Tensor:  # δᵢ (masked once there is a mask), writable
            if owned[i]:
                return tensors[i]
            d = tensors[i] - base
            return d if mask is None else d.mul_(mask)

        density = shared["select_topk"]
        if density < 1:
            def delta_slice(i: int, lo: int, hi: int) -> torch.Tensor:
                if owned[i]:
                    return tensors[i].reshape(-1)[lo:hi]
                return tensors[i].reshape(-1)[lo:hi] - base.reshape(-1)[lo:hi]

            like = tensors[0] if owned[0] else tensors[0] - base
            mask = (torch.zeros(like.shape, dtype=torch.bool, device=like.device) if density <= 0 else
                    _select(_variance(delta_slice, len(tensors), like.numel(), like).view(like.shape), density))
            del like
            for t, mine in zip(tensors, owned):
                if mine:
                    t.mul_(mask)
        # pass 1: Σᵢ δᵢ for the election, and the mean squares for ηᵢ
        total, energy = None, []
        for i in range(len(tensors)):
            d = delta(i)
            energy.append(_row_mean(d.square()))
            if total is None:  # 0 + δ₁ (+0 for a −0, as the stacked sum gives), at torch's sum precision
                dtype = d.dtype
                total = d.to(ACCUMULATE.get(dtype, dtype), copy=True).add_(0.0)
            else:
                total.add_(d)
            del d
        positive = total.to(dtype) >= 0  # TIES' sum election, ties to +
        del total
        eta = _eta(torch.stack(energy))
        # pass 2: Σᵢ mᵢηᵢδᵢ and Σᵢ mᵢηᵢ
        numerator = denominator = None
        for i in range(len(tensors)):
            d = delta(i)
            kept = torch.where(positive, d > 0, d < 0).to(dtype).mul_(eta[i])
            d.mul_(kept)
            if numerator is None:
                numerator = d.to(ACCUMULATE.get(dtype, dtype)).add_(0.0)
                denominator = kept.to(ACCUMULATE.get(dtype, dtype)).add_(0.0)
            else:
                numerator.add_(d)
                denominator.add_(kept)
            del d, kept
        del positive
        merged = numerator.to(dtype).div_(denominator.to(dtype).clamp_(min=1e-6))
        del numerator, denominator
        if merged.dtype == torch.result_type(base, merged) and merged.shape == base.shape:
            return merged.add_(base)  # = base + merged (addition commutes)
        return base + merged
