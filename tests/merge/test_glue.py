"""The one-command recipe: families found, each merged by the best strategy, mixed, reported."""

import json

import torch
import yaml
from transformers import AutoModelForCausalLM

from luminary.merge.glue import GlueRecipe, run_glue
from luminary.models import build_model

from tests.merge.merge_helpers import save_variant, state


def test_glue_recipe(tmp_path, tokenizer, cli):
    members = {}
    for family, seed in (("x", 10), ("y", 20)):
        base = build_model("llama-debug", len(tokenizer), seed=seed)
        members[family] = [str(save_variant(base, tmp_path / f"{family}{k}", tokenizer, seed=seed + k, scale=0.002))
                           for k in range(1, 3)]
    target = {k: (state(members["x"][0])[k] + state(members["x"][1])[k]) / 2 for k in state(members["x"][0])}

    def evaluate(folder):  # best: the average of family x (the mixture has other tensor names: worst)
        s = state(folder)
        if set(s) != set(target):
            return float("-inf")
        return -sum(((s[k] - target[k]) ** 2).sum().item() for k in target)

    recipe = GlueRecipe(models=members["x"] + members["y"], strategies=["linear", "ties"])
    report = run_glue(recipe, tmp_path / "glue", evaluate=evaluate)
    assert sorted(map(sorted, report["clusters"])) == sorted(map(sorted, members.values()))
    fx = next(f for f in report["families"] if f["members"][0] in members["x"])
    assert fx["chosen"] == "linear" and fx["score"] > -1e-9
    assert any(t["strategy"] == "ties" and "skipped" in t for t in fx["tried"])  # no base model given
    merged = state(tmp_path / "glue" / fx["model"])
    assert all(torch.allclose(merged[k], target[k], atol=1e-7) for k in target)
    assert report["mixture"]["experts"][0] == fx["model"]  # the best family leads
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "glue" / "mixture")
    assert type(model).__name__ == "ModelMixtureForCausalLM" and model.config.num_experts == 2
    assert report["final"] == fx["model"]
    md = (tmp_path / "glue" / "report.md").read_text()
    assert "| family |" in md and "Final model" in md
    assert (tmp_path / "glue" / "clusters" / "similarity.png").is_file()
    assert json.loads((tmp_path / "glue" / "report.json").read_text())["final"] == fx["model"]

    # the command line, with a built-in evaluator
    (tmp_path / "text.txt").write_text("def f(x):\n    return x\n" * 40)
    cfg = {"models": members["x"] + members["y"], "strategies": ["linear"],
           "evaluator": {"kind": "perplexity", "path": str(tmp_path / "text.txt"), "seq_len": 32, "max_examples": 2}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("glue", tmp_path / "recipe.yaml", "--out", tmp_path / "glue-cli")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "glue-cli" / "report.md").is_file()
