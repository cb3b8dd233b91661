"""Training the D and R aligners through luminary's one Trainer.

CTC's recipe (``train.py`` of ctc-gen-eval): cross-entropy over the words of
the input (D) or squared error toward mean(1 − label) over them (R); AdamW
at lr 1e-5 with weight decay 0.01, a global batch of 16 (accumulated), one
epoch, linear decay after 10 % warm-up. 10 % of the examples are held out;
the model is evaluated on them along the way and the best one is kept:
for D by F1(ok) + F1(bad) of the word labels, for R by the lowest squared
error. D's word logits pool the subword tokens as ``word_features`` says
(``sum``, ctc_score's, by default; or ``mean``), and the choice is recorded
in ``OUT/best/ctc_aligner.json`` so that scoring pools the same way. The
kept aligner is a ``save_pretrained`` folder (``OUT/best``) that
``build_aligner("D" | "R", OUT/best)`` loads.

    luminary ctc train examples/ctc-train-d.yaml --out runs/ctc-d
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from luminary.core.config import Config
from luminary.core.deploy import MOVED_TO_DEPLOY, CheckpointPolicy, DeployConfig
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, read_json
from luminary.ctc.aligners.pairs import (
    MAX_INPUT_TOKENS,
    MAX_LENGTH,
    MODEL_INPUTS,
    WordFeatures,
    collate_pairs,
    encode_pairs,
    head_bias,
    word_logits as pool_word_logits,
)
from luminary.ctc.records import read_numbered
from luminary.core.modules import unwrap
from luminary.train import Evaluation, OptimizerConfig, Predictor, ScheduleConfig, Trainer
from luminary.train.run import check_deploy, fit_run, start_run, total_steps
from luminary.train.labels import IGNORE
from luminary.train.trainer import Callback


class AlignerCheckpoints(CheckpointPolicy):
    keep_last: int | None = Field(1, ge=1, description="the best aligner is kept apart, in OUT/best")


class AlignerDeploy(DeployConfig):
    checkpoints: AlignerCheckpoints = Field(default_factory=AlignerCheckpoints)


class AlignerTrainConfig(Config):
    moved_keys = MOVED_TO_DEPLOY
    kind: Literal["D", "R"] = "D"
    base_model: str = Field(description="encoder folder to start from (e.g. from `luminary ctc make-encoder`)")
    data: str = Field(description="JSONL from `luminary ctc make-data`: context, input_text, labels")
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    per_device_batch_size: int = Field(8, ge=1)
    accumulate_grad_batches: int = Field(2, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs")
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_fraction: float = Field(0.1, gt=0, lt=1)
    eval_every: int | None = Field(None, ge=1, description="default: ten evaluations over the run")
    max_input_tokens: int = Field(MAX_INPUT_TOKENS, ge=1)
    max_length: int = Field(MAX_LENGTH, ge=8)
    word_features: WordFeatures = Field("sum", description="D: pool subword features per word by sum "
                                                           "(ctc_score) or mean")
    deploy: AlignerDeploy = Field(default_factory=AlignerDeploy)


def read_training_examples(path: str | Path) -> list[dict]:
    """Rows with one 0/1 label per whitespace word of ``input_text``; a bad row names its line."""
    rows = []
    for number, row in read_numbered(path, ("context", "input_text", "labels")):
        labels, words = row["labels"], str(row["input_text"]).split()
        if not isinstance(labels, list) or any(label not in (0, 1) or isinstance(label, bool) for label in labels):
            raise LuminaryError(f"{path}: line {number}: 'labels' must be a list of 0 and 1")
        if len(labels) != len(words) or not words:
            raise LuminaryError(f"{path}: line {number}: {len(labels)} labels for {len(words)} words of 'input_text'")
        rows.append(row)
    if len(rows) < 2:
        raise LuminaryError(f"{path}: need at least 2 examples (one is held out), got {len(rows)}")
    return rows


def encode_examples(rows: list[dict], tokenizer: Any, kind: str, max_input_tokens: int, max_length: int) -> list[dict]:
    """Token ids with word indices; labels cut to the words that fit; R's target mean(1 − label)."""
    pairs = encode_pairs(tokenizer, [r["input_text"] for r in rows], [r["context"] for r in rows],
                         input_first=kind == "D", max_input_tokens=max_input_tokens, max_length=max_length)
    out = []
    for pair, row in zip(pairs, rows):
        labels = row["labels"][: len(pair["words"])]
        target = sum(1 - label for label in labels) / len(labels) if labels else 1.0
        out.append({**pair, "labels": labels, "target": target})
    return out


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def plain_module(model: torch.nn.Module) -> torch.nn.Module:
    """The model under a compile or DistributedDataParallel wrapper."""
    model = unwrap(model)
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def word_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                word_features: WordFeatures = "sum") -> torch.Tensor:
    """(B, W, 2): each word's logits from the head's per-token logits, pooled by ``word_features``."""
    logits = model(**model_inputs(batch)).logits.float()
    bias = head_bias(plain_module(model)).float() if word_features == "sum" else None
    return pool_word_logits(logits, batch["word_index"], batch["labels"].shape[1], word_features, bias)


