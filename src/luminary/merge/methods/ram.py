"""RAM, Reinforced Agent Merging (arXiv:2601.13572), and its tensor-local RAM+ variant.

With task vectors δᵢ = θᵢ − θ_base, an entry contributes where |δᵢ| > ε; c is the
number of models that contribute to it. Entries one model alone changes (c = 1)
are kept whole; shared ones (c > 1) are averaged over their contributors:
θ = θ_base + Σᵢ [|δᵢ| > ε]·δᵢ·([c = 1] + [c > 1]/c).

``ramplus_tl`` scales model i's unique entries by λᵢ = 1 + r·clamp(ρᵢ, 0, α),
ρᵢ = (#shared entries i contributes to) / max(#unique entries of i, ε), counted
within the tensor.

Memory: two passes over the N task vectors, never an (N, n) stack. Pass 1 turns
each θᵢ into δᵢ in its own buffer (the executor owns the inputs; one that shares
memory with the base or another input is left as it is and δᵢ recomputed) and
counts c in an (n,) uint8 tensor. Pass 2 turns each δᵢ in place into its term,
δᵢ·[|δᵢ| > ε]/max(c, 1) (δᵢ itself where c = 1), for RAM+ times λᵢ on its unique
entries (λᵢ needs only δᵢ and c), and adds it to a running sum kept in the first
term's buffer: beyond the inputs, c and masks of n bytes and at most one more (n,)
tensor at a time (|δᵢ|, c as floats, or RAM+'s λᵢ map), whatever N, and a float32
sum for bfloat16 or float16 (tests/merge/test_ram_memory.py).

Summation: the running sum adds the terms left to right at the precision torch's
sum uses (float32 for bfloat16 and float16): torch's CPU sum over the stack's first
dimension does the same for N ≤ 4, so the result is bitwise the stacked formula's
there. For more models torch groups some columns differently (interleaved chains
in its vector lanes, staged accumulators from 16 rows); there, and on a GPU, an
entry shared by three or more models can differ by rounding (the two float sums
lie within 2(N − 1)·2⁻²⁴·Σ|terms|).
"""

from __future__ import annotations

import torch

from luminary.merge.methods.base import ACCUMULATE, MergeMethod, Param, deltas_in_place



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
        epsilon = shared["epsilon"]
        owned = deltas_in_place(base, tensors)

        def delta(i: int) -> torch.Tensor:
            return tensors[i] if owned[i] else tensors[i] - base

        # pass 1: c, the number of models with |δᵢ| > ε at each entry; which δᵢ may hold an ∞ or a NaN
        count = torch.zeros(base.shape, dtype=torch.uint8 if len(tensors) < 256 else torch.int32, device=base.device)
        infinite = []
        for i in range(len(tensors)):
            magnitude = delta(i).abs()
            count.add_(magnitude > epsilon)
            infinite.append(not bool(magnitude.sum().isfinite()))  # or overflowed: then no ∞ is found
            del magnitude
        divisor = count.clamp_(min=1)  # c where c > 0 (where c = 0 no δᵢ is active)
        one = (divisor == 1) if self.plus else None
        # pass 2: Σᵢ δᵢ·[|δᵢ| > ε]·([c = 1]·λᵢ + [c > 1]/c), λᵢ = 1 without RAM+
        total = None
        for i in range(len(tensors)):
            d = delta(i)
            if infinite[i]:  # keep the formula's NaNs: ∞·0 in its other term, NaN·0 where inactive
                inf, active = d.isinf(), d.abs() > epsilon
                d.mul_(active)
            else:  # finite: zeroing the inactive entries is δᵢ·[|δᵢ| > ε] but for the sign of 0 (no sum keeps it)
                inf, inactive = None, d.abs() <= epsilon
                d.masked_fill_(inactive, 0)
                active = inactive.logical_not_()
            if self.plus:
                active_n = torch.count_nonzero(active)
                unique = active.logical_and_(one)
                del active
                unique_n = torch.count_nonzero(unique)
                rho = (active_n - unique_n) / unique_n.clamp(min=epsilon)
                scale = (1 + shared["r"] * rho.clamp(min=0, max=shared["alpha"])).to(d.dtype)
                if bool(scale.isfinite()):
                    d.div_(divisor).mul_(torch.where(unique, scale, torch.ones((), dtype=d.dtype, device=d.device)))
                else:  # ±0·λᵢ is NaN outside the unique entries: the formula term by term
                    d = d * unique * scale + d * (divisor > 1) / divisor
                del unique
            else:
                del active
                d.div_(divisor)  # δᵢ/1 = δᵢ exactly where c = 1
            if inf is not None:
                d.masked_fill_(inf, float("nan"))
                del inf
            if total is None:  # 0 + term (+0 for a −0, as the stacked sum gives), in the term's own buffer
                term_dtype = d.dtype
                total = d.to(ACCUMULATE.get(d.dtype, d.dtype)).add_(0.0)
            else:
                total.add_(d)
            del d
        merged = total.to(term_dtype)
        if merged.dtype == base.dtype and merged.shape == base.shape:
            return merged.add_(base)  # = base + merged (addition commutes), without one more (n,) tensor
        return base + merged
