"""Multi-SLERP, the Karcher mean and SCE without an (N, n) stack of the models: no operation returns a tensor
of 2n entries or more for N = 4, and the result is bitwise that of the former formula over the stack."""

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.merge.methods import METHODS
from tests.memory import LargestTensor


def work(x):
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def stacked_multislerp(base, tensors, weights, normalize_weights=True, eps=1e-8):
    """spherical.py's former multislerp, over the (N, n) stack, in the working dtype."""
    dtype = tensors[0].dtype
    tensors = [work(t) for t in tensors]
    base = None if base is None else work(base)
    xs = torch.stack(tensors)
    if base is not None:
        xs = xs - base
    flat = xs.reshape(len(tensors), -1)
    w = torch.tensor(weights, dtype=flat.dtype)
    if normalize_weights:
        w = w / w.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    units = flat / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < eps:
        if len(tensors) != 2:
            raise LuminaryError("antipodal")
        out = (xs[0] * w[0] + xs[1] * w[1]).reshape(xs.shape[1:])
        return (out if base is None else out + base).to(dtype)
    mean = mean / mean_norm
    tangents = units - (units * mean).sum(-1, keepdim=True) * mean
    tangent = (tangents * w.view(-1, 1)).sum(0)
    length = torch.norm(tangent) + eps
    out = (mean * torch.cos(length) + tangent * (torch.sin(length) / length)) * (norms.squeeze(-1) * w).sum()
    out = out.reshape(xs.shape[1:])
    return (out if base is None else out + base).to(dtype)


def stacked_sce(base, tensors, select_topk):
    """sce.py's former merge, over the (N, n) stack."""
    deltas = torch.stack([t - base for t in tensors])
    if select_topk < 1:
        if select_topk <= 0:
            mask = torch.zeros_like(deltas[0])
        else:
            variance = torch.var(deltas, dim=0, unbiased=False)
            k = int(torch.count_nonzero(variance) * select_topk)
            mask = torch.zeros_like(variance)
            if k:
                mask.view(-1)[torch.topk(variance.abs().view(-1), k=k, largest=True).indices] = 1
        deltas = deltas * mask.unsqueeze(0)
    positive = deltas.sum(dim=0) >= 0
    agree = torch.where(positive, deltas > 0, deltas < 0).to(deltas.dtype)
    energy = deltas.square().reshape(deltas.shape[0], -1).mean(dim=1)
    total = energy.sum().item()
    eta = torch.full_like(energy, 1 / energy.shape[0]) if abs(total) < 1e-6 else energy / total
    kept = eta.view(-1, *[1] * (deltas.dim() - 1)) * agree
    return base + (deltas * kept).sum(dim=0) / kept.sum(dim=0).clamp(min=1e-6)


def stacked_karcher(tensors, max_iter=10, tol=1e-5):
    """The Karcher mean with every unit vector held at once (spherical.py's former karcher_mean)."""
    dtype = tensors[0].dtype
    xs = [work(t) for t in tensors]
    alphas = [1.0 / len(xs)] * len(xs)
    acc = torch.float64 if xs[0].dtype == torch.float64 else torch.float32
    norms = [torch.linalg.vector_norm(x.to(acc)) for x in xs]
    units = [torch.zeros_like(x) if n.item() == 0.0 else (x / n).to(x.dtype) for x, n in zip(xs, norms)]
    keep = [i for i, n in enumerate(norms) if n.item() > tol]
    if not keep:
        return torch.zeros_like(xs[0]).to(dtype)
    total = sum(alphas[i] for i in keep)
    a = [alphas[i] / total for i in keep]
    us = [units[i] for i in keep]
    u = torch.zeros_like(us[0])
    for ai, ui in zip(a, us):
        u += ai * ui
    length = torch.linalg.vector_norm(u.to(acc))
    u = us[0].clone() if length.item() < tol else (u / length).to(u.dtype)
    for _ in range(max_iter):
        step = torch.zeros_like(u)
        for ai, ui in zip(a, us):
            cos = torch.clamp(torch.dot(u.flatten(), ui.flatten()), -1.0, 1.0)
            theta = torch.arccos(cos)
            if theta.item() < tol:
                continue
            step += ai * (theta / torch.sin(theta)) * (ui - cos * u)
        size = torch.linalg.vector_norm(step.to(acc))
        if size.item() < tol:
            break
        u = (torch.cos(size) * u + torch.sin(size) * (step / size)).to(u.dtype)
        length = torch.linalg.vector_norm(u.to(acc))
        if length.item() > tol:
            u = (u / length).to(u.dtype)
    return (sum(ai * n for ai, n in zip(alphas, norms)) * u).to(dtype)