def d_loss(model, batch, is_training=True, word_features: WordFeatures = "sum"):
    """Mean cross-entropy over the labelled words of the batch."""
    labels = batch["labels"]
    valid = labels != IGNORE
    logits = word_logits(model, batch, word_features)
    loss = F.cross_entropy(logits[valid], labels[valid]) if valid.any() else logits.sum() * 0
    return {"loss": loss, "count": valid.sum()}


def d_predict(model, batch, word_features: WordFeatures = "sum"):
    """Predicted word labels, -100 where the batch has no word."""
    return word_logits(model, batch, word_features).argmax(-1).masked_fill(batch["labels"] == IGNORE, IGNORE)


def d_metrics(examples, preds) -> dict[str, float]:
    """F1 of the ok (0) and bad (1) word labels, their sum (what selects the best model) and accuracy."""
    from sklearn.metrics import f1_score

    truth = [label for e in examples for label in e["labels"]]
    guess = [int(p) for e, pred in zip(examples, preds) for p in pred[: len(e["labels"])].tolist()]
    f1_ok = f1_score(truth, guess, pos_label=0, zero_division=0)
    f1_bad = f1_score(truth, guess, pos_label=1, zero_division=0)
    accuracy = float(np.mean(np.array(truth) == np.array(guess))) if truth else 0.0
    return {"f1_ok": f1_ok, "f1_bad": f1_bad, "selection": f1_ok + f1_bad, "accuracy": accuracy}


def r_loss(model, batch, is_training=True):
    """Mean squared error of the regressed score against mean(1 − label)."""
    pred = model(**model_inputs(batch)).logits[:, 0].float()
    return {"loss": F.mse_loss(pred, batch["target"]), "count": pred.shape[0]}


def r_predict(model, batch):
    return model(**model_inputs(batch)).logits[:, 0].float()


def r_metrics(examples, preds) -> dict[str, float]:
    target = np.array([e["target"] for e in examples])
    guess = np.array([float(p) for p in preds])
    mse = float(np.mean((guess - target) ** 2))
    return {"mse": mse, "selection": -mse}


HEADS = {  # kind -> (Auto class name, number of outputs, loss_fn, pred_fn, metric_fn)
    "D": ("AutoModelForTokenClassification", 2, d_loss, d_predict, d_metrics),
    "R": ("AutoModelForSequenceClassification", 1, r_loss, r_predict, r_metrics),
}


