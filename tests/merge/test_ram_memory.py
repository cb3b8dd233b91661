"""RAM / RAM+ (arXiv:2601.13572) without an (N, n) stack of task vectors: no operation returns a tensor
of 2n entries or more for N = 4, and the result is bitwise that of the formula over the stack."""

import pytest
import torch

from luminary.merge.methods import METHODS
from tests.memory import LargestTensor


def stacked(base, tensors, epsilon, plus, r=0.1, alpha=0.2):
    """θ_base + Σᵢ [|δᵢ| > ε]·δᵢ·([c = 1]·λᵢ + [c > 1]/c) over the (N, n) stack: ram.py's former code."""
    deltas = torch.stack([t - base for t in tensors]).reshape(len(tensors), -1)
    active = deltas.abs() > epsilon
    count = active.sum(dim=0, keepdim=True)
    deltas = deltas * active
    unique, overlap = count == 1, count > 1
    scale = torch.ones(len(tensors), 1, dtype=deltas.dtype)
    if plus:
        rho = (active & overlap).sum(dim=1) / (active & unique).sum(dim=1).clamp(min=epsilon)
        scale = (1 + r * rho.clamp(min=0, max=alpha)).unsqueeze(-1).to(deltas.dtype)
    merged = (deltas * unique * scale + deltas * overlap / count.clamp(min=1)).sum(dim=0)
    return base + merged.reshape(base.shape)


def inputs(n_models, shape, dtype, seed=0):
    """A base and fine-tunes that change 30-90 % of the entries, some by less than ε, some alike."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g)
    tensors = []
    for i in range(n_models):
        delta = torch.randn(shape, generator=g) * 0.01 * (torch.rand(shape, generator=g) < (0.3, 0.6, 0.9)[i % 3])
        delta = torch.where(torch.rand(shape, generator=g) < 0.05, torch.full(shape, 3e-6), delta)
        t = base + delta
        if tensors:
            t = torch.where(torch.rand(shape, generator=g) < 0.1, tensors[0], t)
        tensors.append(t.to(dtype))
    return base.to(dtype), tensors


def merge(name, base, tensors, **shared):
    method = METHODS[name]
    full = {p.name: shared.get(p.name, p.default) for p in method.params}
    return method.merge(base.clone(), [t.clone() for t in tensors], full, [{} for _ in tensors], torch.Generator())


@pytest.mark.parametrize("name", ["ram", "ramplus_tl"])
def test_no_operation_returns_a_stack_of_the_task_vectors(name):
    base, tensors = inputs(4, (48, 40), torch.float32)
    n = base.numel()
    copies = [t.clone() for t in tensors]
    with LargestTensor() as seen:
        METHODS[name].merge(base, copies, {p.name: p.default for p in METHODS[name].params}, [{}] * 4,
                            torch.Generator())
    assert seen.largest < 2 * n
    with LargestTensor() as former:  # the mode does see the (N, n) stack where there is one
        stacked(base, tensors, 1e-5, name == "ramplus_tl")
    assert former.largest >= 4 * n


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_models", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(5,), (48, 40), (3, 7, 11)])
def test_bitwise_the_formula_over_the_stack(shape, n_models, dtype):
    # up to 4 models torch's CPU sum over the stack adds them in order in every lane, as ram.py does
    base, tensors = inputs(n_models, shape, dtype, seed=n_models)
    for epsilon in (1e-5, 0.005):
        assert torch.equal(merge("ram", base, tensors, epsilon=epsilon), stacked(base, tensors, epsilon, False))
        for r, alpha in ((0.1, 0.2), (0.5, 0.3), (-0.7, 1.0)):
            ours = merge("ramplus_tl", base, tensors, epsilon=epsilon, r=r, alpha=alpha)
            assert torch.equal(ours, stacked(base, tensors, epsilon, True, r, alpha))


def test_inputs_sharing_memory_with_the_base_or_each_other_are_not_overwritten():
    base, (a, b) = inputs(2, (6, 5), torch.float32)
    expected = stacked(base, [base, a, a, b], 1e-5, True)
    kept = base.clone(), a.clone()
    out = METHODS["ramplus_tl"].merge(base, [base, a, a, b], {"r": 0.1, "alpha": 0.2, "epsilon": 1e-5},
                                      [{}] * 4, torch.Generator())
    assert torch.equal(out, expected) and torch.equal(base, kept[0])
