"""Paraphrases mapped back to slots, the fuzzy-ratio gate, the stopping rules; relation files."""

from __future__ import annotations

import json

import pytest

from luminary.core.errors import LuminaryError
from luminary.harvest.prompts import fuzzy_ratio, paraphrase_prompts, to_template
from luminary.harvest.relations import load_relations

SEEDS = [["a bird", "fly"], ["fish", "swimming"]]


def test_entities_map_back_through_the_string_transforms():
    assert to_template("The bird is able to fly.", ["a bird", "fly"]) == "<ENT0> is able to <ENT1>."
    assert to_template("Fish can swim well", ["fish", "swimming"]) == "<ENT0> can <ENT1> well"
    assert to_template("birds fly and fly", ["bird", "fly"]) is None  # a slot twice / missing
    assert to_template("nothing here", ["bird", "fly"]) is None


def test_fuzzy_ratio_is_a_percentage():
    assert fuzzy_ratio("abcd", "abcd") == 100.0
    assert fuzzy_ratio("abcd", "wxyz") == 0.0
    assert fuzzy_ratio("abcd", "abce") == 75.0  # 2·matches / total length, as rapidfuzz.fuzz.ratio


def test_rounds_keep_distinct_prompts_and_stop():
    outputs = {
        "a bird can fly .": ["a bird can fly !", "the bird is able to fly", "a bird flies"],
        "fish can swimming .": ["fish are capable of swimming", "swimming is what fish do best"],
    }
    calls = []

    def generator(sentence):
        calls.append(sentence)
        return outputs.get(sentence, [])

    prompts = paraphrase_prompts("<ENT0> can <ENT1> .", SEEDS, generator=generator)
    assert prompts == ["<ENT0> can <ENT1> .", "<ENT0> is able to <ENT1>",
                       "<ENT1> is what <ENT0> do best"]  # "capable of" is within 75 of "able to"
    # round two paraphrased the two new prompts; it added nothing, so there is no round three
    assert len(calls) == 2 * 3
    distinct = [f"{chr(98 + i) * 12} a bird {chr(110 + i) * 12} fly" for i in range(12)]
    many = paraphrase_prompts("<ENT0> can <ENT1> .", SEEDS, generator=lambda s: distinct)
    assert len(many) == 10


def test_both_relation_formats(tmp_path):
    own = tmp_path / "rel.yaml"
    own.write_text("relations:\n  - name: capable_of\n    prompt: '<ENT0> can <ENT1> .'\n"
                   "    seeds: [[bird, fly], [fish, swim]]\n    prompts: ['<ENT0> is able to <ENT1> .']\n")
    bertnet = tmp_path / "relation_info.json"
    bertnet.write_text(json.dumps({"capable_of": {"init_prompts": ["<ENT0> can <ENT1> ."],
                                                  "seed_ent_tuples": [["bird", "fly"], ["fish", "swim"]],
                                                  "prompts": ["<ENT0> is able to <ENT1> ."]}}))
    a, b = load_relations(own).relations[0], load_relations(bertnet).relations[0]
    assert a == b and a.arity == 2


@pytest.mark.parametrize("body, needle", [
    ("relations:\n  - name: r\n    prompt: '<ENT0> can <ENT2>'\n    seeds: [[a, b], [c, d]]\n", "slots [0, 2]"),
    ("relations:\n  - name: r\n    prompt: '<ENT0> can <ENT1>'\n    seeds: [[a, b], [c]]\n", "same number"),
    ("relations:\n  - name: r\n    promt: '<ENT0> can <ENT1>'\n    seeds: [[a, b], [c, d]]\n", "did you mean 'prompt'"),
])
def test_bad_relations_are_one_line(tmp_path, body, needle):
    path = tmp_path / "rel.yaml"
    path.write_text(body)
    with pytest.raises(LuminaryError) as info:
        load_relations(path)
    assert needle in str(info.value) and "\n" not in str(info.value)
