"""Each merge formula against a hand computation on small tensors."""

import importlib
import math
import pkgutil

import pytest
import torch

import luminary.merge.methods as methods_pkg
from luminary.merge.methods import METHODS
from luminary.merge.methods.sparsify import STREAM, bernoulli, drop_, keep_mask, magnitude
from luminary.merge.methods.slerp import slerp

T = torch.tensor


def run(name, base, tensors, per_model=None, seed=0, **shared):
    """One method on copies of the inputs, which it may overwrite, as the executor lets it."""
    method = METHODS[name]
    base = base.clone() if base is not None else None
    per_model = per_model or [{} for _ in tensors]
    full_shared = {p.name: shared.get(p.name, p.default) for p in method.params if p.scope == "shared"}
    full_models = [{p.name: pm.get(p.name, p.default) for p in method.params if p.scope == "model"} for pm in per_model]
    return method.merge(base, [t.clone() for t in tensors], full_shared, full_models, torch.Generator().manual_seed(seed))


def test_every_method_module_is_registered():
    helpers = {"base", "registry", "sparsify"}
    modules = {m.name for m in pkgutil.iter_modules(methods_pkg.__path__)} - helpers
    used = {type(m).__module__.rsplit(".", 1)[-1] for m in METHODS.values()}
    assert modules == used
    for name in modules:
        importlib.import_module(f"luminary.merge.methods.{name}")


def test_linear():
    out = run("linear", None, [T([1.0, 2.0]), T([3.0, 4.0])], [{"weight": 1.0}, {"weight": 3.0}])
    assert torch.equal(out, T([2.5, 3.5]))
    raw = run("linear", None, [T([1.0, 2.0]), T([3.0, 4.0])], [{"weight": 1.0}, {"weight": 3.0}], normalize=False)
    assert torch.equal(raw, T([10.0, 14.0]))


def test_task_arithmetic():
    out = run("task_arithmetic", T([1.0, 1.0]), [T([2.0, -1.0]), T([4.0, 2.0])],
              [{"weight": 0.5}, {"weight": 1.0}], **{"lambda": 2.0})
    # Δ = 0.5·[1, −2] + [3, 1] = [3.5, 0]; θ = base + 2Δ
    assert torch.allclose(out, T([8.0, 1.0]))


D1, D2 = T([1.0, -2.0, 3.0, 0.5]), T([-3.0, 1.0, 1.0, -0.1])


def test_ties_sign_election_sum():
    out = run("ties", torch.zeros(4), [D1, D2])
    # Σδ = [−2, −1, 4, 0.4] → signs [−, −, +, +]; kept: [δ2, δ1, both, δ1]; divided by the kept weights
    assert torch.allclose(out, T([-3.0, -2.0, 2.0, 0.5]))


def test_ties_sign_election_count():
    out = run("ties", torch.zeros(4), [D1, D2], consensus="count")
    # sign counts [0, 0, 2, 0] ≥ 0 → all +; kept: [δ1, δ2, both, δ1]
    assert torch.allclose(out, T([1.0, 1.0, 2.0, 0.5]))


def test_ties_weights_enter_election_and_divisor():
    out = run("ties", torch.zeros(4), [D1, D2], [{"weight": 3.0}, {"weight": 1.0}])
    # wδ: [3, −6, 9, 1.5] and [−3, 1, 1, −0.1]; Σ = [0, −5, 10, 1.4] → [+ (tie), −, +, +]
    assert torch.allclose(out, T([1.0, -2.0, 2.5, 0.5]))
    raw = run("ties", torch.zeros(4), [D1, D2], [{"weight": 3.0}, {"weight": 1.0}], normalize=False)
    assert torch.allclose(raw, T([3.0, -6.0, 10.0, 1.5]))


def test_ties_keeps_the_largest_entries():
    kept = magnitude(T([1.0, -2.0, 3.0, 0.5]), density=0.5)
    assert torch.equal(kept, T([0.0, -2.0, 3.0, 0.0]))
    assert torch.equal(magnitude(T([1.0, -2.0, 3.0]), density=0.1), T([0.0, 0.0, 3.0]))  # at least one
    out = run("ties", torch.zeros(4), [D1, T([-3.0, 1.0, 1.5, -0.1])], [{"density": 0.5}, {"density": 0.5}])
    # δ1 → [0, −2, 3, 0], δ2 → [−3, 0, 1.5, 0]; Σ = [−3, −2, 4.5, 0]
    assert torch.allclose(out, T([-3.0, -2.0, 2.25, 0.0]))


def test_ties_with_tied_sizes_keeps_exactly_k_like_argsort():
    delta = torch.randint(-20, 20, (100_000,)).float()
    kept = magnitude(delta, density=0.37)
    k = int(0.37 * delta.numel())
    reference = torch.zeros_like(delta)
    top = torch.argsort(delta.abs(), descending=True)[:k]
    reference[top] = delta[top]
    assert int((kept != 0).sum()) <= k and torch.equal(kept, reference)


