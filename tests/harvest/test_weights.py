"""Prompt weights: a prompt that separates the seeds from their corruptions outranks one that does not."""

from __future__ import annotations

import pytest

from luminary.harvest.scoring import LanguageModel
from luminary.harvest.run import weigh_prompts
from luminary.harvest.weights import negative_tuples, normalise, raw_weight
from tests.harvest.conftest import PairLM

SEEDS = [["alpha", "bravo"], ["charlie", "delta"], ["echo", "foxtrot"]]


def test_negatives_swap_one_slot_and_are_twice_the_positives():
    negatives = negative_tuples(SEEDS)
    assert len(negatives) == 2 * len(SEEDS)
    for fake, seed in zip(negatives, [s for s in SEEDS for _ in range(2)]):
        assert fake not in SEEDS
        assert sum(a != b for a, b in zip(fake, seed)) == 1
        slot = next(i for i in range(2) if fake[i] != seed[i])
        assert fake[slot] in [s[slot] for s in SEEDS]


def test_raw_weight_and_normalise_by_hand():
    assert raw_weight([-1.0, -3.0], [-4.0, -6.0]) == pytest.approx((-2.0 + 2.5) / 2)
    weights = normalise({"a": 2.0, "b": 1.0, "c": -3.0})
    assert list(weights) == ["a", "b"]  # c's softmax weight 0.013 < 0.05 is dropped
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["a"] / weights["b"] == pytest.approx(2.718281828, rel=1e-6)
    many = normalise({str(i): 0.0 for i in range(30)})  # top 20, each 1/20 = 0.05: kept
    assert len(many) == 20


def test_a_separating_prompt_ranks_first(words_tokenizer):
    lm = LanguageModel(PairLM(words_tokenizer, SEEDS), words_tokenizer, "masked")
    prompts = ["<ENT0> ignores <ENT1> .", "<ENT0> knows <ENT1> ."]
    raw, weights = weigh_prompts(lm, prompts, SEEDS)
    assert raw["<ENT0> knows <ENT1> ."] > raw["<ENT0> ignores <ENT1> ."]
    assert list(weights)[0] == "<ENT0> knows <ENT1> ."
