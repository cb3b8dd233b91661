"""The methods added after mergekit 0.1.5: hand computations, mergekit's own outputs, DELLA's distribution."""

import json
import math
from pathlib import Path

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.merge.methods import METHODS
from luminary.merge.methods.sparsify import della_magprune, della_probabilities, magnitude_outliers
from luminary.merge.methods.spherical import karcher_mean, multislerp, nuslerp

T = torch.tensor
EXPECTED = json.loads(Path(__file__).with_name("mergekit_expected.json").read_text())


def run(name, base, tensors, per_model=None, seed=0, **shared):
    """One method with its defaults filled in, on copies of the inputs (it may overwrite them)."""
    method = METHODS[name]
    per_model = per_model or [{} for _ in tensors]
    full_shared = {p.name: shared.get(p.name, p.default) for p in method.params if p.scope == "shared"}
    full_models = [{p.name: pm.get(p.name, p.default) for p in method.params if p.scope == "model"} for pm in per_model]
    method.check_weights(full_shared, full_models, "test")
    return method.merge(None if base is None else base.clone(), [t.clone() for t in tensors], full_shared,
                        full_models, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", sorted(EXPECTED["cases"]))
def test_agrees_with_mergekit(case):
    """mergekit 0.1.5's outputs on the same tensors (tests/merge/make_mergekit_expected.py) to 1e-6."""
    spec = EXPECTED["cases"][case]
    tensors = {k: T(v) for k, v in EXPECTED["tensors"].items()}
    method = METHODS[spec["method"]]
    base = spec["base"]
    if method.base == "ignored":
        base = None
    names = [n for n in spec["inputs"] if n != base]
    per_model = [{k: v[n] for k, v in spec["parameters"].items() if isinstance(v, dict)} for n in names]
    shared = {k: v for k, v in spec["parameters"].items() if not isinstance(v, dict)}
    out = run(spec["method"], tensors[base] if base else None, [tensors[n] for n in names], per_model, **shared)
    assert (out - T(spec["output"])).abs().max().item() <= 1e-6


def test_nuslerp_by_hand():
    a, b = T([1.0, 0.0]), T([0.0, 2.0])
    # t = w₂/(w₁ + w₂) = 0.5; Ω = π/2: (sin(π/4)·a + sin(π/4)·b) / 1
    out = run("nuslerp", None, [a, b], [{"weight": 1.0}, {"weight": 1.0}])
    assert torch.allclose(out, math.sin(math.pi / 4) * (a + b))
    # with a base, of the task vectors
    g = T([1.0, 1.0])
    assert torch.allclose(run("nuslerp", g, [a + g, b + g]), g + math.sin(math.pi / 4) * (a + b))
    # per row (flatten off): row 0 collinear → linear; row 1 orthogonal → spherical
    x, y = T([[1.0, 0.0], [1.0, 0.0]]), T([[3.0, 0.0], [0.0, 1.0]])
    rows = nuslerp(0.25, x, y)
    assert torch.allclose(rows[0], T([1.5, 0.0]))
    assert torch.allclose(rows[1], T([math.sin(0.75 * math.pi / 2), math.sin(0.25 * math.pi / 2)]))
    with pytest.raises(LuminaryError, match="at most 2"):
        METHODS["nuslerp"].check_models(3, False, "models")


def test_multislerp_by_hand():
    a, b = T([2.0, 0.0]), T([0.0, 2.0])
    # equal weights: the mean direction (1, 1)/√2, tangent 0, scaled by the mean norm 2
    out = multislerp([a, b], [1.0, 1.0])
    assert torch.allclose(out, T([math.sqrt(2), math.sqrt(2)]), atol=1e-6)
    # antipodal with equal weights: the weighted sum (two models)
    assert torch.allclose(multislerp([a, -a], [1.0, 1.0]), T([0.0, 0.0]))
    with pytest.raises(LuminaryError, match="weights"):
        multislerp([a, -a, a - a], [1.0, 1.0, 0.0])


def test_karcher_by_hand():
    a, b = T([3.0, 0.0]), T([0.0, 1.0])
    # the Karcher mean of two directions is their bisector; norm (3 + 1)/2
    out = karcher_mean([a, b], [0.5, 0.5], max_iter=50, tol=1e-9)
    assert torch.allclose(out, 2 * T([1.0, 1.0]) / math.sqrt(2), atol=1e-5)
    assert METHODS["karcher"].base == "ignored"  # every model, and an unlisted base, is an input


def test_nearswap_by_hand():
    base, other = T([0.0, 0.0, 0.0]), T([0.005, 0.02, -0.5])
    # w = clamp(t/|Δ|, 0, 1) with t = 0.01: [1, 0.5, 0.02]
    out = run("nearswap", base, [other], t=0.01)
    assert torch.allclose(out, T([0.005, 0.01, -0.01]))
    with pytest.raises(LuminaryError, match="'t' is required"):
        METHODS["nearswap"].params[0].check(None, "x")


def test_sce_by_hand():
    base = torch.zeros(4)
    d1, d2 = T([1.0, -2.0, 0.0, 2.0]), T([3.0, 2.0, 1.0, -4.0])
    # η ∝ mean(δ²): 9/4 and 30/4 → 0.230769…, 0.769231…; signs by Σδ: [+, +, +, −]
    e1, e2 = 9 / 39, 30 / 39
    expected = T([(e1 * 1 + e2 * 3) / (e1 + e2), 2.0, 1.0, -4.0])
    assert torch.allclose(run("sce", base, [d1, d2]), expected)
    # select_topk 0.5: the two entries of largest variance across models (indices 3 and 1) remain
    assert torch.allclose(run("sce", base, [d1, d2], select_topk=0.5), T([0.0, 2.0, 0.0, -4.0]))


def test_breadcrumbs_by_hand():
    delta = T([0.1, -5.0, 0.3, 0.2, -0.4, 0.05, 0.6, -0.7, 0.8, 0.9])
    # n = 10, density 0.5 → 5 kept, gamma 0.1 → the largest (5.0) dropped, then the 4 smallest
    kept = magnitude_outliers(delta, 0.5, 0.1)
    assert torch.equal(kept != 0, T([0, 0, 0, 0, 1, 0, 1, 1, 1, 1]).bool())
    out = run("breadcrumbs", torch.zeros(10), [delta], [{"density": 0.5, "gamma": 0.1}])
    assert torch.equal(out, kept)
    # density 1 keeps everything, outliers included (mergekit's early return)
    assert torch.equal(magnitude_outliers(delta, 1.0, 0.1), delta)


def test_ram_by_hand():
    base = torch.zeros(3)
    d1, d2 = T([1.0, 2.0, 0.0]), T([3.0, 0.0, 0.0])
    # entry 0 shared by both → mean 2; entry 1 unique to model 1 → 2; entry 2 untouched
    assert torch.allclose(run("ram", base, [d1, d2]), T([2.0, 2.0, 0.0]))
    # RAM+: model 1 has 1 shared, 1 unique entry: ρ = 1 → λ = 1 + 0.1·min(1, 0.2) = 1.02
    assert torch.allclose(run("ramplus_tl", base, [d1, d2]), T([2.0, 2.04, 0.0]))


def test_arcee_fusion_keeps_only_the_outstanding_change():
    base = torch.zeros(1, 8)
    other = T([[0.01, 0.02, 0.0, 0.01, 0.02, 0.01, 0.0, 3.0]])
    out = run("arcee_fusion", base, [other])
    assert torch.equal(out, T([[0.0] * 7 + [3.0]]))


def test_della_probabilities_by_hand():
    delta = T([[0.3, -0.1, 0.2], [5.0, 1.0, -3.0]])
    p = della_probabilities(delta, 0.5, 0.2)
    # per row, ranks by |δ| 0, 1, 2 → p = 0.3, 0.5, 0.7
    assert torch.allclose(p, T([[0.7, 0.3, 0.5], [0.7, 0.3, 0.5]]))
    assert torch.allclose(della_probabilities(T([0.2, 0.1]), 0.5, 0.1), T([0.6, 0.4]))  # 1-d: one row
    with pytest.raises(LuminaryError, match="epsilon"):
        run("della", torch.zeros(3), [delta[0]], [{"density": 0.5, "epsilon": 0.5}])


def test_della_rank_order_is_torchs_stable_argsort():
    # the keyed numpy sort behind DELLA's ranks gives torch's stable order: ties (equal |δ|, zeros,
    # ±x) by column, on one thread and on row blocks; a second argsort's ranks give the same probabilities
    from luminary.merge.methods.sparsify import _stable_row_order

    x = torch.randn(37, 129, generator=torch.Generator().manual_seed(3))
    x[:, :20] = 0.25
    x[:, 20:40] = -0.25
    x[5] = 0
    x[7, ::2] = float("inf")
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            assert torch.equal(_stable_row_order(x.abs()), torch.argsort(x.abs(), dim=1, stable=True))
        finally:
            torch.set_num_threads(previous)
    ranks = torch.argsort(torch.argsort(x.abs(), dim=1, stable=True), dim=1).float()
    assert torch.equal(della_probabilities(x, 0.5, 0.2), (0.5 - 0.2) + ranks / 128 * (2 * 0.2))


def mergekit_della(delta: torch.Tensor, density: float, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """mergekit 0.1.5's ``della_magprune`` (ranks, probabilities, torch.bernoulli, L1 rescale), transcribed."""
    rows = delta.unsqueeze(0) if delta.dim() < 2 else delta
    ranks = torch.argsort(torch.argsort(rows.abs(), dim=1), dim=1).float() + 1
    lo, hi = ranks.min(dim=1, keepdim=True).values, ranks.max(dim=1, keepdim=True).values
    probs = (density - epsilon) + ((ranks - lo) / (hi - lo)).clamp(0, 1) * 2 * epsilon
    kept = rows * torch.bernoulli(probs, generator=generator)
    return (kept * (rows.abs().sum() / kept.abs().sum())).reshape(delta.shape)


@pytest.mark.parametrize("density, epsilon", [(0.3, 0.1), (0.7, 0.2)])
def test_della_matches_mergekit_in_distribution(density, epsilon):
    """Share of entries kept (overall and among the largest quarter) and L1 of the change, within 1 %."""
    delta = torch.randn(64, 2048, generator=torch.Generator().manual_seed(0))
    ours = della_magprune(delta, density, epsilon, torch.Generator().manual_seed(1), "l1")
    theirs = mergekit_della(delta, density, epsilon, torch.Generator().manual_seed(2))
    for x in (ours, theirs):
        assert abs((x != 0).float().mean().item() - density) < 0.01 * density
        assert math.isclose(x.abs().sum().item(), delta.abs().sum().item(), rel_tol=1e-4)
    large = delta.abs() >= delta.abs().quantile(0.75, dim=1, keepdim=True)
    share = lambda x: (x != 0)[large].float().mean().item()  # noqa: E731
    assert abs(share(ours) - share(theirs)) < 0.01
    change = lambda x: (x - delta).abs().sum().item()  # noqa: E731
    assert math.isclose(change(ours), change(theirs), rel_tol=0.01)
    assert torch.equal(ours, della_magprune(delta, density, epsilon, torch.Generator().manual_seed(1), "l1"))


def test_della_defaults_and_linear_variant():
    della, linear = METHODS["della"], METHODS["della_linear"]
    defaults = lambda m: {p.name: p.default for p in m.params}  # noqa: E731
    assert defaults(della)["epsilon"] == 0.15 and defaults(della)["normalize"] and defaults(della)["rescale"]
    assert not defaults(linear)["normalize"] and defaults(linear)["rescale"]
    assert defaults(METHODS["breadcrumbs"])["gamma"] == 0.01 and not defaults(METHODS["breadcrumbs"])["rescale"]
    base, ts = torch.randn(50), [torch.randn(50), torch.randn(50)]
    assert torch.equal(run("della_linear", base, ts), run("task_arithmetic", base, ts))  # density 1: nothing dropped


def test_quantiles_by_selection_equal_the_sort():
    """Arcee Fusion's quartiles by kthvalue are the sorted sample's entries at ⌊q·(n − 1)⌋, ties included;
    the merge leaves an input that is the base itself unharmed."""
    from luminary.merge.methods.arcee_fusion import ArceeFusion, quantiles

    q = torch.tensor([0.25, 0.5, 0.75])
    for n in (1, 2, 7, 1000, 4097):
        x = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(n)).float()  # many ties
        ordered = torch.sort(x).values
        assert torch.equal(quantiles(x, q, torch.Generator()), ordered[(q * (n - 1)).long()])
    base = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ArceeFusion().merge(base, [base], {}, {}, torch.Generator()), base)


