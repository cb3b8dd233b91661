"""Training through the one Trainer: MSE, Cappy's schedule and optimizer, a scorer folder at the end."""

import json
import math
import random

import pytest
import torch

from luminary.core.io import read_jsonl, write_jsonl
from luminary.scorer import Scorer, ScorerTrainConfig, score_pairs, train_scorer
from luminary.scorer.metrics import auc
from luminary.scorer.train import collate_labelled, linear_warmup_schedule, mse_loss

GOOD = ["return value", "raise error", "import module", "class method"]
BAD = ["xyzzy", "qqq www", "zzz", "kkk jjj"]


def keyword_examples(n: int, seed: int) -> list[dict]:
    """A signal a tiny random model learns in a few steps: Python phrases are gold (1), noise is not (0)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        instruction = f"question {rng.randrange(10_000)}: say something about Python"
        out.append({"instruction": instruction, "response": rng.choice(GOOD), "label": 1.0})
        out.append({"instruction": instruction, "response": rng.choice(BAD), "label": 0.0})
    return out


def test_mse_loss_is_the_mean_squared_error_of_the_raw_output(cappy_dir):
    scorer = Scorer.from_pretrained(cappy_dir)
    examples = keyword_examples(3, 0)
    batch = collate_labelled(examples, scorer)
    with torch.no_grad():
        out = mse_loss(scorer.model, batch)
    scores = score_pairs(scorer, [e["instruction"] for e in examples], [e["response"] for e in examples])
    expected = sum((s - e["label"]) ** 2 for s, e in zip(scores, examples)) / len(examples)
    assert float(out["loss"]) == pytest.approx(expected, abs=1e-5)
    assert out["count"] == len(examples)


def test_linear_schedule_with_ten_percent_warmup():
    lr = linear_warmup_schedule(2e-5, 0.1, 100)
    assert [lr(s) for s in (0, 5, 10)] == pytest.approx([0.0, 1e-5, 2e-5])
    assert lr(55) == pytest.approx(1e-5) and lr(100) == pytest.approx(0.0)
    assert linear_warmup_schedule(2e-5, 0.1, 7)(1) == pytest.approx(2e-5)  # ⌈0.7⌉ = 1 warm-up step


def test_cappy_defaults():
    config = ScorerTrainConfig(model="m", data="d")
    assert (config.lr, config.warmup_ratio, config.weight_decay, config.betas) == (2e-5, 0.1, 0.0, (0.9, 0.999))
    assert (config.per_device_batch_size, config.accumulate_grad_batches, config.n_epochs) == (8, 16, 1.0)
    assert (config.max_length, config.max_grad_norm) == (512, None)


def test_training_learns_and_writes_a_scorer(tmp_path, bert_backbone_dir):
    write_jsonl(tmp_path / "train.jsonl", keyword_examples(120, 0))
    held = keyword_examples(20, 1)
    write_jsonl(tmp_path / "eval.jsonl", held)
    config = ScorerTrainConfig(model=str(bert_backbone_dir), data=str(tmp_path / "train.jsonl"),
                               eval_data=str(tmp_path / "eval.jsonl"), lr=3e-3, per_device_batch_size=16,
                               accumulate_grad_batches=2, n_epochs=4, eval_every=15, max_length=32)
    result = train_scorer(config, tmp_path / "run")
    records = result["records"]
    assert len(records) == math.ceil(4 * 240 / 32)
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.5 * first
    assert records[-1]["eval_auc"] > 0.9
    assert records[0]["lr"] == 0.0 and records[-1]["lr"] < records[len(records) // 2]["lr"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["betas"] == [0.9, 0.999] and run["n_train_examples"] == 240
    scorer = Scorer.from_pretrained(result["scorer"], max_length=32)  # pairs cut as in training's evaluation
    scores = score_pairs(scorer, [e["instruction"] for e in held], [e["response"] for e in held])
    gold = [s for s, e in zip(scores, held) if e["label"] == 1.0]
    other = [s for s, e in zip(scores, held) if e["label"] == 0.0]
    assert auc(gold, other) == pytest.approx(records[-1]["eval_auc"], abs=1e-6)
    lines = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in lines] == list(range(len(records)))