def test_dare_is_seeded_and_keeps_density_and_l1():
    delta = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    a = bernoulli(delta, 0.3, torch.Generator().manual_seed(5), "l1")
    b = bernoulli(delta, 0.3, torch.Generator().manual_seed(5), "l1")
    c = bernoulli(delta, 0.3, torch.Generator().manual_seed(6), "l1")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs((a != 0).float().mean().item() - 0.3) < 0.005
    assert math.isclose(a.abs().sum().item(), delta.abs().sum().item(), rel_tol=1e-4)
    big = torch.randn(1 << 23, generator=torch.Generator().manual_seed(1)) * 0.002
    kept = bernoulli(big, 0.5, torch.Generator().manual_seed(5), "l1")  # an accumulation error shows at this size
    assert math.isclose(kept.double().abs().sum().item(), big.double().abs().sum().item(), rel_tol=2e-5)
    kept = a != 0
    inverse = bernoulli(delta, 0.3, torch.Generator().manual_seed(5), "density")
    assert torch.allclose(inverse[kept], delta[kept] / 0.3)


@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_keep_mask_has_the_density_and_does_not_depend_on_threads(density):
    shape = (3, STREAM // 2 + 7)  # two streams, the second one short
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        mask = keep_mask(shape, density, torch.Generator().manual_seed(1))
        torch.set_num_threads(1)
        assert torch.equal(mask, keep_mask(shape, density, torch.Generator().manual_seed(1)))
    finally:
        torch.set_num_threads(threads)
    n = mask.numel()
    assert abs(mask.float().mean().item() - density) < 5 * math.sqrt(density * (1 - density) / n)
    head, tail = mask.reshape(-1)[:1000], mask.reshape(-1)[STREAM:STREAM + 1000]
    assert not torch.equal(head, tail)  # each stream has its own seed
    assert not torch.equal(mask, keep_mask(shape, density, torch.Generator().manual_seed(2)))
    x = torch.randn(shape)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):  # numpy's path and torch's
        dropped = drop_(x.to(dtype), density, torch.Generator().manual_seed(1))
        assert torch.equal(dropped, x.to(dtype) * mask)


def test_dare_density_one_is_task_arithmetic():
    base, ts = torch.randn(50), [torch.randn(50), torch.randn(50)]
    w = [{"weight": 0.3}, {"weight": 0.9}]
    assert torch.equal(run("dare_linear", base, ts, w), run("task_arithmetic", base, ts, w))


def test_slerp():
    a, b = T([1.0, 0.0]), T([0.0, 1.0])
    assert torch.allclose(slerp(0.0, a, b), a) and torch.allclose(slerp(1.0, a, b), b)
    assert torch.allclose(slerp(0.5, a, b), T([math.sqrt(0.5), math.sqrt(0.5)]))
    theta = math.pi / 2
    expected = math.sin(0.7 * theta) * a + math.sin(0.3 * theta) * b  # sin Ω = 1
    assert torch.allclose(slerp(0.3, a * 2, b * 3), expected * T([2.0, 3.0]), atol=1e-6)
    # nearly collinear: |cos| > 0.9995 falls back to linear interpolation
    c, d = T([1.0, 0.01]), T([1.0, 0.0])
    assert torch.allclose(slerp(0.25, c, d), 0.75 * c + 0.25 * d)
    assert torch.allclose(run("slerp", c, [d], t=0.25), 0.75 * c + 0.25 * d)


def test_model_stock():
    base = torch.zeros(2)
    w1, w2 = T([1.0, 1.0]), T([1.0, 0.0])
    cos = 1 / math.sqrt(2)
    t = 2 * cos / (1 + cos)
    assert torch.allclose(run("model_stock", base, [w1, w2]), t * T([1.0, 0.5]))
    # orthogonal offsets: cos = 0, t = 0, the base
    assert torch.equal(run("model_stock", base + 1, [T([2.0, 1.0]), T([1.0, 2.0])]), base + 1)


