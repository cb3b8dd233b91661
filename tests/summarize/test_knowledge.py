from __future__ import annotations

import pytest

from luminary.core.errors import LuminaryError
from luminary.summarize.knowledge import (
    WORDNET_ROOT, ConceptNetKnowledge, Neighbour, check_wordnet, concept_term, open_knowledge,
)


def test_conceptnet_keeps_english_allowed_finite_edges_both_ways(conceptnet_json):
    kb = ConceptNetKnowledge(conceptnet_json)
    assert kb.neighbours("dog") == [Neighbour("bark", "CapableOf", 3.0), Neighbour("animal", "IsA", 2.0),
                                    Neighbour("hound", "Synonym", 1.0)]
    assert [n.term for n in kb.neighbours("animal")] == ["cat", "dog"]  # edges are undirected
    assert not kb.has("chien") and not kb.has("leash") and not kb.has("wolf") and not kb.has("film")
    assert "dog IsA animal" in kb.description("dog")


def test_the_streamed_csv_reads_as_the_json(conceptnet_json, conceptnet_csv):
    a, b = ConceptNetKnowledge(conceptnet_json), ConceptNetKnowledge(conceptnet_csv)
    for term in ("dog", "cat", "tree", "animal", "budget"):
        assert a.neighbours(term) == b.neighbours(term)


def test_terms_limit_what_is_held(conceptnet_csv):
    kb = ConceptNetKnowledge(conceptnet_csv, terms={"tree"})
    assert kb.has("tree") and not kb.has("dog")
    assert [n.term for n in kb.neighbours("tree")] == ["plant", "branch"]


def test_concept_uris():
    assert concept_term("/c/en/ice_cream/n") == "ice cream"
    assert concept_term("/c/de/hund") is None


def test_bad_knowledge_is_one_line(tmp_path):
    with pytest.raises(LuminaryError, match="apt-get install wordnet-base"):
        check_wordnet(tmp_path)
    with pytest.raises(LuminaryError, match="not 'wordnet'"):
        open_knowledge("freebase")
    bad = tmp_path / "bad.csv"
    bad.write_text("only\ttwo\n")
    with pytest.raises(LuminaryError, match="line 1"):
        ConceptNetKnowledge(bad)


@pytest.mark.skipif(not (WORDNET_ROOT / "data.noun").is_file(), reason="needs apt-get install wordnet-base")
def test_wordnet_neighbours_weights_and_glosses():
    kb = open_knowledge("wordnet")
    by_term = {n.term: n for n in kb.neighbours("dog")}
    # sense 1 of dog: its synonyms {domestic dog, canis familiaris} share W_syn / (1 · 2);
    # its hypernyms' lemmas {canine, canid, domestic animal, ...} share W_IsA = 0.8
    assert by_term["domestic dog"] == Neighbour("domestic dog", "Synonym", 0.5)
    assert by_term["canine"].relation == "IsA"
    assert by_term["puppy"].relation == "Hyponym"
    assert "Canis" in kb.description("dog")
    assert kb.is_noun("dogs") and not kb.is_noun("chased") and not kb.has("xyzzyq")
