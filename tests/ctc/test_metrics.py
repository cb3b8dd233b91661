"""Each CTC formula against a hand computation, with a stub aligner of known token scores."""

from __future__ import annotations

import pytest

from luminary.core.errors import LuminaryError
from luminary.ctc import DialogScorer, FactualConsistencyScorer, StyleTransferScorer, SummarizationScorer, metrics
from luminary.ctc.aligners import Alignment

DOC, HYPO, R1, R2 = "the doc", "the hypo", "ref one", "ref two"
FACT, HISTORY = "  Paris is in France. ", " Where is Paris? "
TABLE = {
    (HYPO, DOC): [("The", 0.9), ("cat", 0.5), ("sat", 0.1)],
    (R1, HYPO): [("a", 0.2), ("cat", 0.8)],
    (R2, HYPO): [("dogs", 0.3), ("bark", 0.5), ("loudly", 0.1)],
    (DOC, HYPO): [("x", 0.6), ("y", 0.2)],
    (HYPO, FACT): [("i", 0.2), ("love", 0.7), ("paris", 0.9), ("the", 0.4)],
    (HYPO, "Paris is in France.\n\n\nWhere is Paris?"): [("we", 0.5), ("visit", 0.25), ("there", 1.0), ("soon", 0.75)],
}


@pytest.fixture
def stub(make_stub):
    return make_stub(TABLE)


def test_consistency_is_the_mean_over_hypothesis_tokens(stub):
    assert metrics.consistency(stub, [DOC], [HYPO]) == pytest.approx([(0.9 + 0.5 + 0.1) / 3])
    # "The" is an English stopword
    assert metrics.consistency(stub, [DOC], [HYPO], remove_stopwords=True) == pytest.approx([(0.5 + 0.1) / 2])


def test_relevance_multiplies_by_the_mean_over_references(stub):
    y_x = (0.9 + 0.5 + 0.1) / 3
    r1, r2 = (0.2 + 0.8) / 2, (0.3 + 0.5 + 0.1) / 3
    assert metrics.relevance(stub, [DOC, DOC], [[R1, R2], [R2]], [HYPO, HYPO]) == pytest.approx(
        [y_x * (r1 + r2) / 2, y_x * r2])
    # both directions of both examples in one aligner call (one batch)
    assert len(stub.calls) == 1 and len(stub.calls[0][0]) == 2 + 3


def test_relevance_refuses_no_reference(stub):
    with pytest.raises(LuminaryError, match="at least one reference"):
        metrics.relevance(stub, [DOC], [[]], [HYPO])


def test_preservation_is_the_harmonic_mean_of_both_directions(stub):
    a, b = (0.6 + 0.2) / 2, (0.9 + 0.5 + 0.1) / 3  # a = align(x -> y), b = align(y -> x)
    assert metrics.preservation(stub, [DOC], [HYPO]) == pytest.approx([2 * a * b / (a + b)])
    assert metrics.harmonic(0.0, 0.0) == 0.0


def test_groundedness_sums_over_tokens_without_stopwords(stub):
    assert metrics.groundedness(stub, [FACT], [HYPO]) == pytest.approx([0.7 + 0.9])  # "i" and "the" dropped
    assert metrics.groundedness(stub, [FACT], [HYPO], remove_stopwords=False) == pytest.approx([0.2 + 0.7 + 0.9 + 0.4])


def test_engagingness_aligns_to_fact_then_three_newlines_then_history(stub):
    # "we" and "there" are stopwords in scikit-learn's list
    assert metrics.engagingness(stub, [FACT], [HISTORY], [HYPO]) == pytest.approx([0.25 + 0.75])
    assert metrics.engagingness(stub, [FACT], [HISTORY], [HYPO], remove_stopwords=False) == pytest.approx([2.5])


def test_factual_consistency_is_the_mean_against_the_grounding(stub):
    assert metrics.factual_consistency(stub, [DOC], [HYPO]) == pytest.approx([0.5])


def test_aggregation_edge_cases():
    assert Alignment([], []).aggregate("mean") == 0.0
    assert Alignment(["the", "a"], [0.3, 0.4]).aggregate("mean", remove_stopwords=True) == 0.0
    weighted = Alignment(["x", "y"], [1.0, 0.0], weights=[3.0, 1.0])
    assert weighted.aggregate("mean") == pytest.approx(0.75)
    assert weighted.aggregate("sum") == pytest.approx(3.0)
    assert Alignment(None, [0.42]).aggregate("sum", remove_stopwords=True) == 0.42  # R: one score