def inputs(n_models, shape, dtype, seed=0):
    """A base and fine-tunes that change 70 % of the entries; one changes none, one is all zeros."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g)
    tensors = [base + 0.1 * torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.7)
               for _ in range(n_models)]
    if n_models >= 3:
        tensors[1] = base.clone()
        tensors[2] = torch.where(torch.rand(shape, generator=g) < 0.5, base, tensors[2])
    return base.to(dtype), [t.to(dtype) for t in tensors]


def merge(name, base, tensors, per_model=None, **shared):
    method = METHODS[name]
    full = {p.name: shared.get(p.name, p.default) for p in method.params}
    return method.merge(None if base is None else base.clone(), [t.clone() for t in tensors], full,
                        per_model or [{} for _ in tensors], torch.Generator())


CASES = [("multislerp", {}), ("multislerp", {"base": False}), ("karcher", {}), ("sce", {}),
         ("sce", {"select_topk": 0.4})]


@pytest.mark.parametrize("name, options", CASES)
def test_no_operation_returns_a_stack_of_the_models(name, options):
    options = dict(options)
    base, tensors = inputs(4, (48, 40), torch.float32)
    n = base.numel()
    use_base = options.pop("base", True)
    shared = {p.name: options.get(p.name, p.default) for p in METHODS[name].params}
    per_model = [{"weight": w} for w in (1.0, 2.0, 0.5, 1.5)]
    copies = [t.clone() for t in tensors]
    with LargestTensor(by_storage=True) as seen:
        METHODS[name].merge(base if use_base else None, copies, shared, per_model, torch.Generator())
    assert seen.largest < 2 * n
    with LargestTensor(by_storage=True) as former:  # the mode does see the (N, n) stack where there is one
        torch.stack(tensors)
    assert former.largest >= 4 * n


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_models", [2, 3, 4])
@pytest.mark.parametrize("shape", [(7,), (33, 17), (200, 200)])  # 40000 entries: torch's threaded sums
def test_bitwise_the_formula_over_the_stack(shape, n_models, dtype):
    base, tensors = inputs(n_models, shape, dtype, seed=n_models + len(shape))
    for weights in ([1.0] * n_models, [0.5 + i for i in range(n_models)], [2.0, -0.5] + [0.3] * (n_models - 2)):
        per_model = [{"weight": w} for w in weights]
        for b in (None, base):
            for normalize, eps in ((True, 1e-8), (False, 1e-3)):
                ours = merge("multislerp", b, tensors, per_model, normalize_weights=normalize, eps=eps)
                assert torch.equal(ours, stacked_multislerp(b, tensors, weights, normalize, eps))
    for max_iter, tol in ((10, 1e-5), (3, 1e-3)):
        ours = merge("karcher", base, tensors, max_iter=max_iter, tol=tol)
        assert torch.equal(ours, stacked_karcher(tensors, max_iter, tol))
    for select_topk in (1.0, 0.5, 0.3, 0.0):
        assert torch.equal(merge("sce", base, tensors, select_topk=select_topk),
                           stacked_sce(base, tensors, select_topk))


def test_degenerate_multislerp_and_a_zero_model():
    x = torch.randn(50, generator=torch.Generator().manual_seed(1))
    pm = [{"weight": 1.0}] * 2
    assert torch.equal(merge("multislerp", None, [x, -x], pm), stacked_multislerp(None, [x, -x], [1.0, 1.0]))
    g = torch.zeros(50)
    assert torch.equal(merge("multislerp", g, [x, -x], pm), stacked_multislerp(g, [x, -x], [1.0, 1.0]))
    with pytest.raises(LuminaryError):
        merge("multislerp", None, [x, -x, x], [{"weight": 1.0}, {"weight": 2.0}, {"weight": 1.0}])
    zero = [x, torch.zeros(50), 2 * x]
    assert torch.equal(merge("karcher", None, zero), stacked_karcher(zero))


@pytest.mark.parametrize("name", ["multislerp", "karcher", "sce"])
def test_inputs_sharing_memory_with_the_base_or_each_other_are_not_overwritten(name):
    base, (a, b) = inputs(2, (6, 5), torch.float32)
    listed = [base, a, a, b]
    kept = base.clone(), a.clone(), b.clone()
    shared = {p.name: p.default for p in METHODS[name].params}
    if name == "sce":
        shared["select_topk"] = 0.5
    per_model = [{"weight": w} for w in (1.0, 2.0, 0.5, 1.5)]
    expected = {"multislerp": lambda: stacked_multislerp(base, listed, [1.0, 2.0, 0.5, 1.5]),
                "karcher": lambda: stacked_karcher(listed), "sce": lambda: stacked_sce(base, listed, 0.5)}[name]()
    out = METHODS[name].merge(base, listed, shared, per_model, torch.Generator())
    assert torch.equal(out, expected)
    assert torch.equal(base, kept[0]) and torch.equal(a, kept[1])
