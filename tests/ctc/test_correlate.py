"""Correlations against scipy and hand computations, instance and system level."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from luminary.core.errors import LuminaryError
from luminary.core.io import write_jsonl
from luminary.ctc.correlate import correlate, correlate_files, system_means

METRIC = [1, 2, 3, 4, 5, 6]
HUMAN = [2, 1, 4, 3, 6, 5]
SYSTEMS = ["a", "a", "b", "b", "c", "c"]


def test_instance_level_by_hand_and_against_scipy():
    report = correlate(METRIC, HUMAN, SYSTEMS)["instance"]
    assert report["spearman"] == pytest.approx(1 - 6 * 6 / (6 * (36 - 1)))  # Σd² = 6
    assert report["kendall"] == pytest.approx((12 - 3) / 15)  # 3 discordant pairs of 15
    assert report["pearson"] == pytest.approx(np.corrcoef(METRIC, HUMAN)[0, 1])
    assert report["pearson_p"] == pytest.approx(stats.pearsonr(METRIC, HUMAN).pvalue)
    assert report["n"] == 6


def test_system_level_correlates_the_per_system_means():
    rng = np.random.default_rng(0)
    metric, human = rng.normal(size=40).tolist(), rng.normal(size=40).tolist()
    systems = [f"s{i % 7}" for i in range(40)]
    names, m, h = system_means(metric, human, systems)
    assert names == [f"s{i}" for i in range(7)]
    assert m[3] == pytest.approx(np.mean([metric[i] for i in range(40) if i % 7 == 3]))
    report = correlate(metric, human, systems)["system"]
    assert report["n"] == 7
    assert report["pearson"] == pytest.approx(stats.pearsonr(m, h).statistic)
    assert report["spearman"] == pytest.approx(stats.spearmanr(m, h).statistic)
    assert report["kendall"] == pytest.approx(stats.kendalltau(m, h).statistic)
    assert correlate(METRIC, HUMAN, SYSTEMS)["system"]["pearson"] == pytest.approx(1.0)


def test_files_are_joined_line_by_line(tmp_path):
    write_jsonl(tmp_path / "scores.jsonl", [{"id": i, "score": m} for i, m in enumerate(METRIC)])
    write_jsonl(tmp_path / "human.jsonl", [{"id": i, "consistency": h, "system": s}
                                           for i, (h, s) in enumerate(zip(HUMAN, SYSTEMS))])
    report = correlate_files(tmp_path / "scores.jsonl", tmp_path / "human.jsonl", "consistency")
    assert report == correlate(METRIC, HUMAN, SYSTEMS)
    write_jsonl(tmp_path / "human.jsonl", [{"consistency": 1.0}] * 6)
    assert correlate_files(tmp_path / "scores.jsonl", tmp_path / "human.jsonl", "consistency")["instance"]["pearson"] is None


@pytest.mark.parametrize("human, needle", [
    ([{"consistency": 1.0}] * 5, "has 6 lines but"),
    ([{"id": 9, "consistency": 1.0}] + [{"consistency": 1.0}] * 5, "example 1: ids differ"),
    ([{"consistency": "high"}] * 6, "example 1: 'consistency': expected a finite number"),
    ([{"relevance": 1.0}] * 6, "line 1: missing field 'consistency'"),
])
def test_bad_files(tmp_path, human, needle):
    write_jsonl(tmp_path / "scores.jsonl", [{"id": i, "score": m} for i, m in enumerate(METRIC)])
    write_jsonl(tmp_path / "human.jsonl", human)
    with pytest.raises(LuminaryError, match=needle):
        correlate_files(tmp_path / "scores.jsonl", tmp_path / "human.jsonl", "consistency")
