"""Baseline rescaling as ctc_score does it (bert-score's shipped F baseline on the final preservation score),
and relevance with two aligners (ctc_score's doc_to_summ and summ_to_ref)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from luminary.core.errors import LuminaryError
from luminary.core.io import write_jsonl
from luminary.ctc import StyleTransferScorer, SummarizationScorer, metrics
from luminary.ctc.rescale import read_baseline, shipped_baseline

needs_bert_score = pytest.mark.skipif(importlib.util.find_spec("bert_score") is None,
                                      reason="bert-score (its shipped baseline files) is not installed")

INPUTS = ["the food was great and the staff were friendly", "we waited an hour for a cold pizza",
          "the room was clean but very small", "i will never come back to this place"]
HYPOS = ["the food was awful and the staff were rude", "we waited a minute for a hot pizza",
         "the room was dirty but very big", "i will surely come back to this place"]


@needs_bert_score
def test_preservation_rescaled_equals_bert_scores_own_rescale_with_baseline(minilm):
    """With bert-score's matching, a = P and b = R, so the rescaled 2ab/(a+b) is bert-score's rescaled F."""
    bert_score = pytest.importorskip("bert_score")
    from luminary.ctc.aligners import EmbeddingAligner

    aligner = EmbeddingAligner(minilm, layer=6, device="cpu", match_specials=True)
    ours = StyleTransferScorer(aligner).score_batch(INPUTS, HYPOS, rescale_with_baseline=True,
                                                   baseline_model="bert-base-uncased")
    path = shipped_baseline("bert-base-uncased")
    theirs = bert_score.BERTScorer(model_type=str(minilm), num_layers=6, lang="en", device="cpu",
                                   rescale_with_baseline=True, baseline_path=str(path))
    f_rescaled = theirs.score(INPUTS, HYPOS, batch_size=1)[2].tolist()
    assert ours == pytest.approx(f_rescaled, abs=1e-5)
    assert read_baseline(path, 6)[2] == pytest.approx(theirs.baseline_vals[2].item(), abs=1e-7)
    plain = StyleTransferScorer(aligner).score_batch(INPUTS, HYPOS)
    assert max(abs(x - y) for x, y in zip(plain, ours)) > 0.05  # the rescaling did something


@needs_bert_score
def test_the_final_score_is_rescaled_not_each_token(tiny_bert, monkeypatch):
    """ctc_score: (p − b_F)/(1 − b_F) of p = 2ab/(a+b), b_F from the preset's file at the aligner's layer."""
    from luminary.ctc.aligners import EmbeddingAligner, embedding

    tiny = embedding.EncoderPreset("bert", 2, 32, 1, False, "a test family", "roberta-large")
    monkeypatch.setitem(embedding.E_PRESETS, "tiny", tiny)
    aligner = EmbeddingAligner(tiny_bert, device="cpu")
    assert aligner.baseline_model == "roberta-large" and aligner.layer == 1
    b = 0.6703483  # roberta-large.tsv, LAYER 1, F
    assert read_baseline(shipped_baseline("roberta-large"), 1)[2] == pytest.approx(b)
    a_x = [sum(al.scores) / len(al.scores) for al in aligner.align(INPUTS, HYPOS)]
    b_y = [sum(al.scores) / len(al.scores) for al in aligner.align(HYPOS, INPUTS)]
    by_hand = [(2 * x * y / (x + y) - b) / (1 - b) for x, y in zip(a_x, b_y)]
    assert StyleTransferScorer(aligner).score_batch(INPUTS, HYPOS, rescale_with_baseline=True) == pytest.approx(
        by_hand, abs=1e-6)
    # luminary's per-token option rescales a and b before the harmonic mean: close, but another number
    per_token = EmbeddingAligner(tiny_bert, device="cpu", baseline=b)
    tokenwise = StyleTransferScorer(per_token).score_batch(INPUTS, HYPOS)
    ra, rb = [(x - b) / (1 - b) for x in a_x], [(y - b) / (1 - b) for y in b_y]
    assert tokenwise == pytest.approx([2 * x * y / (x + y) for x, y in zip(ra, rb)], abs=1e-6)
    assert max(abs(x - y) for x, y in zip(tokenwise, by_hand)) > 1e-4
    with pytest.raises(LuminaryError, match="not both"):
        StyleTransferScorer(per_token).score_batch(INPUTS, HYPOS, rescale_with_baseline=True)


@needs_bert_score
def test_baseline_files_are_checked(tmp_path, make_stub, minilm_aligner):
    bad = tmp_path / "bad.tsv"
    bad.write_text("layer;p\n0;0.1\n")
    with pytest.raises(LuminaryError, match="header LAYER,P,R,F"):
        read_baseline(bad, 0)
    with pytest.raises(LuminaryError, match="no baseline for layer 13"):
        read_baseline(shipped_baseline("bert-base-uncased"), 13)
    with pytest.raises(LuminaryError, match="ships no en baseline for 'gpt9'"):
        shipped_baseline("gpt9")
    own = tmp_path / "own.tsv"
    own.write_text("LAYER,P,R,F\n" + "".join(f"{i},0.5,0.5,0.5\n" for i in range(7)))
    plain = StyleTransferScorer(minilm_aligner).score(INPUTS[0], HYPOS[0])
    assert StyleTransferScorer(minilm_aligner).score(INPUTS[0], HYPOS[0], rescale_with_baseline=True,
                                                     baseline_file=own) == pytest.approx((plain - 0.5) / 0.5)
    with pytest.raises(LuminaryError, match="none of the E presets"):  # MiniLM: no file is known
        StyleTransferScorer(minilm_aligner).score(INPUTS[0], HYPOS[0], rescale_with_baseline=True)
    stub = make_stub({(INPUTS[0], HYPOS[0]): [("a", 1.0)], (HYPOS[0], INPUTS[0]): [("b", 1.0)]})
    with pytest.raises(LuminaryError, match="E aligner only"):
        StyleTransferScorer(stub).score(INPUTS[0], HYPOS[0], rescale_with_baseline=True)


def test_relevance_with_two_aligners(make_stub):
    """doc_to_summ scores align(y → x), summ_to_ref scores align(r → y); each sees only its own pairs."""
    doc, hypo, r1, r2 = "the doc", "the hypo", "ref one", "ref two"
    doc_to_summ = make_stub({(hypo, doc): [("cat", 0.9), ("sat", 0.3)]})
    summ_to_ref = make_stub({(r1, hypo): [("a", 0.2), ("b", 0.6)], (r2, hypo): [("c", 0.5)]})
    got = SummarizationScorer(doc_to_summ, summ_to_ref=summ_to_ref).score(doc, [r1, r2], hypo, "relevance")
    assert got == pytest.approx(0.6 * (0.4 + 0.5) / 2)
    assert doc_to_summ.calls == [([hypo], [doc])] and summ_to_ref.calls == [([r1, r2], [hypo, hypo])]
    # consistency uses doc_to_summ alone
    assert SummarizationScorer(doc_to_summ, summ_to_ref=summ_to_ref).score(doc, None, hypo, "consistency") == 0.6
    assert len(summ_to_ref.calls) == 1
    with pytest.raises(LuminaryError, match="summ_to_ref"):
        SummarizationScorer(doc_to_summ, summ_to_ref="some/folder")


@needs_bert_score
def test_cli_relevance_with_summ_to_ref_and_rescaling(cli, tmp_path, tiny_d, tiny_d2, minilm):
    from luminary.ctc.aligners import DiscriminativeAligner

    doc = "the city council approved a new park on monday. construction starts in may."
    rows = [{"doc": doc, "hypo": "the council approved a park.", "refs": ["a new park was approved.", "park."]},
            {"doc": doc, "hypo": "dogs won the election.", "refs": ["work starts in may."]}]
    write_jsonl(tmp_path / "in.jsonl", rows)
    res = cli("ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", "--aspect", "relevance",
              "--align", "D", "--model", tiny_d, "--summ-to-ref", tiny_d2, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    got = [json.loads(line)["score"] for line in res.stdout.splitlines()]
    first, second = DiscriminativeAligner(tiny_d, device="cpu"), DiscriminativeAligner(tiny_d2, device="cpu")
    expected = metrics.relevance(first, [r["doc"] for r in rows], [r["refs"] for r in rows],
                                 [r["hypo"] for r in rows], ref_aligner=second)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got != pytest.approx(metrics.relevance(first, [r["doc"] for r in rows], [r["refs"] for r in rows],
                                                  [r["hypo"] for r in rows]), abs=1e-6)

    write_jsonl(tmp_path / "st.jsonl", [{"input_sent": x, "hypo": y} for x, y in zip(INPUTS, HYPOS)])
    base = ("ctc", "score", tmp_path / "st.jsonl", "--task", "style_transfer", "--aspect", "preservation")
    res = cli(*base, "--rescale-with-baseline", "--baseline-model", "bert-base-uncased")
    assert res.returncode == 0, res.stderr
    expected = StyleTransferScorer("E").score_batch(INPUTS, HYPOS, rescale_with_baseline=True,
                                                    baseline_model="bert-base-uncased")
    assert [json.loads(line)["score"] for line in res.stdout.splitlines()] == pytest.approx(expected, abs=1e-6)
    cli(*base, "--rescale-with-baseline").one_line_error("--baseline-model")
    cli(*base, "--baseline-model", "gpt9").one_line_error("gpt9")
    cli("ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", "--aspect", "consistency",
        "--rescale-with-baseline").one_line_error("preservation only")
    cli("ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", "--aspect", "consistency",
        "--summ-to-ref", tiny_d2).one_line_error("second aligner")
