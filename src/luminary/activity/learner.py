"""One learner for every method: sessions in order, each trained through ``luminary.train``.

Session t of a method (``luminary.activity.methods``):

1. its training rows: the session's (``new``), every session's so far
   (``all_seen``), or the session's plus the exemplar memory (``memory``);
   optionally class-balanced by sampling (each class drawn uniformly, then
   a sample: Kang et al. 2020) or by the loss (Cui et al. 2019);
2. ``fit_run`` with ``collate_fn`` (rows -> features, labels, the frozen old
   model's logits) and the method's ``loss_fn``; a method whose later
   sessions only add prototypes trains the base session alone;
3. the memory is updated by herding, the classifier's statistics are
   refreshed, and the test samples of every class seen so far are scored.

Each fitted session is a run folder ``RUNS/session_T`` (run.json, metrics.jsonl).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from luminary.activity.methods import METHODS, Method, get_method
from luminary.activity.methods import classifiers as clf
from luminary.activity.methods.herding import update_memory
from luminary.activity.methods.losses import (class_balanced_weights, cross_entropy, icarl_loss, lwf_distillation,
                                              supcon_loss)
from luminary.activity.methods.model import FeatureNet
from luminary.activity.protocols import Session
from luminary.core.config import Config
from luminary.core.deploy import CheckpointPolicy, DeployConfig
from luminary.core.modules import unwrap
from luminary.core.seed import derive_seed
from luminary.train.run import fit_run, start_run

N_CLASSES = 32


class MethodConfig(Config):
    """One method of a run, with its training settings (defaults: PyCIL's where it has one)."""

    method: str = Field(description="a name of luminary.activity.methods.METHODS")
    label: str | None = Field(None, description="its name in tables and plots (default: the method's)")
    hidden: int = Field(128, ge=1, description="width of the MLP encoder over the features")
    epochs: float = Field(10.0, gt=0, description="epochs over each session's training rows")
    min_steps: int = Field(50, ge=1, description="updates per session at least (a few-shot session is tiny)")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    memory_size: int = Field(2000, ge=1, description="exemplars in all (PyCIL's 2000)")
    temperature: float = Field(2.0, gt=0, description="LwF distillation temperature")
    distill_weight: float = Field(3.0, ge=0, description="LwF's distillation weight (PyCIL's lamda 3)")
    balance: Literal["none", "loss", "sampling"] = "none"
    cb_beta: float = Field(0.999, gt=0, lt=1, description="class-balanced loss β")
    scale: float = Field(16.0, gt=0, description="cosine head / prototype temperature τ")
    supcon_weight: float = Field(1.0, ge=0)

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method '{value}' (one of {', '.join(METHODS)})")
        return value

    @property
    def name(self) -> str:
        return self.label or (self.method if self.balance == "none" else f"{self.method}+cb-{self.balance}")


class ActivityCheckpoints(CheckpointPolicy):
    at_end: bool = Field(False, description="the sessions' models are tiny and refitted in seconds")


class ActivityDeploy(DeployConfig):
    checkpoints: ActivityCheckpoints = Field(default_factory=ActivityCheckpoints)


@dataclass
class MethodRun:
    """What a method produced: per session, the test rows' true labels and 32-way scores."""

    name: str
    groups: list[tuple[int, ...]]
    trues: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)  # (n_test_t, 32), unseen classes very low

    @property
    def preds(self) -> list[np.ndarray]:
        return [s.argmax(axis=1) for s in self.scores]


def collate(rows: list[dict[str, int]], x: torch.Tensor, y: torch.Tensor, old: torch.Tensor | None) -> dict:
    """``collate_fn``: example rows -> features (B, d), labels (B,), old logits (B, 32)."""
    index = torch.tensor([r["row"] for r in rows])
    batch = {"x": x[index], "y": y[index]}
    if old is not None:
        batch["old"] = old[index]
    return batch


def session_loss(model: torch.nn.Module, batch: dict, is_training: bool = True, *, method: Method,
                 settings: MethodConfig, seen: torch.Tensor, old: torch.Tensor, weight: torch.Tensor | None) -> dict:
    """``loss_fn``: the method's objective over the seen classes."""
    x, y = batch["x"], batch["y"]
    seen, old = seen.to(x.device), old.to(x.device)
    z = unwrap(model).embed(x)
    logits = unwrap(model).head(z)
    out: dict[str, Any] = {"count": len(y)}
    if method.distill == "icarl":
        loss = icarl_loss(logits, y, batch.get("old"), seen, old)
    else:
        # LwF as PyCIL: the cross-entropy over the new classes only, so that the old logits answer to distillation
        trained = seen & ~old if method.distill == "lwf" else seen
        loss = cross_entropy(logits, y, trained, None if weight is None else weight.to(x.device))
        if method.distill == "lwf" and "old" in batch and bool(old.any()):
            kd = lwf_distillation(logits, batch["old"], old, settings.temperature)
            out["distill"] = kd.detach()
            loss = loss + settings.distill_weight * kd
    if method.supcon:
        views = torch.cat([x + 0.3 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)])
        sc = supcon_loss(unwrap(model).embed(views), torch.cat([y, y]))
        out["supcon"] = sc.detach()
        loss = loss + settings.supcon_weight * sc
    out["loss"] = loss
    return out