def test_breadcrumbs_window_by_selection_equals_the_sorted_window():
    """The ranks bottom … bottom + target − 1 of |δ| found by kthvalue keep exactly the entries the sort
    keeps: continuous values, many zeros, and integer ties (where the sort's own order is used)."""
    from luminary.merge.methods.sparsify import magnitude_outliers

    def by_sort(delta, density, gamma=0.01):
        n = delta.numel()
        target, top = int(density * n), int(gamma * n)
        bottom = max(0, n - target - top)
        mask = torch.zeros(n, dtype=delta.dtype)
        mask[torch.sort(delta.abs().reshape(-1).float()).indices[bottom:bottom + target]] = 1
        return delta * mask.reshape(delta.shape)

    g = torch.Generator().manual_seed(0)
    for n in (10, 999, 20000):
        for delta in (torch.randn(n, generator=g), torch.randn(n, generator=g) * (torch.rand(n, generator=g) < 0.3),
                      torch.randint(-5, 6, (n,), generator=g).float()):
            for density in (0.1, 0.5, 0.9):
                assert torch.equal(magnitude_outliers(delta, density), by_sort(delta, density)), (n, density)


def test_tie_guess_picks_a_path_and_never_the_result(monkeypatch):
    """Breadcrumbs' and TIES' guess of ties (which skips the selections for the sort) is right on deltas on θ's rounding
    grid (bfloat16 models) and on continuous ones, and either way the window is the sort's."""
    from luminary.merge.methods import sparsify

    monkeypatch.setattr(sparsify, "TIE_MIN_ENTRIES", 1000)
    monkeypatch.setattr(sparsify, "TIE_SAMPLE_STRIDE", 4)
    g = torch.Generator().manual_seed(1)
    base = (torch.randn(200_000, generator=g) * 0.02).bfloat16()
    fine_tuned = (base.float() + torch.randn(200_000, generator=g) * 0.002).bfloat16()
    on_grid = fine_tuned.float() - base.float()  # θᵢ − θ_base of bfloat16 models
    assert sparsify._ties_likely(on_grid.abs(), (70_000, 190_000))
    continuous = torch.randn(200_000, generator=g, dtype=torch.float64)
    assert not sparsify._ties_likely(continuous.abs(), (70_000, 190_000))
    for delta in (on_grid, continuous, torch.randint(-5, 6, (5000,), generator=g).float()):
        n = delta.numel()
        for density, gamma in ((0.6, 0.05), (0.7, 0.01)):
            mask = torch.zeros(n, dtype=delta.dtype)
            bottom = max(0, n - int(density * n) - int(gamma * n))
            mask[torch.sort(delta.abs()).indices[bottom:bottom + int(density * n)]] = 1
            assert torch.equal(sparsify.magnitude_outliers(delta, density, gamma), delta * mask)
            top = torch.zeros(n, dtype=delta.dtype)  # TIES: the k largest, ties as a descending argsort
            top[torch.argsort(delta.abs(), descending=True)[:int(density * n)]] = 1
            assert torch.equal(sparsify.magnitude(delta, density), delta * top)


