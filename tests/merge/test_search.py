"""Selective merging finds the known best combination under a synthetic evaluator and saves the best."""

import json
import math

import pytest
import torch
import yaml

from luminary.merge.evaluators import multiple_choice, perplexity
from luminary.merge.search import SearchConfig, run_search

from tests.merge.merge_helpers import state


def distance_to(target: dict):
    def evaluate(folder) -> float:
        s = state(folder)
        return -sum(((s[k] - target[k]) ** 2).sum().item() for k in target)
    return evaluate


def mix(folders, weights):
    states = [state(f) for f in folders]
    total = sum(weights)
    return {k: sum(w * s[k] for w, s in zip(weights, states)) / total for k in states[0]}


@pytest.mark.parametrize("order", ["score", "most_similar"])
def test_heuristic_finds_the_best_subset(tmp_path, zoo, order):
    target = mix([zoo["a"], zoo["c"]], [1, 1])  # the best merge: a and c, without b
    evaluate = distance_to(target)
    config = SearchConfig(models=[str(zoo[k]) for k in "abc"], order=order)
    result = run_search(config, tmp_path / "best", evaluate=evaluate)
    assert result["best_score"] > -1e-9
    assert evaluate(tmp_path / "best") == result["best_score"]
    saved = json.loads((tmp_path / "best" / "search.json").read_text())
    added = [h for h in saved["history"] if h.get("step") == "merge"]
    assert all(h["add"] != h["into"][0] for h in added)  # the start model is never merged with itself
    assert not list(tmp_path.glob(".tmp-*"))


def test_grid_saves_the_best_not_the_last(tmp_path, zoo):
    target = mix([zoo["a"], zoo["b"]], [0.7, 0.3])
    evaluate = distance_to(target)
    config = SearchConfig(models=[str(zoo["a"]), str(zoo["b"])], coefficient="grid", grid=[0.5, 0.7, 0.9])
    result = run_search(config, tmp_path / "best", evaluate=evaluate)
    assert result["best"]["c"] == 0.7 and result["best_score"] > -1e-9
    assert evaluate(tmp_path / "best") == result["best_score"]


def test_cmaes_approaches_the_brute_force_optimum(tmp_path, zoo):
    folders = [zoo[k] for k in "abc"]
    target = mix(folders, [0.8, 0.2, 0.0])
    evaluate = distance_to(target)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    brute = max(evaluate_weights(folders, (x, y, z), target) for x in grid for y in grid for z in grid if x + y + z)
    alone = max(evaluate(f) for f in folders)
    config = SearchConfig(models=[str(f) for f in folders], strategy="cmaes", trials=96, popsize=8, seed=42)
    result = run_search(config, tmp_path / "best", evaluate=evaluate)
    assert brute > -1e-9  # (1, 0.25, 0) is on the grid
    assert result["best_score"] > 0.05 * alone  # within 5 % of the best single model's distance
    scores = [h["score"] for h in result["history"]]
    assert result["best_score"] == max(scores) and result["evaluations"] == 96
    assert evaluate(tmp_path / "best") == result["best_score"]


def evaluate_weights(folders, weights, target):
    merged = mix(folders, weights)
    return -sum(((merged[k] - target[k]) ** 2).sum().item() for k in target)


def test_cli_search_with_perplexity(tmp_path, zoo, stdlib_texts, cli):
    (tmp_path / "text.txt").write_text(stdlib_texts[0][:3000])
    cfg = {"models": [str(zoo["a"]), str(zoo["b"])],
           "evaluator": {"kind": "perplexity", "path": str(tmp_path / "text.txt"), "seq_len": 64, "max_examples": 4}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("merge", "search", tmp_path / "s.yaml", "--out", tmp_path / "best")
    assert res.returncode == 0, res.stderr
    result = json.loads((tmp_path / "best" / "search.json").read_text())
    ppl = perplexity(tmp_path / "best", str(tmp_path / "text.txt"), 64, 4, 8)
    assert math.isclose(-ppl, result["best_score"], rel_tol=1e-5)
    cfg["evaluator"]["path"] = str(tmp_path / "missing.txt")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    bad = cli("merge", "search", tmp_path / "bad.yaml", "--out", tmp_path / "none")
    assert bad.returncode == 2 and "missing.txt" in bad.stderr and not (tmp_path / "none").exists()


def test_multiple_choice_matches_a_hand_computation(tmp_path, zoo, tokenizer):
    from transformers import AutoModelForCausalLM

    rows = [{"context": "def f(x):", "choices": [" return x", " import os", "\n    pass"], "answer": i % 3}
            for i in range(3)]
    (tmp_path / "task.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = AutoModelForCausalLM.from_pretrained(zoo["a"]).eval()
    context = tokenizer("def f(x):", add_special_tokens=False)["input_ids"]
    lls = []
    for choice in rows[0]["choices"]:
        ids = context + tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
        lls.append(sum(logp[t - 1, ids[t]].item() for t in range(len(context), len(ids))))
    pick = max(range(3), key=lambda i: lls[i])
    expected = sum(int(r["answer"] == pick) for r in rows) / 3
    assert multiple_choice(zoo["a"], str(tmp_path / "task.jsonl"), 100, 2) == expected