def test_scorers_route_to_the_formulas_with_ctc_score_defaults(stub):
    summ = SummarizationScorer(stub)
    assert summ.score(doc=DOC, refs=[R1], hypo=HYPO, aspect="consistency") == pytest.approx(0.5)
    assert summ.score(doc=DOC, refs=[R1], hypo=HYPO, aspect="relevance") == pytest.approx(0.5 * 0.5)
    dialog = DialogScorer(stub)  # sum, stopwords removed
    assert dialog.score(fact=FACT, dialog_history=None, hypo=HYPO, aspect="groundedness") == pytest.approx(1.6)
    assert DialogScorer(stub, aggr_type="mean").score(FACT, None, HYPO, "groundedness") == pytest.approx(0.8)
    a, b = 0.4, 0.5
    assert StyleTransferScorer(stub).score(input_sent=DOC, hypo=HYPO) == pytest.approx(2 * a * b / (a + b))
    assert FactualConsistencyScorer(stub).score(grounding=DOC, hypo=HYPO) == pytest.approx(0.5)


def test_scorers_refuse_bad_requests(stub):
    summ = SummarizationScorer(stub)
    with pytest.raises(LuminaryError, match="unknown aspect 'fluency'"):
        summ.score(doc=DOC, refs=[R1], hypo=HYPO, aspect="fluency")
    with pytest.raises(LuminaryError, match="relevance needs references"):
        summ.score(doc=DOC, refs=None, hypo=HYPO, aspect="relevance")
    with pytest.raises(LuminaryError, match="hypo of example 2 is empty"):
        summ.score_batch([DOC, DOC], None, [HYPO, "  "], aspect="consistency")
    with pytest.raises(LuminaryError, match="unknown aligner 'Q'"):
        SummarizationScorer("Q")
    with pytest.raises(LuminaryError, match="needs a trained model folder"):
        SummarizationScorer("D")


def test_the_stopword_list_is_nltks_english_list_by_default():
    from luminary.ctc.aligners.stopwords import NLTK_ENGLISH, STOPWORD_LISTS, english_stopwords

    nltk = english_stopwords()
    assert len(NLTK_ENGLISH) == len(nltk) == 179
    assert {"i", "me", "myself", "you're", "you'd", "should've", "ain", "ma", "wouldn't", "mightn't"} <= nltk
    assert NLTK_ENGLISH[:4] == ["i", "me", "my", "myself"] and NLTK_ENGLISH[-1] == "wouldn't"
    assert {"also", "cannot", "thus", "everything"}.isdisjoint(nltk)  # scikit-learn's, not NLTK's
    sklearn = english_stopwords("sklearn")
    assert len(sklearn) == 318 and {"also", "cannot"} <= sklearn and "ain" not in sklearn
    assert set(STOPWORD_LISTS) == {"nltk", "sklearn"}
    with pytest.raises(LuminaryError, match="unknown stopword list 'spacy'"):
        english_stopwords("spacy")


def test_dialog_drops_nltks_stopwords_by_default_and_sklearns_on_request(make_stub):
    hypo, fact = "i also cannot ain tea", "a fact"
    stub = make_stub({(hypo, fact): [("i", 0.1), ("also", 0.2), ("cannot", 0.4), ("ain", 0.8), ("tea", 1.6)]})
    assert DialogScorer(stub).score(fact, None, hypo, "groundedness") == pytest.approx(0.2 + 0.4 + 1.6)
    assert DialogScorer(stub, stopwords="sklearn").score(fact, None, hypo, "groundedness") == pytest.approx(0.8 + 1.6)
    assert metrics.groundedness(stub, [fact], [hypo], stopwords="sklearn") == pytest.approx([0.8 + 1.6])
    with pytest.raises(LuminaryError, match="unknown stopword list"):
        DialogScorer(stub, stopwords="nope")


def test_no_text_calls_preservation_ab_over_a_plus_b():
    """ctc_score's preservation is 2ab/(a+b); neither the module nor docs/ctc.md may say ab/(a+b)."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "ctc.md"
    for text in (metrics.__doc__, docs.read_text(encoding="utf-8")):
        assert not re.search(r"(?<![2\w])\s*ab ?/ ?\(a ?\+ ?b\)", text.replace("2ab", "").replace("2 ab", ""))
