"""The mixture is exact: proportions at every prefix, phase switches, epochs, ranks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luminary.data.mixture import Mixture, Phase, SourceSamples, tijdeman_blend
from luminary.data.shards import Shard
from luminary.train import Deployer


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=10).filter(lambda w: sum(w) > 1e-3),
       st.integers(1, 400))
def test_realised_counts_stay_within_one_sample_at_every_prefix(weights, n):
    w = np.asarray(weights) / sum(weights)
    w[w < 1e-9] = 0.0  # hypothesis' subnormal weights are zeros
    assign, draw = tijdeman_blend(w, n)
    counts = np.zeros(len(w))
    for t, d in enumerate(assign, 1):
        assert w[d] > 0
        assert draw[t - 1] == counts[d]
        counts[d] += 1
        assert np.all(np.abs(counts - w / w.sum() * t) < 1.0)


def fake_shard(name, n_tokens, offset):
    tokens = (np.arange(n_tokens) + offset).astype(np.uint32)
    return Shard(name, tokens, np.array([0, n_tokens]), {"n_tokens": n_tokens, "name": name})


def make_mixture(phases, seq_len=4, global_batch=4, n_val=2, sizes=(401, 101)):
    sources = [SourceSamples(fake_shard(n, size, 10**6 * i), seq_len, n_val, seed=3)
               for i, (n, size) in enumerate(zip(["a", "b"], sizes))]
    return Mixture(sources, phases, global_batch, seed=3)


def test_phase_switch_is_exact():
    m = make_mixture([Phase("only_a", 0, 5, (1.0, 0.0)), Phase("only_b", 5, 3, (0.0, 1.0))])
    sources = [m.sample(i)["source"] for i in range(m.total_samples)]
    assert sources[: 5 * 4] == ["a"] * 20 and sources[20:] == ["b"] * 12
    assert m.phase_of_step(4) == 0 and m.phase_of_step(5) == 1


def test_each_epoch_is_a_fresh_permutation_of_every_window():
    m = make_mixture([Phase("b", 0, 20, (0.0, 1.0))], sizes=(401, 61))
    n = m.sources[1].n_train  # (61 - 1) // 4 - 2 validation = 13 windows
    locs = [m.locate(i) for i in range(3 * n)]
    for epoch in range(3):
        windows = [loc.window for loc in locs if loc.epoch == epoch]
        assert sorted(windows) == sorted(m.sources[1].train_windows.tolist())
    assert [loc.window for loc in locs[:n]] != [loc.window for loc in locs[n : 2 * n]]
    held = set(m.sources[1].validation_windows.tolist())
    assert held and not held & {loc.window for loc in locs}


def test_batches_are_a_pure_function_of_the_step():
    phases = [Phase("p1", 0, 6, (0.7, 0.3)), Phase("p2", 6, 6, (0.2, 0.8))]
    a = make_mixture(phases)
    later = [a.batch(s) for s in range(12)]
    fresh = make_mixture(phases)  # a resumed run: nothing replayed
    for step in (9, 3, 11):
        assert all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(fresh.batch(step), later[step]))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_the_same_global_batch_for_any_number_of_ranks(world):
    m = make_mixture([Phase("p", 0, 4, (0.5, 0.5))], global_batch=8)
    deployer = Deployer(seed=0)
    for step in range(4):
        gathered = []
        for rank in range(world):
            deployer.world_size, deployer.rank = world, rank
            lo, hi = deployer.rank_slice(m.global_batch)
            gathered += m.samples(step * 8 + lo, step * 8 + hi)
        assert [g["input_ids"].tolist() for g in gathered] == [e["input_ids"].tolist() for e in m.batch(step)]


def test_samples_are_windows_of_the_stream():
    m = make_mixture([Phase("a", 0, 2, (1.0, 0.0))])
    loc = m.locate(5)
    sample = m.sample(5)["input_ids"]
    assert sample.tolist() == list(range(loc.window * 4, loc.window * 4 + 5))


def megatron_from_its_definition(weights, n):
    """Megatron's build_blending_indices, written from its definition: sample j goes to
    argmax_d (w_d · max(j, 1) − c_d) over the normalised weights, the lowest d on a tie."""
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    counts = np.zeros(len(w), dtype=np.int64)
    out = []
    for j in range(n):
        d = int(np.argmax(w * max(j, 1.0) - counts))  # argmax: the first of equal maxima
        out.append(d)
        counts[d] += 1
    return out


def test_megatron_blend_equals_its_definition_and_a_hand_computation():
    from luminary.data.mixture import blend_drift, megatron_blend

    assert megatron_blend([0.5, 0.5], 4)[0].tolist() == [0, 1, 0, 1]
    # j=0: .2, .8 -> 1; j=1 (t=1): .2, -.2 -> 0; j=2: -.6, .6 -> 1; j=3, 4: 1; j=5: 0 = 0, a tie -> 0
    assign, draw = megatron_blend([0.2, 0.8], 6)
    assert assign.tolist() == [1, 0, 1, 1, 1, 0] and draw.tolist() == [0, 0, 1, 2, 3, 1]
    rng = np.random.default_rng(0)
    drifts = []
    for k in (2, 3, 7, 11):
        for _ in range(3):
            w = rng.dirichlet(np.full(k, 0.5))
            assign, _ = megatron_blend(w, 3000)
            assert assign.tolist() == megatron_from_its_definition(w, 3000)
            drifts.append((blend_drift(w, tijdeman_blend(w, 3000)[0]), blend_drift(w, assign)))
    assert all(t < 1 for t, _ in drifts) and max(m for _, m in drifts) > 1  # Tijdeman's bound; Megatron strays


def test_a_recipe_chooses_the_blend(tmp_path):
    from luminary.data.mixture import megatron_blend

    phases = [Phase("p", 0, 25, (0.83, 0.17))]
    sources = [SourceSamples(fake_shard(n, 401, 10**6 * i), 4, 2, seed=3) for i, n in enumerate("ab")]
    ours = Mixture(sources, phases, 4, seed=3)
    megatron = Mixture(sources, phases, 4, seed=3, blend="megatron")
    expected = megatron_blend([0.83, 0.17], 100)[0]
    assert [megatron.locate(i).source for i in range(100)] == expected.tolist()
    assert [ours.locate(i).source for i in range(100)] != expected.tolist()
    with pytest.raises(ValueError, match="blend must be one of"):
        Mixture(sources, phases, 4, seed=3, blend="greedy")