def test_nuslerp_with_freed_temporaries_equals_the_textbook_form():
    """The memory-lean NuSLERP gives bitwise the values of the formula written out, in both branches
    (collinear: linear), flattened or row-wise, and leaves an input that is the base itself unharmed."""
    from luminary.merge.methods.spherical import NuSlerp

    def textbook(t, v0, v1, eps=1e-8):
        u0, u1 = v0 / torch.norm(v0, dim=-1, keepdim=True).clamp(min=1e-7), v1 / torch.norm(v1, dim=-1, keepdim=True).clamp(min=1e-7)
        cos = (u0 * u1).sum(dim=-1, keepdim=True).clamp(-1, 1)
        collinear = (1 - cos.square()) <= eps**2
        theta = torch.acos(torch.where(collinear, torch.zeros_like(cos), cos))
        spherical = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / torch.sin(theta)
        return torch.where(collinear, (1 - t) * v0 + t * v1, spherical)

    g = torch.Generator().manual_seed(0)
    base = torch.randn(33, 17, generator=g)
    a, b = base + 0.01 * torch.randn(33, 17, generator=g), base + 0.01 * torch.randn(33, 17, generator=g)
    for other in (b, base + 2 * (a - base)):  # general, and collinear task vectors
        for flatten in (True, False):
            got = NuSlerp().merge(base.clone(), [a.clone(), other.clone()],
                                  {"nuslerp_row_wise": False, "nuslerp_flatten": flatten},
                                  [{"weight": 0.3}, {"weight": 0.7}], None)
            da, db = a - base, other - base
            want = base + (textbook(0.7, da.reshape(-1), db.reshape(-1)).reshape(da.shape) if flatten
                           else textbook(0.7, da, db))
            assert torch.equal(got, want), flatten
    kept = base.clone()
    NuSlerp().merge(base, [base, a.clone()], {"nuslerp_row_wise": False, "nuslerp_flatten": True},
                    [{"weight": 1.0}, {"weight": 1.0}], None)
    assert torch.equal(base, kept)


