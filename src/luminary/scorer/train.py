"""Training a scorer through the one Trainer: pointwise regression, mean squared error.

Cappy's objective: L = (1/B) Σ (s(xᵢ, yᵢ) − labelᵢ)², s the raw one-output head
and the label in [0, 1] (gold 1.0, a same-task negative 0.0, a generation its
ROUGE-L F; see ``luminary.scorer.data``). The defaults are the authors' for
downstream adaptation (``cappy_bigbench.py``): AdamW (β = 0.9, 0.999, ε = 1e-8,
no weight decay, no clipping), peak lr 2e-5 with a linear schedule and 10%
warm-up, 8 pairs × 16 accumulation, one epoch, pairs truncated to 512 tokens.

    luminary scorer train examples/scorer-demo.yaml --out runs/scorer
"""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from luminary.core.config import Config
from luminary.core.deploy import MOVED_TO_DEPLOY, CheckpointPolicy, DeployConfig
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, read_jsonl, write_manifest
from luminary.core.runs import list_checkpoints
from luminary.models.loading import load_tokenizer
from luminary.scorer.inference import predict_score
from luminary.scorer.metrics import label_auc
from luminary.scorer.model import Scorer, pad_pairs, scorer_source
from luminary.train import Evaluation, Predictor, ScheduleConfig, build_schedule
from luminary.train.run import check_deploy, fit_run, start_run


class ScorerCheckpoints(CheckpointPolicy):
    keep_last: int | None = Field(1, ge=1, description="the scorer is exported from the last one")


class ScorerDeploy(DeployConfig):
    checkpoints: ScorerCheckpoints = Field(default_factory=ScorerCheckpoints)


class ScorerTrainConfig(Config):
    moved_keys = MOVED_TO_DEPLOY
    model: str = Field(description="a scorer folder, or a pretrained encoder folder (a one-output head is added)")
    data: str = Field(description="JSONL of {instruction, response, label} (luminary scorer build-data)")
    eval_data: str | None = Field(None, description="held-out JSONL of the same shape: eval MSE, and AUC of labels 1 vs 0")
    num_layers: int | None = Field(None, ge=1, description="keep only the backbone's first layers (a new scorer only)")
    max_length: int = Field(512, ge=8)
    lr: float = Field(2e-5, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    per_device_batch_size: int = Field(8, ge=1)
    accumulate_grad_batches: int = Field(16, ge=1)
    n_epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer updates; default: n_epochs over the data")
    max_grad_norm: float | None = Field(None, gt=0, description="None: no clipping (as Cappy)")
    freeze_embeddings: bool = Field(False, description="keep the input embeddings fixed (faster on a CPU)")
    head_lr_mult: float = Field(1.0, gt=0, description="learning-rate multiplier of the head (outside the base model)")
    eval_every: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    allow_pickle: bool = False
    deploy: ScorerDeploy = Field(default_factory=ScorerDeploy)


def read_examples(path: str | Path) -> list[dict[str, Any]]:
    """Labelled pairs; a missing field or a label that is not a number names the line."""
    rows = read_jsonl(path, required=("instruction", "response", "label"))
    for number, row in enumerate(rows, 1):
        if isinstance(row["label"], bool) or not isinstance(row["label"], (int, float)):
            raise LuminaryError(f"{path}: example {number}: 'label' must be a number, got {row['label']!r}")
    if not rows:
        raise LuminaryError(f"{path}: no examples")
    return rows


def collate_labelled(examples: list[dict[str, Any]], scorer: Scorer) -> dict[str, torch.Tensor]:
    """``collate_fn``: encode pairs, pad to the longest in the batch, labels as floats."""
    batch = pad_pairs(scorer.encode([e["instruction"] for e in examples], [e["response"] for e in examples]),
                      scorer.pad_id)
    batch["labels"] = torch.tensor([float(e["label"]) for e in examples], dtype=torch.float32)
    return batch


def mse_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], is_training: bool = True) -> dict[str, Any]:
    """``loss_fn``: mean of (s − label)² over the micro-batch, with its size as the count."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    scores = model(**inputs).logits[:, 0].float()
    return {"loss": F.mse_loss(scores, batch["labels"]), "count": len(scores)}


def linear_warmup_schedule(lr: float, warmup_ratio: float, total_steps: int):
    """Linear warm-up over ⌈ratio·total⌉ steps to ``lr``, then linear decay to 0 at the end."""
    warmup = math.ceil(warmup_ratio * total_steps)
    return build_schedule(ScheduleConfig(kind="linear", peak_lr=lr, warmup_steps=warmup, end_lr=0.0), total_steps)


def build_scorer_optimizer(model: torch.nn.Module, config: ScorerTrainConfig) -> torch.optim.AdamW:
    """AdamW over two groups: the base model (``lr_mult`` 1) and the head, every parameter
    outside ``model.base_model`` (``lr_mult = head_lr_mult``: a fresh head on a pretrained
    encoder may learn faster than the encoder it reads)."""
    body_ids = {id(p) for p in model.base_model.parameters()}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for _, p in trainable if id(p) in body_ids], "lr_mult": 1.0, "name": "body"},
        {"params": [p for _, p in trainable if id(p) not in body_ids], "lr_mult": config.head_lr_mult, "name": "head"},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas, eps=1e-8,
                             weight_decay=config.weight_decay)


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    """A checkpoint's model and tokenizer as a plain model folder (no trainer state)."""
    with atomic_dir(out, overwrite=True) as tmp:
        for item in checkpoint.iterdir():
            if item.is_file() and item.name != "MANIFEST.sha256":
                shutil.copy2(item, tmp / item.name)
        write_manifest(tmp)
    return out