def model_stock_written_out(base, tensors, filter_wise=False):
    """Model Stock with a fresh tensor for every step (mergekit 0.1.5's order of operations)."""
    w0 = (base.unsqueeze(0) if base.dim() == 1 else base) if filter_wise else base.reshape(-1)
    ws = [(w.unsqueeze(0) if w.dim() == 1 else w) if filter_wise else w.reshape(-1) for w in tensors]
    offsets = [w - w0 for w in ws]
    cosines = [((a * b).sum(dim=-1) / (torch.norm(a, dim=-1) * torch.norm(b, dim=-1)).clamp(min=1e-6)).clamp(-1, 1)
               for i, a in enumerate(offsets) for b in offsets[i + 1:]]
    cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
    n = len(ws)
    den = 1 + (n - 1) * cos
    singular = den.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos), n * cos / torch.where(singular, torch.ones_like(cos), den))
    return (t * (sum(ws) / n) + (1 - t) * w0).reshape(base.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("filter_wise", [False, True])
@pytest.mark.parametrize("n", [2, 3, 4])
def test_model_stock_in_place_is_the_formula_written_out(n, filter_wise, dtype):
    gen = torch.Generator().manual_seed(n)
    for shape in [(37, 53), (211,)]:
        base = torch.randn(shape, generator=gen, dtype=dtype)
        tensors = [base + 0.1 * torch.randn(shape, generator=gen, dtype=dtype) for _ in range(n)]
        assert torch.equal(run("model_stock", base, tensors, filter_wise=filter_wise),
                           model_stock_written_out(base, tensors, filter_wise))
    # an input that is the base tensor itself (the base listed under models too) is not overwritten
    base = torch.randn(64, 8, generator=gen)
    inputs = [base] + [base + torch.randn(64, 8, generator=gen) for _ in range(n - 1)]
    kept = base.clone()
    out = METHODS["model_stock"].merge(base, inputs, {"filter_wise": filter_wise}, [{}] * n, gen)
    assert torch.equal(base, kept) and torch.equal(out, model_stock_written_out(kept, [kept] + inputs[1:], filter_wise))


def test_passthrough_scale():
    assert torch.equal(run("passthrough", None, [T([1.0, 2.0])], [{"scale": 2.0}]), T([2.0, 4.0]))


@pytest.mark.parametrize("name", ["ties", "dare_ties", "task_arithmetic", "dare_linear", "model_stock", "slerp"])
def test_methods_that_need_a_base_say_so(name):
    from luminary.core.errors import LuminaryError

    with pytest.raises(LuminaryError, match="base_model"):
        METHODS[name].check_models(1, False, "models")


def mergekit_slerp(t: float, a: torch.Tensor, b: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
    """mergekit 0.1.5's order of operations: norms of chunk norms, normalise, multiply, sum, acos in float32."""
    x, y = a.reshape(-1), b.reshape(-1)
    na = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(c) for c in x.split(chunk)]))
    nb = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(c) for c in y.split(chunk)]))
    dot = torch.stack([(p / na * (q / nb)).sum() for p, q in zip(x.split(chunk), y.split(chunk))]).sum()
    assert dot.abs() <= 0.9995  # the spherical branch, where rounding of cos Ω matters
    tt = torch.tensor(t)
    theta = torch.acos(dot.clamp(-1, 1))
    return (torch.sin((1 - tt) * theta) / torch.sin(theta) * a + torch.sin(tt * theta) / torch.sin(theta) * b)


@pytest.mark.parametrize("similarity", [0.3, 0.995])
def test_slerp_on_tensors_of_several_chunks_agrees_with_mergekits_order_of_operations(similarity):
    """Fused chunk statistics against mergekit's passes; a norm from the sum of squares is off by 2-3e-7."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2048, 2048 + 3, generator=g) * 0.02
    b = similarity * a + math.sqrt(1 - similarity**2) * torch.randn(a.shape, generator=g) * 0.02
    for t in (0.1, 0.5):
        assert (slerp(t, a, b) - mergekit_slerp(t, a, b)).abs().max() <= 1e-7
        assert torch.equal(slerp(t, a.clone(), b, in_place=True), slerp(t, a, b))
    same = a.clone()  # one buffer as both ends: writing the result into it early would give 0.91·a
    assert torch.allclose(slerp(0.3, same, same, in_place=True), a, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_sign_election_equals_the_masked_sum_written_out(dtype):
    """Δ = s · Σ relu(s · wδ) against Σ mᵢwᵢδᵢ with mᵢ = [sgn(wᵢδᵢ) = s], and the divisor Σ mᵢwᵢ."""
    elect = type(METHODS["ties"])._elect
    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        n, k = 1 + trial * 37, 2 + trial % 3
        deltas = [torch.randint(-3, 4, (n,), generator=g).to(dtype) * 0.5 if trial % 2
                  else torch.randn(n, generator=g).to(dtype) for _ in range(k)]  # integers: ties and zeros
        weights = (torch.rand(k, generator=g) - 0.3).to(dtype)
        weighted = [d * w for d, w in zip(deltas, weights)]
        for consensus in ("sum", "count"):
            total = sum(weighted) if consensus == "sum" else sum(d.sign() for d in weighted)
            masks = [torch.where(total >= 0, d > 0, d < 0) for d in weighted]
            expected = weighted[0] * masks[0]
            for d, m in zip(weighted[1:], masks[1:]):
                expected = expected + d * m
            divisor = masks[0].to(dtype) * weights[0]
            for m, w in zip(masks[1:], weights[1:]):
                divisor = divisor.add(m.to(dtype), alpha=w.item())
            divisor[divisor == 0] = 1
            mixed, got = elect([d.clone() for d in weighted], weights, consensus, True)
            assert torch.equal(mixed, expected) and torch.equal(got, divisor)
