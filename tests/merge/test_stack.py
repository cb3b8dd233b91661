"""Stacking and interleaving: layer order, averaged outer tensors, loads with transformers."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.merge.merge_helpers import state


@pytest.mark.parametrize("mode, order", [("stack", [("a", 0), ("a", 1), ("b", 0), ("b", 1)]),
                                         ("interleave", [("a", 0), ("b", 0), ("a", 1), ("b", 1)])])
def test_stack_and_interleave(tmp_path, zoo, cli, mode, order):
    res = cli("stack", zoo["a"], zoo["b"], "--mode", mode, "--out", tmp_path / "deep")
    assert res.returncode == 0, res.stderr
    out, src = state(tmp_path / "deep"), {k: state(zoo[k]) for k in "ab"}
    for j, (m, i) in enumerate(order):
        assert torch.equal(out[f"model.layers.{j}.self_attn.v_proj.weight"], src[m][f"model.layers.{i}.self_attn.v_proj.weight"])
    mean = (src["a"]["model.norm.weight"] + src["b"]["model.norm.weight"]) / 2
    assert torch.allclose(out["model.norm.weight"], mean)
    assert json.loads((tmp_path / "deep" / "config.json").read_text())["num_hidden_layers"] == 4
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "deep")
    assert len(model.model.layers) == 4 and torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_stack_refuses_other_architectures(tmp_path, zoo, odd_models, cli):
    crystal, wide = odd_models
    for other in (crystal, wide):
        res = cli("stack", zoo["a"], other, "--out", tmp_path / "deep")
        assert res.returncode == 2 and not (tmp_path / "deep").exists()
        assert len([x for x in res.stderr.splitlines() if x.strip()]) == 1