def train_scorer(config: ScorerTrainConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train as ``config`` says into run folder ``out``; the scorer lands in ``out/scorer``.

    Returns ``{"records": step records, "scorer": path}``.
    """
    out = Path(out)
    deploy = config.deploy
    check_deploy(deploy)  # the cheap refusals first
    train_examples = read_examples(config.data)
    eval_examples = read_examples(config.eval_data) if config.eval_data else None
    source = scorer_source(config.model, deploy.seed, config.allow_pickle, config.num_layers)
    if config.freeze_embeddings:
        source.adjust.append(lambda model: model.get_input_embeddings().weight.requires_grad_(False))
    scorer = Scorer(None, load_tokenizer(config.model), config.max_length, config=source.config)
    deployer = start_run(out, deploy, config, resume=resume, model_config=source.config,
                         info={"n_train_examples": len(train_examples)})
    evaluation = None
    if eval_examples is not None:
        has_both = {0.0, 1.0} <= {float(e["label"]) for e in eval_examples}
        features = scorer.encode([e["instruction"] for e in eval_examples], [e["response"] for e in eval_examples])
        predictor = Predictor(deployer, functools.partial(pad_pairs, pad_id=scorer.pad_id), predict_score)
        evaluation = Evaluation(
            eval_examples, every=config.eval_every, batch_size=config.eval_batch_size,
            predictor=_FeaturePredictor(predictor, features) if has_both else None,
            metric_fn=(lambda examples, scores: {"auc": label_auc(examples, scores)}) if has_both else None)
    result = fit_run(
        deployer, source, functools.partial(collate_labelled, scorer=scorer), mse_loss, train_examples,
        per_device_batch_size=config.per_device_batch_size, accumulate_grad_batches=config.accumulate_grad_batches,
        max_steps=config.max_steps, n_epochs=config.n_epochs,
        optimizer=functools.partial(build_scorer_optimizer, config=config),
        schedule=lambda total: linear_warmup_schedule(config.lr, config.warmup_ratio, total),
        max_grad_norm=config.max_grad_norm, evaluation=evaluation, tokenizer=scorer.tokenizer, resume=resume,
    )
    found = list_checkpoints(out / "checkpoints")
    if not found:
        raise LuminaryError(f"{out}: training wrote no checkpoint")
    path = out / "scorer"
    if deployer.is_main:
        export_checkpoint(found[-1][1], path)
    deployer.barrier()
    return {"records": result.records, "scorer": path}


class _FeaturePredictor:
    """Scores the eval set from its pre-encoded pairs, length-sorted (what ``fit`` calls)."""

    def __init__(self, predictor: Any, features: list[dict[str, list[int]]]):
        self.predictor, self.features = predictor, features

    def predict(self, model: torch.nn.Module, examples: Any, batch_size: int) -> list[float]:
        scores = self.predictor.predict(model, self.features, batch_size, length_key=lambda f: len(f["input_ids"]))
        return [float(s) for s in scores]
