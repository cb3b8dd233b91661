from __future__ import annotations

import json
import math

import pytest

from luminary.core.errors import LuminaryError
from luminary.summarize.aspects import noun_phrases
from luminary.summarize.data import build_data, format_source, is_heldout
from tests.summarize.conftest import PAIRS
from luminary.summarize.knowledge import Neighbour
from luminary.summarize.weak import (
    TfIdf, aspect_sentences, knowledge_words, mentions, sample_neighbour, split_sentences,
)


def test_sentences_and_whole_word_mentions():
    assert split_sentences("A dog ran. The cat sat! Why? 3 birds.\n\nNew part") == [
        "A dog ran.", "The cat sat!", "Why?", "3 birds.", "New part"]
    assert mentions("The Cat sat.", "cat") and not mentions("A category.", "cat")
    assert mentions("in New  York today", "new york")


def test_neighbour_drawn_in_proportion_to_weight_never_an_aspect():
    pool = [Neighbour("a", "IsA", 3.0), Neighbour("b", "IsA", 1.0), Neighbour("c", "IsA", 9.0),
            Neighbour("d", "IsA", math.inf)]
    draws = [sample_neighbour(pool, {"c"}, seed).term for seed in range(4000)]
    assert set(draws) == {"a", "b"}  # c is already an aspect, d has no finite weight
    assert abs(draws.count("a") / len(draws) - 0.75) < 0.03
    assert sample_neighbour(pool[:1], {"a"}, 0) is None


def test_tfidf_is_sklearns_formula_by_hand():
    docs = ["apple apple banana", "banana cherry"]
    ranked = TfIdf(docs).ranked(0)
    # idf = ln((1 + 2) / (1 + df)) + 1: apple df 1, banana df 2; tf 2 and 1
    apple, banana = 2 * (math.log(3 / 2) + 1), 1 * (math.log(3 / 3) + 1)
    assert apple > banana and ranked == ["apple", "banana"]
    assert knowledge_words(["zebra", "banana", "apple"], "Apple and banana are fruit.", k=1) == ["banana"]


def test_aspect_summary_sentences_with_reasoning():
    sentences = ["A dog ran.", "The animal slept.", "Rain fell."]
    hits = aspect_sentences(sentences, "dog", [Neighbour("animal", "IsA", 1.0)])
    assert hits == [(0, "dog"), (1, "animal")]


def test_tagger_free_noun_phrases():
    nouns = {"dog", "garden", "city", "council", "chased"}
    assert noun_phrases("The dog chased in the city council garden.", lambda w: w.lower() in nouns,
                        knows=lambda p: p == "city council") == ["chased", "garden"]
    assert noun_phrases("A city council met.", lambda w: w.lower() in nouns,
                        knows=lambda p: p == "city council") == ["city council"]


def test_source_format():
    assert format_source("dog", ["bark", "pet"], "Doc.") == "dog : bark pet\n\nDoc."
    assert format_source("dog", ["bark"], "Doc.", aspect_blind=True) == "Doc."


def test_build_data_same_input_same_bytes(pairs_file, conceptnet_json, tmp_path):
    stats = build_data(pairs_file, tmp_path / "a", str(conceptnet_json), extractor="rule", seed=3)
    build_data(pairs_file, tmp_path / "b", str(conceptnet_json), extractor="rule", seed=3)
    for name in ("train.jsonl", "heldout.jsonl", "stats.json", "MANIFEST.sha256"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    dog = by_id["1:dog"]
    assert dog["summary"] == "A dog chased a cat. Every animal was safe."  # "animal": a neighbour of dog
    assert dog["reasoning"] == [{"sentence": 0, "matched": "dog"}, {"sentence": 2, "matched": "animal"}]
    assert by_id["3:tree"]["summary"] == "A tree fell on a house. A branch broke the roof."
    assert by_id["3:tree"]["knowledge_words"] == ["tree"]  # the only document word in "tree IsA plant tree HasA branch"
    neighbours = [r for r in rows if r["origin"] == "neighbour"]
    assert neighbours and all(r["via"] for r in neighbours)
    assert stats["documents"] == 3 and stats["aspect_summaries"] == len(rows)
    assert stats["aspects_per_document"] == round(len(rows) / 3, 4)


def test_missing_field_names_the_line(tmp_path, conceptnet_json):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"document": "d", "summary": "s"}\n{"document": "d"}\n')
    with pytest.raises(LuminaryError, match="line 2: missing field 'summary'"):
        build_data(bad, tmp_path / "out", str(conceptnet_json))
    assert not (tmp_path / "out").exists()


def test_documents_of_one_group_stay_on_one_side_of_the_heldout_split(tmp_path, conceptnet_json):
    # six cuts of each of two sources: split by document they would land on both sides
    pairs = [{**PAIRS[i % 3], "id": f"{g}#{i}", "group": g} for g in ("a", "b") for i in range(6)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    assert len({is_heldout(p["id"], 0.5, 0) for p in pairs}) == 2
    seed = next(s for s in range(50) if is_heldout("a", 0.5, s) != is_heldout("b", 0.5, s))
    build_data(path, tmp_path / "out", str(conceptnet_json), extractor="rule", heldout=0.5, seed=seed)
    sides = {}
    for name in ("train", "heldout"):
        for line in (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert row["doc_id"].startswith(row["group"] + "#")
            sides.setdefault(row["group"], set()).add(name)
    assert sides == {"a": {"train"}, "b": {"heldout"}} or sides == {"a": {"heldout"}, "b": {"train"}}
    path.write_text(json.dumps({**pairs[0], "group": 3}) + "\n")
    with pytest.raises(LuminaryError, match="record 1: 'group' must be a string"):
        build_data(path, tmp_path / "bad", str(conceptnet_json))