def balanced_rows(rows: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """As many rows as given, each drawn by picking a class uniformly, then one of its rows."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels[rows])
    picks = rng.choice(classes, size=len(rows))
    return np.asarray([rng.choice(rows[labels[rows] == c]) for c in picks])


def _embed(model: FeatureNet, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.embed(x).double().numpy()


def run_method(settings: MethodConfig, sessions: list[Session], x_train: np.ndarray, y_train: np.ndarray,
               x_test: np.ndarray, y_test: np.ndarray, runs: Path, deploy: DeployConfig,
               record: dict[str, Any] | None = None) -> MethodRun:
    """Train ``settings.method`` over ``sessions``; each fitted session is a run under ``runs``."""
    method = get_method(settings.method)
    seed = deploy.seed
    torch.manual_seed(derive_seed("activity-init", seed, settings.method))
    # standardise with the base session's training statistics (no peeking at later classes)
    base = x_train[sessions[0].train]
    mean, std = base.mean(axis=0), base.std(axis=0) + 1e-6
    xt = torch.from_numpy(((x_train - mean) / std).astype(np.float32))
    xe = torch.from_numpy(((x_test - mean) / std).astype(np.float32))
    yt = torch.from_numpy(y_train.astype(np.int64))
    model = FeatureNet(xt.shape[1], settings.hidden, N_CLASSES, method.head, settings.scale)
    result = MethodRun(settings.name, [s.new_classes for s in sessions])
    memory: dict[int, np.ndarray] = {}
    stats: dict[str, Any] = {"means": {}, "covs": {}}
    seen_so_far: list[int] = []
    for s in sessions:
        old_classes = list(seen_so_far)
        seen_so_far = list(s.seen_classes)
        if s.number == 0 or method.train_after_base:
            if method.data == "all_seen":
                rows = np.concatenate([p.train for p in sessions[:s.number + 1]])
            elif method.data == "memory" and memory:
                rows = np.concatenate([s.train, *memory.values()])
            else:
                rows = s.train
            if settings.balance == "sampling":
                rows = balanced_rows(rows, y_train, derive_seed("balanced", seed, s.number))
            model = _fit_session(model, method, settings, s, rows, xt, yt, y_train, old_classes,
                                 runs / f"session_{s.number}", deploy, record)
        model = model.cpu().eval()
        if method.data == "memory" or method.classifier == "nme":
            new_rows = {c: s.train[y_train[s.train] == c] for c in s.new_classes}
            memory = update_memory(memory, new_rows, lambda r: _embed(model, xt[r]), settings.memory_size)
        scores = _scores(model, method, settings, s, xt, y_train, xe[s.test], memory, stats)
        result.trues.append(y_test[s.test])
        result.scores.append(scores)
    return result


def _fit_session(model, method, settings, s, rows, xt, yt, y_train, old_classes, out, deploy, record):
    seen = torch.zeros(N_CLASSES, dtype=torch.bool)
    seen[list(s.seen_classes)] = True
    old = torch.zeros(N_CLASSES, dtype=torch.bool)
    old[old_classes] = True
    old_logits = None
    if method.distill != "none" and old_classes:
        frozen = copy.deepcopy(model).cpu().eval()
        with torch.no_grad():
            old_logits = frozen(xt)
    weight = None
    if settings.balance == "loss":
        counts = np.bincount(y_train[rows], minlength=N_CLASSES)
        weight = torch.from_numpy(class_balanced_weights(counts, settings.cb_beta).astype(np.float32))
    deployer = start_run(out, deploy, {**(record or {}), "method": settings.model_dump(), "session": s.number},
                         info={"n_train_rows": int(len(rows)), "new_classes": list(s.new_classes)})
    loss_fn = functools.partial(session_loss, method=method, settings=settings, seen=seen, old=old, weight=weight)
    fitted = fit_run(deployer, model, functools.partial(collate, x=xt, y=yt, old=old_logits), loss_fn,
                     [{"row": int(r)} for r in rows], per_device_batch_size=settings.batch_size,
                     max_steps=max(settings.min_steps, math.ceil(settings.epochs * len(rows) / settings.batch_size)),
                     max_grad_norm=None,
                     optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=settings.lr,
                                                           weight_decay=settings.weight_decay))
    return unwrap(fitted.trainer.model)


def _scores(model, method, settings, s, xt, y_train, x_test, memory, stats) -> np.ndarray:
    """(n_test, 32) scores of the test rows over the seen classes."""
    if method.classifier == "linear":
        with torch.no_grad():
            logits = model(x_test).double().numpy()
        unseen = np.setdiff1d(np.arange(N_CLASSES), list(s.seen_classes))
        logits[:, unseen] = clf.UNSEEN
        return logits
    emb = _embed(model, x_test)
    if method.classifier == "nme":
        rows = np.concatenate(list(memory.values()))
        means = clf.class_means(_embed(model, xt[rows]), y_train[rows], s.seen_classes)
        return clf.cosine_scores(emb, means, N_CLASSES, settings.scale)
    # prototypes (and covariances) of the new classes from this session's training rows; the encoder is frozen
    train_emb = _embed(model, xt[s.train])
    stats["means"].update(clf.class_means(train_emb, y_train[s.train], s.new_classes))
    if method.classifier == "prototype":
        return clf.cosine_scores(emb, stats["means"], N_CLASSES, settings.scale)
    stats["covs"].update(clf.class_covariances(train_emb, y_train[s.train], s.new_classes))
    if "shared" not in stats:
        stats["shared"] = np.mean([cov for cov, _ in stats["covs"].values()], axis=0)
    return clf.mahalanobis_scores(emb, stats["means"], stats["covs"], stats["shared"], N_CLASSES)
