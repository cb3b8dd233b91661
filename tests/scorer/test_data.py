"""Building scorer data as Cappy does: gold 1, same-task negatives 0, generations their ROUGE-L."""

import random

import pytest

from luminary.core.errors import LuminaryError
from luminary.scorer.data import RougeL, build_scorer_data, gold_and_negatives, labelled_generations, resize
from luminary.scorer.generator import Generator, cappy_plan, plan_size

ROWS = [
    {"task": "a", "instruction": "i1", "references": ["x", "y"]},
    {"task": "a", "instruction": "i2", "references": ["z"]},
    {"task": "a", "instruction": "i3", "references": ["x"]},
    {"task": "b", "instruction": "j1", "references": ["p"]},
    {"task": "b", "instruction": "j2", "references": ["q", "r"]},
]


def test_rouge_l_is_the_lcs_f_measure_best_over_references():
    rouge = RougeL()
    # LCS("the cat sat", "the cat sat on the mat") = 3: P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3
    assert rouge("the cat sat", ["the cat sat on the mat"]) == pytest.approx(2 / 3)
    # best over references
    assert rouge("the cat sat", ["a dog", "the cat sat on the mat"]) == pytest.approx(2 / 3)
    # Porter stemming: cats/cat, running/run
    assert rouge("cats running", ["cat run"]) == pytest.approx(1.0)
    assert rouge("nothing shared", ["the cat"]) == 0.0


def test_gold_and_negatives_follow_the_recipe():
    seen: set = set()
    examples = gold_and_negatives(ROWS, random.Random(0), seen)
    gold = [e for e in examples if e["source"] == "gold"]
    negatives = [e for e in examples if e["source"] == "negative"]
    assert {(e["instruction"], e["response"]) for e in gold} == {
        ("i1", "x"), ("i1", "y"), ("i2", "z"), ("i3", "x"), ("j1", "p"), ("j2", "q"), ("j2", "r")}
    assert all(e["label"] == 1.0 for e in gold) and all(e["label"] == 0.0 for e in negatives)
    refs = {r["instruction"]: set(r["references"]) for r in ROWS}
    task_refs = {"a": {"x", "y", "z"}, "b": {"p", "q", "r"}}
    for e in negatives:
        assert e["response"] in task_refs[e["task"]]  # drawn from the same task
        assert e["response"] not in refs[e["instruction"]]  # never one of the row's own references
    assert len(negatives) <= len(gold)  # at most one draw per positive; hits on own references are skipped
    assert len({(e["instruction"], e["response"]) for e in examples}) == len(examples)


def test_generations_are_labelled_with_rouge_and_never_duplicate_a_pair():
    seen = {("i1", "x")}
    cands = [[{"text": "x", "decoding": "beam4"}, {"text": "the cat", "decoding": "sampling"},
              {"text": "the cat", "decoding": "topk40"}]]
    out = labelled_generations([{"instruction": "i1", "references": ["the cat sat"]}], cands, seen)
    assert [(e["response"], e["source"]) for e in out] == [("the cat", "sampling")]  # gold pair kept its 1.0
    assert out[0]["label"] == pytest.approx(RougeL()("the cat", ["the cat sat"]))


def test_resize_repeats_whole_copies_then_cuts():
    items = [{"k": i} for i in range(5)]
    out = resize(items, 12, random.Random(0))
    assert len(out) == 12 and out[:5] == out[5:10] and out[10:] == out[:2]
    assert sorted(e["k"] for e in out[:5]) == list(range(5))
    assert resize(items, 3, random.Random(0)) == out[:3]
    assert resize(items, 3, random.Random(0)) == resize(items, 3, random.Random(0))


def test_build_with_a_causal_generator(llama_dir):
    gen = Generator.from_pretrained(llama_dir, max_new_tokens=6)
    plan = cappy_plan(5)
    rows = ROWS[:3]
    examples = build_scorer_data(rows, gen, plan, seed=1)
    generated = [e for e in examples if e["source"] not in ("gold", "negative")]
    assert 0 < len(generated) <= plan_size(plan) * len(rows)
    rouge = RougeL()
    refs = {r["instruction"]: r["references"] for r in rows}
    for e in generated:
        assert e["label"] == pytest.approx(rouge(e["response"], refs[e["instruction"]]))
    assert examples == build_scorer_data(rows, gen, plan, seed=1)  # a pure function of the seed


def test_build_with_a_seq2seq_generator(t5_dir):
    gen = Generator.from_pretrained(t5_dir, max_new_tokens=5)
    assert gen.is_encoder_decoder
    examples = build_scorer_data(ROWS[3:], gen, cappy_plan(3), size=40, seed=0)
    assert len(examples) == 40
    assert {e["source"] for e in examples} >= {"gold", "beam4"}


def test_rows_without_references_are_refused():
    with pytest.raises(LuminaryError, match="row 2: 'references' must be a non-empty list"):
        build_scorer_data([ROWS[0], {"instruction": "x", "references": []}])
