"""Peer check: E-alignment token scores equal bert-score's greedy-matching components.

Same packaged MiniLM encoder, layer 6, no idf; bert-score's components are
computed by its own functions (see benchmarks/ctc_vs_bertscore.py, which
runs the same check on 1000 pairs and times both).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

bert_score = pytest.importorskip("bert_score")

SENTENCES = [
    "The committee approved the new budget after a long debate on Tuesday.",
    "Heavy rain flooded several streets in the northern part of the city.",
    "Researchers found that the drug reduced symptoms in most patients.",
    "The team scored twice in the final minutes to win the championship.",
    "Prices of fresh vegetables rose sharply during the dry summer months.",
    "A new bridge will connect the island to the mainland by next year.",
    "The museum reopened its doors with an exhibition of modern paintings.",
    "Engineers are testing a battery that charges in under ten minutes.",
    "Local farmers worry that the new trade rules will hurt their income.",
    "The author signed copies of her latest novel at the town library.",
]


def load_benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "ctc_vs_bertscore.py"
    spec = importlib.util.spec_from_file_location("ctc_vs_bertscore", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_token_scores_equal_bert_score_greedy_matching(minilm):
    from luminary.ctc.aligners import EmbeddingAligner

    cands = [SENTENCES[i % 10] for i in range(20)]
    refs = [f"{SENTENCES[(i + 3) % 10]} {SENTENCES[(i + 7 + i // 10) % 10]}" for i in range(20)]
    ours = EmbeddingAligner(minilm, layer=6, device="cpu", match_specials=True).align(cands, refs)
    scorer = bert_score.BERTScorer(model_type=str(minilm), num_layers=6, device="cpu")
    theirs = load_benchmark().bertscore_components(scorer, cands, refs)
    assert [len(a.scores) for a in ours] == [len(t) for t in theirs]
    diffs = [abs(x - y) for a, t in zip(ours, theirs) for x, y in zip(a.scores, t)]
    assert max(diffs) < 1e-5
    # and the mean over a candidate's tokens is bert-score's precision P (one pair at a time: no padding)
    precision = scorer.score(cands[:2], refs[:2], batch_size=1)[0].tolist()
    assert [sum(a.scores) / len(a.scores) for a in ours[:2]] == pytest.approx(precision, abs=1e-5)
