"""Classify, rerank and best-of-n pick what the scores say."""

import pytest

from luminary.core.errors import LuminaryError
from luminary.scorer import Generator, Scorer, best_of_n, cappy_plan, classify, rerank, score_pairs
from luminary.scorer.inference import ranking, score_groups
from luminary.scorer.metrics import auc, choice_accuracy

CHOICES = ["yes", "no", "maybe so", "it returns None when the list is empty"]


def test_classify_and_rerank_follow_the_scores(cappy_dir):
    scorer = Scorer.from_pretrained(cappy_dir)
    instruction = "Does this function return a value?\n\ndef f(x):\n    return x * 2"
    scores = score_pairs(scorer, [instruction] * len(CHOICES), CHOICES)
    order = sorted(range(len(CHOICES)), key=lambda i: -scores[i])
    ranked = rerank(scorer, instruction, CHOICES)
    assert [r["index"] for r in ranked] == order
    assert [r["text"] for r in ranked] == [CHOICES[i] for i in order]
    assert [r["score"] for r in ranked] == pytest.approx([scores[i] for i in order], abs=1e-6)
    assert classify(scorer, instruction, CHOICES) == order[0]


def test_ranking_keeps_input_order_among_ties():
    assert [r["index"] for r in ranking(["a", "b", "c"], [0.5, 0.9, 0.5])] == [1, 0, 2]


def test_groups_are_scored_like_single_pairs(cappy_dir):
    scorer = Scorer.from_pretrained(cappy_dir)
    groups = score_groups(scorer, ["q1", "q2 is longer than q1 by far"], [CHOICES[:3], CHOICES[1:]], batch_size=2)
    assert groups[0] == pytest.approx(score_pairs(scorer, ["q1"] * 3, CHOICES[:3]), abs=1e-5)
    assert groups[1] == pytest.approx(score_pairs(scorer, ["q2 is longer than q1 by far"] * 3, CHOICES[1:]), abs=1e-5)


def test_an_empty_candidate_list_is_an_error(cappy_dir):
    scorer = Scorer.from_pretrained(cappy_dir)
    with pytest.raises(LuminaryError, match="candidate list is empty"):
        rerank(scorer, "q", [])


def test_best_of_n_picks_the_highest_scored_of_the_plans_candidates(cappy_dir, llama_dir):
    scorer = Scorer.from_pretrained(cappy_dir)
    gen = Generator.from_pretrained(llama_dir, max_new_tokens=6)
    pick = best_of_n(scorer, gen, "def add(a, b):", seed=2)
    cands = pick["candidates"]
    assert len(cands) == 17
    rescored = score_pairs(scorer, ["def add(a, b):"] * 17, [c["text"] for c in cands])
    assert [c["score"] for c in cands] == pytest.approx(rescored, abs=1e-5)
    best = max(range(17), key=lambda i: (rescored[i], -i))
    assert pick["best"] == cands[best]["text"] and pick["decoding"] == cands[best]["decoding"]
    assert len(best_of_n(scorer, gen, "def add(a, b):", n=5)["candidates"]) == 5
    assert [c["decoding"] for c in best_of_n(scorer, gen, "x", plan=cappy_plan(2))["candidates"]] == ["beam4", "sampling"]


def test_auc_against_brute_force():
    import itertools
    import random

    rng = random.Random(0)
    pos = [rng.choice([0.1, 0.2, 0.5, 0.9]) for _ in range(13)]
    neg = [rng.choice([0.0, 0.2, 0.5, 0.7]) for _ in range(9)]
    brute = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)) / (13 * 9)
    assert auc(pos, neg) == pytest.approx(brute)
    assert auc([1, 2], [0]) == 1.0 and auc([0], [1, 2]) == 0.0
    assert choice_accuracy([[0.9, 0.1], [0.2, 0.3], [0.5, 0.5]], [0, 0, 0]) == pytest.approx(2 / 3)


def test_held_out_ranking_metrics(cappy_dir):
    from luminary.scorer.evaluate import evaluate_ranking, ranking_choices

    rows = [{"task": "t", "instruction": f"q{i}", "references": [f"r{i}", f"s{i}"]} for i in range(6)]
    rows.append({"task": "u", "instruction": "lonely", "references": ["only"]})
    with pytest.raises(LuminaryError, match="no other reference"):
        ranking_choices(rows, 2)
    rows = rows[:6]
    choices = ranking_choices(rows, 2, seed=0)
    for row, group in zip(rows, choices):
        assert group[0] == row["references"][0] and len(group) == 3
        assert not set(group[1:]) & set(row["references"])  # negatives are other rows' references
    scorer = Scorer.from_pretrained(cappy_dir)
    report = evaluate_ranking(scorer, rows, n_negatives=2, seed=0)
    scores = score_groups(scorer, [r["instruction"] for r in rows], choices)
    assert report["auc"] == pytest.approx(auc([g[0] for g in scores], [s for g in scores for s in g[1:]]))
    per_row = [sum(1.0 if g[0] > s else 0.5 if g[0] == s else 0.0 for s in g[1:]) / 2 for g in scores]
    assert report["instruction_auc"] == pytest.approx(sum(per_row) / len(per_row))
    assert report["choice_accuracy"] == pytest.approx(choice_accuracy(scores, [0] * len(scores)))
