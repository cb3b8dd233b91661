"""Task-vector merges: task arithmetic, TIES, DARE, Breadcrumbs, DELLA (each linear or TIES), in one class.

With δᵢ = θᵢ − θ_base (Ilharco et al. 2023, arXiv:2212.04089):

1. sparsify δᵢ (``magnitude`` for TIES, ``bernoulli`` for DARE, ``magnitude_outliers``
   for Breadcrumbs with ``gamma``, ``della`` for DELLA with ``epsilon``; density 1 keeps all);
2. weight: wᵢδᵢ;
3. consensus (TIES sign election): ``sum``: s = sgn(Σᵢ wᵢδᵢ), ties to +;
   ``count``: s = +1 where Σᵢ sgn(wᵢδᵢ) ≥ 0 else −1; mask mᵢ = [sgn(wᵢδᵢ) = s]
   (without consensus mᵢ = 1);
4. Δ = Σᵢ mᵢwᵢδᵢ; with ``normalize``, Δ /= Σᵢ mᵢwᵢ (entries where that is 0
   divide by 1; without consensus the divisor is Σᵢ wᵢ, 1 when |Σᵢ wᵢ| < 1e-8);
5. θ = θ_base + λΔ.

Defaults as mergekit: ``ties`` normalize=True; ``dare_*`` rescale=True
(L1), normalize=False; ``breadcrumbs*`` rescale=False, normalize=False,
gamma 0.01; ``della`` normalize=True, rescale=True, ``della_linear``
normalize=False, rescale=True, epsilon 0.15; density 1; λ = 1.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from luminary.core.errors import LuminaryError
from luminary.core.seed import derive_seed
from luminary.merge.methods import sparsify
from luminary.merge.methods.base import MergeMethod, Param

# Two sorts at once hold two sorts' buffers (|δ|, sorted copy, int64 indices: 20 bytes an entry); for
# the 65M-entry embeddings of a 1B model that lifted peak RSS from 2.8 to 4.0 GB, so those go one by one.
SIDE_BY_SIDE_MAX_ENTRIES = 1 << 24


class TaskArithmetic(MergeMethod):
    def __init__(self, name: str, title: str, paper: str, sparsification: str | None, consensus: str | None,
                 normalize: bool, rescale: bool):
        super().__init__(
            name=name, title=title, paper=paper, base="required",
            params=(
                Param("weight", float, "model", default=1.0),
                Param("density", float, "model", default=1.0, bounds=(0.0, 1.0)),
                Param("normalize", bool, "shared", default=normalize),
                Param("rescale", bool, "shared", default=rescale),
                Param("rescale_norm", str, "shared", default="l1"),
                Param("consensus", str, "shared", default=consensus),
                Param("lambda", float, "shared", default=1.0),
                Param("int8_mask", bool, "shared", default=False),  # mergekit memory option; no effect here
            ) + ((Param("gamma", float, "model", default=0.01, bounds=(0.0, 1.0)),)
                 if sparsification == "magnitude_outliers" else ())
              + ((Param("epsilon", float, "model", default=0.15, bounds=(0.0, 1.0)),)
                 if sparsification == "della" else ()),
        )
        object.__setattr__(self, "sparsification", sparsification)

    def check_weights(self, shared, per_model, where):
        if shared["rescale_norm"] not in ("l1", "density"):
            raise LuminaryError(f"{where}: rescale_norm must be 'l1' or 'density' (got {shared['rescale_norm']!r})")
        if shared["consensus"] not in (None, "sum", "count"):
            raise LuminaryError(f"{where}: consensus must be 'sum' or 'count' (got {shared['consensus']!r})")
        if shared["normalize"] and sum(p["weight"] for p in per_model) == 0:
            raise LuminaryError(f"{where}: the weights sum to zero, so they cannot be normalised")
        if self.sparsification == "della":
            for p in per_model:
                d, e = p["density"], p["epsilon"]
                if 0 < d < 1 and not (0 < d - e and d + e < 1):
                    raise LuminaryError(f"{where}: epsilon {e} must keep density ± epsilon inside (0, 1) "
                                        f"(density {d})")

    def merge(self, base, tensors, shared, per_model, generator):
        if not tensors:
            return base
        mode = shared["rescale_norm"] if shared["rescale"] else None
        weights = torch.tensor([p["weight"] for p in per_model], dtype=base.dtype)
        jobs = list(zip(tensors, per_model, weights))
        weigh = lambda job: self._weighted_delta(base, *job, mode, generator)  # noqa: E731
        if (self.sparsification in ("magnitude", "magnitude_outliers") and len(jobs) > 1
                and torch.get_num_threads() > 1 and base.numel() <= SIDE_BY_SIDE_MAX_ENTRIES):
            # TIES' and Breadcrumbs' tie-breaks are a full sort, which runs on one core: sparsify the
            # models side by side (neither draws from the generator, so the order changes nothing)
            with ThreadPoolExecutor(min(len(jobs), torch.get_num_threads())) as pool:
                deltas = list(pool.map(weigh, jobs))
        else:
            deltas = [weigh(job) for job in jobs]
        if shared["consensus"] is None:
            mixed = deltas[0]
            for delta in deltas[1:]:
                mixed.add_(delta)
            divisor = weights.sum()
            if divisor.abs() < 1e-8:
                divisor = torch.ones((), dtype=base.dtype)
        else:
            mixed, divisor = self._elect(deltas, weights, shared["consensus"], shared["normalize"])
        if shared["normalize"]:
            mixed.div_(divisor)
        if shared["lambda"] != 1:
            mixed.mul_(shared["lambda"])
        return mixed.add_(base).to(base.dtype)

    def _weighted_delta(self, base, tensor, p, w, mode, generator) -> torch.Tensor:
        """wᵢ · sparsify(θᵢ − θ_base), in the buffer of θᵢ (the executor owns it)."""
        delta = tensor.sub_(base)
        if self.sparsification == "magnitude":
            delta = sparsify.magnitude(delta, p["density"], mode)
        elif self.sparsification == "bernoulli":  # draws in order from the shared generator: never in parallel
            delta = sparsify.bernoulli(delta, p["density"], generator, mode, in_place=True)
        elif self.sparsification == "magnitude_outliers":
            delta = sparsify.magnitude_outliers(delta, p["density"], p["gamma"], mode)
        elif self.sparsification == "della":  # draws from the shared generator, like DARE's
            delta = sparsify.della_magprune(delta, p["density"], p["epsilon"], generator, mode, in_place=True)
        return delta.mul_(w)

    @staticmethod
    def _elect(deltas: list[torch.Tensor], weights: torch.Tensor, consensus: str, normalize: bool):
        """Δ = Σ mᵢwᵢδᵢ and (when normalising) Σ mᵢwᵢ under the elected sign; ``deltas`` are weighted.

        mᵢ = [sgn(wᵢδᵢ) = s] (a zero entry never matches). With s = ±1, mᵢwᵢδᵢ = s · relu(s · wᵢδᵢ)
        exactly (a product by ±1 rounds nothing), so Δ = s · Σᵢ relu(s · wᵢδᵢ): two in-place passes a
        model, on the deltas the executor owns, where comparing with each sign, selecting and
        multiplying by the mask took five.
        """
        if consensus == "sum":
            total = deltas[0].clone()
            for delta in deltas[1:]:
                total.add_(delta)
        else:
            total = deltas[0].sign()
            for delta in deltas[1:]:
                total.add_(delta.sign())
        sign = torch.where(total >= 0, 1.0, -1.0).to(deltas[0].dtype)  # ties go to +
        del total
        mixed, divisor = None, None
        for delta, w in zip(deltas, weights):
            agreeing = delta.mul_(sign).clamp_(min=0)  # |wᵢδᵢ| where its sign is s, else 0
            if normalize:
                keep = (agreeing > 0).to(delta.dtype)
                divisor = keep.mul_(w) if divisor is None else divisor.add_(keep, alpha=w.item())
            mixed = agreeing if mixed is None else mixed.add_(agreeing)
        mixed.mul_(sign)
        if divisor is not None:
            divisor[divisor == 0] = 1
        return mixed, divisor


def derive_generator(seed: int, tensor_name: str) -> torch.Generator:
    """A generator for one tensor: DARE masks depend on (seed, tensor), not on execution order."""
    return torch.Generator().manual_seed(derive_seed(seed, tensor_name))
