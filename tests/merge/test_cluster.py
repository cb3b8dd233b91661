"""Clustering recovers the families of a generated zoo; column cosine against a hand computation."""

import json

import torch

from luminary.merge.cluster import column_cosine
from luminary.models import build_model

from tests.merge.merge_helpers import save_variant


def test_column_cosine_by_hand():
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # column 0: cos = 1; column 1: ⟨(0,1),(1,1)⟩/√2 = 1/√2
    assert abs(column_cosine(w, v) - (1 + 2 ** -0.5) / 2) < 1e-6
    assert abs(column_cosine(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])) - 1.0) < 1e-6


def test_cluster_recovers_generated_families(tmp_path, tokenizer, cli):
    """Three families: two llama bases with fine-tunes each, and a crystal model alone."""
    folders, truth = [], []
    for family, seed in (("x", 10), ("y", 20)):
        base = build_model("llama-debug", len(tokenizer), seed=seed)
        members = []
        for k in range(3):
            members.append(str(save_variant(base, tmp_path / f"{family}{k}", tokenizer, seed=seed + k, scale=0.002)))
        folders += members
        truth.append(members)
    crystal = build_model("crystal-debug", len(tokenizer), seed=0)
    crystal.save_pretrained(tmp_path / "crystal")
    folders.append(str(tmp_path / "crystal"))
    truth.append([str(tmp_path / "crystal")])
    order = [folders[i] for i in (0, 3, 1, 6, 4, 2, 5)]  # shuffled
    res = cli("zoo", "cluster", *order, "--threshold", "0.95", "--out", tmp_path / "clusters")
    assert res.returncode == 0, res.stderr
    result = json.loads((tmp_path / "clusters" / "clusters.json").read_text())
    assert sorted(map(sorted, result["families"])) == sorted(map(sorted, truth))
    sim = result["similarity"]
    assert sim[0][1] < 0.5 < sim[0][2]  # x0 vs y0 unrelated, x0 vs x1 near 1
    assert sim[0][3] is None  # llama vs crystal: different architectures
    png = (tmp_path / "clusters" / "similarity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # task vectors relative to x0 (n1 − n0 and n2 − n0) have cosine ≈ 1/2: two families at 0.95, one at 0.4
    for threshold, count in ((0.95, 2), (0.4, 1)):
        out = tmp_path / f"tv{threshold}"
        res = cli("zoo", "cluster", *truth[0][1:], "--base", truth[0][0], "--threshold", threshold, "--out", out)
        assert res.returncode == 0, res.stderr
        tv = json.loads((out / "clusters.json").read_text())
        assert len(tv["families"]) == count and 0.4 < tv["similarity"][0][1] < 0.6