class KeepBest(Callback):
    """Save the model whenever the held-out ``eval_selection`` improves (atomically, to one folder).

    The evaluation is reduced over ranks, so every rank agrees on an
    improvement; the whole weights are gathered (collective) and rank 0 writes.
    """

    def __init__(self, folder: Path, tokenizer: Any, kind: str, word_features: WordFeatures | None = None):
        self.folder, self.tokenizer, self.kind, self.word_features = folder, tokenizer, kind, word_features
        record = folder / "ctc_aligner.json"
        self.best = read_json(record)["eval"]["eval_selection"] if record.is_file() else -math.inf

    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        value = record.get("eval_selection")
        if value is None or value <= self.best:
            return
        self.best = value
        weights = trainer.deployer.full_state_dict(trainer.model)
        if trainer.deployer.is_main:
            with atomic_dir(self.folder, overwrite=True) as tmp:
                unwrap(trainer.model).save_pretrained(tmp, state_dict=weights, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
                evals = {k: v for k, v in record.items() if k.startswith("eval_")}
                info = {"kind": self.kind, "step": record["step"] + 1, "eval": evals}
                if self.word_features is not None:
                    info["word_features"] = self.word_features
                (tmp / "ctc_aligner.json").write_text(json.dumps(info, indent=2) + "\n")
        record["best"] = True


def split_examples(examples: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    order = np.random.default_rng(seed).permutation(len(examples))
    n_eval = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    return [examples[i] for i in order[n_eval:]], [examples[i] for i in order[:n_eval]]


def train_aligner(config: AlignerTrainConfig, out: str | Path, resume: bool = True) -> dict[str, Any]:
    """Train a D or R aligner; returns the best held-out evaluation and where the aligner is."""
    import transformers

    from luminary.models.loading import load_tokenizer
    from luminary.models.source import ModelSource

    out = Path(out)
    deploy = config.deploy
    check_deploy(deploy)  # the cheap refusals first
    auto_name, n_out, loss_fn, pred_fn, metric_fn = HEADS[config.kind]
    word_features = config.word_features if config.kind == "D" else None
    if word_features is not None:
        loss_fn = functools.partial(loss_fn, word_features=word_features)
        pred_fn = functools.partial(pred_fn, word_features=word_features)
    rows = read_training_examples(config.data)
    tokenizer = load_tokenizer(config.base_model)
    source = ModelSource.from_folder(config.base_model, getattr(transformers, auto_name), deploy.seed, "base_model",
                                     config_overrides={"num_labels": n_out})
    examples = encode_examples(rows, tokenizer, config.kind, config.max_input_tokens, config.max_length)
    train, held_out = split_examples(examples, config.eval_fraction, deploy.seed)

    deployer = start_run(out, deploy, config, resume=resume, model_config=source.config,
                         info={"train_examples": len(train), "held_out": len(held_out)})
    deployer.verbose = False
    total = total_steps(deployer, len(train), config.per_device_batch_size, config.accumulate_grad_batches,
                        config.max_steps, config.epochs)
    collate = functools.partial(collate_pairs, pad_id=tokenizer.pad_token_id or 0)
    evaluation = Evaluation(held_out, every=config.eval_every or max(1, total // 10),
                            predictor=Predictor(deployer, collate, pred_fn), metric_fn=metric_fn)
    fit_run(deployer, source, collate, loss_fn, train, per_device_batch_size=config.per_device_batch_size,
            accumulate_grad_batches=config.accumulate_grad_batches, max_steps=total,
            optimizer=OptimizerConfig(lr=config.lr, weight_decay=config.weight_decay),
            schedule=ScheduleConfig(kind="linear", peak_lr=config.lr, warmup_steps=math.ceil(config.warmup_ratio * total)),
            max_grad_norm=config.max_grad_norm, evaluation=evaluation, tokenizer=tokenizer,
            callbacks=[KeepBest(out / "best", tokenizer, config.kind, word_features)], resume=resume)
    record = read_json(out / "best" / "ctc_aligner.json")
    return {"aligner": str(out / "best"), **record}