def test_sce_selection_by_kthvalue_equals_topk():
    """SCE's top-k variance mask by selection is topk's mask: continuous values, and ties across the
    boundary (where topk's order is used)."""
    from luminary.merge.methods.sce import _select

    def by_topk(variance, density):
        k = int(torch.count_nonzero(variance) * density)
        mask = torch.zeros_like(variance)
        if k:
            mask.view(-1)[torch.topk(variance.abs().view(-1), k=k, largest=True).indices] = 1
        return mask

    g = torch.Generator().manual_seed(0)
    for variance in (torch.rand(33, 17, generator=g), torch.rand(1000, generator=g) * (torch.rand(1000, generator=g) < 0.4),
                     torch.randint(0, 4, (500,), generator=g).float()):
        for density in (0.1, 0.5, 0.9, 1.0):
            assert torch.equal(_select(variance.clone(), density).to(variance.dtype), by_topk(variance, density)), density


@pytest.mark.parametrize("name", ["ties", "breadcrumbs", "breadcrumbs_ties"])
def test_sort_bound_methods_sparsify_side_by_side_to_the_same_tensor(name):
    """With two threads, TIES and Breadcrumbs sparsify the models at once (each sort on its own core);
    the result is the one-by-one result, ties at the boundaries included."""
    method = METHODS[name]
    g = torch.Generator().manual_seed(3)
    base = torch.randn(300, 200, generator=g)
    tensors = [base + torch.randint(-3, 4, (300, 200), generator=g).float() * 0.01 for _ in range(3)]
    shared = {p.name: p.default for p in method.params if p.scope == "shared"}
    models = [{p.name: p.default for p in method.params if p.scope == "model"} | {"density": d, "weight": w}
              for d, w in ((0.6, 1.0), (0.7, 0.5), (0.5, 0.8))]
    threads = torch.get_num_threads()
    try:
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            out[n] = method.merge(base.clone(), [t.clone() for t in tensors], shared, models, torch.Generator())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out[1], out[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_arcee_fusion_importance_in_two_buffers_is_the_formula_written_out(dtype):
    from luminary.merge.methods.arcee_fusion import importance

    g = torch.Generator().manual_seed(5)
    for shape in [(64, 96), (300,)]:
        base = torch.randn(shape, generator=g).to(dtype)
        other = (base.float() + 0.05 * torch.randn(shape, generator=g)).to(dtype)
        kept = other.clone(), base.clone()
        p, q = torch.softmax(other, dim=-1) + 1e-8, torch.softmax(base, dim=-1) + 1e-8
        want = (other - base).abs() * torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)
        assert torch.equal(importance(other, base), want)
        assert torch.equal(other, kept[0]) and torch.equal(base, kept[1])
