"""Benchmarks over checkpoints: the built-in tasks, task files, callables, and their scores."""

import itertools
import json
import random
import shutil

import pytest
import torch

from luminary.analysis import tasks
from luminary.analysis.over_checkpoints import benchmark_over_checkpoints
from luminary.core.errors import LuminaryError
from luminary.data.sources import read_text, stdlib_root


def brute_levenshtein(a: str, b: str) -> int:
    """The recursive definition, memoised: the reference for the dynamic programme."""
    from functools import cache

    @cache
    def d(i: int, j: int) -> int:
        if not i or not j:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_levenshtein_by_hand_and_against_the_recursive_definition():
    assert tasks.levenshtein("kitten", "sitting") == 3
    assert tasks.levenshtein("", "abc") == 3 and tasks.levenshtein("abc", "abc") == 0
    assert tasks.edit_similarity("return x", "return y") == pytest.approx(1 - 1 / 8)
    assert tasks.edit_similarity("", "") == 1.0 and tasks.edit_similarity("ab", "") == 0.0
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 9)))
        assert tasks.levenshtein(a, b) == brute_levenshtein(a, b), (a, b)


def test_code_completion_items_are_held_out_and_cut_before_their_target():
    items = tasks.code_completion_items(20)
    assert len(items) == 20
    sources = {p: read_text(p) for p in sorted((stdlib_root() / "test").glob("test_*.py"))}
    for item in items:
        assert item["prompt"].lstrip().startswith(("def ", "@")) or "def " in item["prompt"].splitlines()[0]
        text = item["prompt"] + item["target"] + "\n"
        assert any(text in source for source in sources.values() if source), item
    assert items == tasks.code_completion_items(20)  # seeded


def test_line_completion_scores_exact_match_and_edit_similarity(monkeypatch):
    items = [{"prompt": "a", "target": "    return x"}, {"prompt": "b", "target": "y = 1"},
             {"prompt": "def f():\n", "target": "    pass"}]
    # the third prompt is asked without its trailing newline, and the line after the first newline is scored
    answers = {"a": "return x\n    pass", "b": "y = 2\n", "def f():": "  # no\n    pas\nx"}
    monkeypatch.setattr(tasks, "greedy_text", lambda model, tok, prompt, n: answers[prompt])
    scores = tasks.line_completion(items)(None, None)
    assert scores == {"exact_match": pytest.approx(1 / 3),
                      "edit_similarity": pytest.approx((1.0 + (1 - 1 / 5) + (1 - 1 / 4)) / 3)}


def test_multiple_choice_and_log_likelihood_against_a_direct_forward(tiny_crystal, tokenizer):
    model = tiny_crystal.eval()
    prompt, choices = "def add(a, b):\n    return", [" a + b", " None", " 12"]
    ids = tokenizer(prompt + choices[0], add_special_tokens=False)["input_ids"]
    n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    direct = sum(float(logp[t - 1, ids[t]]) for t in range(n, len(ids)))
    assert tasks.log_likelihood(model, tokenizer, prompt, choices[0]) == pytest.approx(direct, abs=1e-4)
    scores = [tasks.log_likelihood(model, tokenizer, prompt, c) for c in choices]
    best = max(range(3), key=scores.__getitem__)
    rows = [{"prompt": prompt, "choices": choices, "answer": a} for a in range(3)]
    assert tasks.multiple_choice(rows)(model, tokenizer) == pytest.approx(1 / 3)
    assert tasks.multiple_choice([rows[best]])(model, tokenizer) == 1.0


def test_task_files_and_their_bad_lines(tmp_path):
    good = tmp_path / "mc.jsonl"
    good.write_text(json.dumps({"prompt": "p", "choices": ["a", "b"], "answer": 1}) + "\n")
    assert tasks.load_task(str(good))[0] == "mc"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "target": "t"}) + "\n" + json.dumps({"prompt": "q"}) + "\n")
    with pytest.raises(LuminaryError, match="bad.jsonl: line 2: needs 'target'"):
        tasks.load_task(str(bad))
    with pytest.raises(LuminaryError, match="cannot import"):
        tasks.load_task("no_such_module_here:f")
    with pytest.raises(LuminaryError, match="is not code-completion"):
        tasks.load_task("cloze")


def test_benchmark_over_checkpoints_keeps_every_named_score(tmp_path, run_dir):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    counter = itertools.count()
    result = benchmark_over_checkpoints(folder, "t", lambda m, t: {"a": next(counter), "b": -1.0})
    n = len(result["steps"])
    assert n >= 2 and result["metrics"] == {"a": list(map(float, range(n))), "b": [-1.0] * n}
    assert result["scores"] == result["metrics"]["a"]
    assert json.loads((folder / "analysis" / "benchmark_t.json").read_text()) == result
    assert benchmark_over_checkpoints(folder, "f", lambda m, t: 0.25)["metrics"] == {"score": [0.25] * n}
    keys = iter([{"a": 1.0}, {"b": 1.0}] + [{"b": 1.0}] * n)
    with pytest.raises(LuminaryError, match="the same named scores"):
        benchmark_over_checkpoints(folder, "g", lambda m, t: next(keys))
    with pytest.raises(LuminaryError, match="score 'a' at step .* is not a number: 'high'"):
        benchmark_over_checkpoints(folder, "h", lambda m, t: {"a": "high"})


def test_benchmark_cli_prints_a_column_per_score(cli, tmp_path, run_dir):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    res = cli("analyze", "benchmark", folder, "--task", "code-completion", "--samples", "3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "step\tcode-completion:exact_match\tcode-completion:edit_similarity"
    assert len(lines) == 1 + len(json.loads((folder / "analysis" / "benchmark_code-completion.json")
                                           .read_text())["steps"])
    similarity = [float(line.split("\t")[2]) for line in lines[1:]]
    assert all(0.0 <= s <= 1.0 for s in similarity)
