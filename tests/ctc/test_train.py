"""Training D and R through luminary's Trainer; the best held-out model is the one kept."""

from __future__ import annotations

import json
import random

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import write_jsonl
from luminary.core.runs import read_metrics
from luminary.ctc.train import (
    AlignerTrainConfig,
    d_metrics,
    encode_examples,
    read_training_examples,
    split_examples,
    train_aligner,
)

VOCAB = "river stone cloud apple tiger lamp piano orange garden window violet rocket candle forest".split()


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Words of the input absent from the context are labelled 1 (hallucinated)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        context = rng.sample(VOCAB, 6)
        words = [rng.choice(VOCAB) for _ in range(5)]
        rows.append({"context": " ".join(context), "input_text": " ".join(words),
                     "labels": [int(w not in context) for w in words]})
    return rows


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, synthetic_rows(40))
    return path


def config(kind, base, data, **extra):
    return AlignerTrainConfig(kind=kind, base_model=str(base), data=str(data), lr=1e-3, per_device_batch_size=4,
                              accumulate_grad_batches=2, max_steps=6, eval_every=2, deploy={"device": "cpu"}, **extra)


def test_d_keeps_the_checkpoint_with_the_best_f1_sum(tiny_bert, train_file, tmp_path):
    from luminary.ctc.aligners import DiscriminativeAligner

    out = tmp_path / "run-d"
    result = train_aligner(config("D", tiny_bert, train_file), out)
    evals = [r for r in read_metrics(out / "metrics.jsonl") if "eval_selection" in r]
    assert [r["step"] + 1 for r in evals] == [2, 4, 6]
    best = max(evals, key=lambda r: r["eval_selection"])
    record = json.loads((out / "best" / "ctc_aligner.json").read_text())
    assert record["kind"] == "D" and record["step"] == best["step"] + 1
    assert record["word_features"] == "sum"  # so that scoring pools words as training did
    assert record["eval"]["eval_selection"] == pytest.approx(best["eval_selection"])
    assert best["eval_selection"] == pytest.approx(best["eval_f1_ok"] + best["eval_f1_bad"])
    assert result["aligner"] == str(out / "best")

    # the kept folder scores the held-out words as the evaluation did: label 1 where P(ok) < 1/2
    aligner = DiscriminativeAligner(out / "best", device="cpu")
    assert aligner.word_features == "sum"
    rows = read_training_examples(train_file)
    encoded = encode_examples(rows, aligner.tokenizer, "D", 256, 512)
    _, held_out = split_examples(list(zip(rows, encoded)), 0.1, 0)  # the same seeded split as training
    alignments = aligner.align([row["input_text"] for row, _ in held_out], [row["context"] for row, _ in held_out])
    preds = [[int(s < 0.5) for s in a.scores] for a in alignments]
    metrics = d_metrics([e for _, e in held_out], [torch.tensor(p) for p in preds])
    assert metrics["selection"] == pytest.approx(record["eval"]["eval_selection"])


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_d_loss_pools_each_words_features_as_configured(tiny_d, pool):
    """The loss is cross-entropy of head(Σ or mean of the word's last hidden states), computed by hand."""
    import torch.nn.functional as F
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from luminary.ctc.aligners.pairs import collate_pairs
    from luminary.ctc.train import d_loss, d_predict

    tok = AutoTokenizer.from_pretrained(tiny_d)
    model = AutoModelForTokenClassification.from_pretrained(tiny_d).eval()
    rows = [{"context": "river lamp stone", "input_text": "Unbelievably rivers glow", "labels": [1, 0, 1]},
            {"context": "a cloud", "input_text": "cloudberries", "labels": [0]}]
    batch = collate_pairs(encode_examples(rows, tok, "D", 256, 512), tok.pad_token_id)
    with torch.no_grad():
        loss = d_loss(model, batch, word_features=pool)["loss"]
        preds = d_predict(model, batch, word_features=pool)
        logits, labels = [], []
        for row in rows:
            enc = tok(row["input_text"], row["context"], return_tensors="pt")
            features, position = model.bert(**enc).last_hidden_state[0], 1
            for word, label in zip(row["input_text"].split(), row["labels"]):
                n = len(tok(word, add_special_tokens=False)["input_ids"])
                span = features[position : position + n]
                logits.append(model.classifier(span.sum(0) if pool == "sum" else span.mean(0)))
                labels.append(label)
                position += n
        logits = torch.stack(logits)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.tensor(labels)).item(), abs=1e-5)
    assert preds[preds != -100].tolist() == logits.argmax(-1).tolist()


def test_word_features_must_be_sum_or_mean(tiny_bert, train_file):
    with pytest.raises(Exception, match="word_features"):
        config("D", tiny_bert, train_file, word_features="max")


def test_r_trains_toward_the_share_of_words_not_hallucinated(tiny_bert, train_file, tmp_path):
    from transformers import AutoTokenizer

    from luminary.ctc.aligners import RegressionAligner

    rows = read_training_examples(train_file)
    encoded = encode_examples(rows, AutoTokenizer.from_pretrained(tiny_bert), "R", 256, 512)
    assert [e["target"] for e in encoded] == pytest.approx([1 - sum(r["labels"]) / len(r["labels"]) for r in rows])
    out = tmp_path / "run-r"
    result = train_aligner(config("R", tiny_bert, train_file), out)
    evals = [r for r in read_metrics(out / "metrics.jsonl") if "eval_mse" in r]
    assert result["eval"]["eval_mse"] == pytest.approx(min(r["eval_mse"] for r in evals))
    [alignment] = RegressionAligner(out / "best", device="cpu").align(["river stone"], ["river lamp"])
    assert alignment.tokens is None and isinstance(alignment.aggregate(), float)


def test_bad_training_data_names_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"context": "a", "input_text": "x y", "labels": [0, 1]}\n\n'
                    '{"context": "a", "input_text": "x y z", "labels": [0, 1]}\n')
    with pytest.raises(LuminaryError, match="line 3: 2 labels for 3 words"):
        read_training_examples(path)
    path.write_text('{"context": "a", "input_text": "x", "labels": [2]}\n')
    with pytest.raises(LuminaryError, match="line 1: 'labels' must be a list of 0 and 1"):
        read_training_examples(path)


def test_the_shipped_example_config_loads():
    from pathlib import Path

    from luminary.core.config import load_config

    path = Path(__file__).resolve().parents[2] / "examples" / "ctc-train-d.yaml"
    cfg = load_config(path, AlignerTrainConfig)
    assert (cfg.kind, cfg.lr, cfg.per_device_batch_size * cfg.accumulate_grad_batches) == ("D", 1e-5, 16)
