"""The Trainer: Redco's three-function training on PyTorch.

The user writes ``collate_fn(examples) -> batch`` and ``loss_fn(model, batch,
is_training) -> loss``; the Trainer does the rest: batches by global sample
index, gradient accumulation, mixed precision, clipping, the learning-rate
schedule, ``metrics.jsonl``, checkpoints and exact resume.

``loss_fn`` returns either a scalar (the mean over its micro-batch) or a dict
with ``loss`` (a mean), optional ``count`` (how many items that mean is over,
e.g. target tokens) and any other scalars to log. The Trainer backpropagates
``loss × count`` and divides the accumulated gradients by the global count, so
the update uses the mean over all items of the global batch however they fall
into micro-batches and ranks (torchtune #2307: normalise by the global count,
in one place).

One process on the CPU (from the repository root):
    python -c "from luminary.train import Trainer"   # see docs/train.md
Under torchrun the same code runs data- and tensor-parallel (luminary.parallel).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.core.progress import progress_bar
from luminary.core.runs import MetricsLog, checkpoint_name, list_checkpoints
from luminary.core.seed import rng_state, set_rng_state
from luminary.train import checkpoint as ckpt
from luminary.train.data import as_source, batch_hash, example_digest
from luminary.core.modules import unwrap
from luminary.train.deployer import Deployer
from luminary.train.optim import build_optimizer


@dataclass
class CheckpointPolicy:
    """When to save: every N steps, at listed steps, at the end; keep the last K."""

    every: int | None = None
    steps: Sequence[int] = ()
    keep_last: int | None = None
    at_end: bool = True

    def due(self, step: int, last_step: int) -> bool:
        return (
            (self.every is not None and step % self.every == 0)
            or step in self.steps
            or (self.at_end and step == last_step)
        )


class Callback:
    """Hooks around steps; ``on_step_end`` may add fields to the step's record."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_step_start(self, trainer: "Trainer", step: int) -> None: ...

    def on_step_end(self, trainer: "Trainer", record: dict[str, Any]) -> None: ...

    def on_checkpoint(self, trainer: "Trainer", folder: Path) -> None: ...


def unpack_loss(out: Any) -> tuple[torch.Tensor, Any, dict[str, Any]]:
    """(mean loss, count it is over, extra scalars) from what ``loss_fn`` returned.

    Values stay tensors where they are tensors: the step reads them back to the
    host once, at its end, so the device is never waited on mid-step.
    """
    if isinstance(out, torch.Tensor):
        return out, 1.0, {}
    if isinstance(out, dict):
        extra = {k: v for k, v in out.items() if k not in ("loss", "count")}
        return out["loss"], out.get("count", 1.0), extra
    if isinstance(out, tuple) and len(out) == 2:
        loss, extra = out
        extra = dict(extra)
        count = extra.pop("count", 1.0)
        return loss, count, extra
    raise TypeError("loss_fn must return a tensor, a dict with 'loss', or (loss, metrics)")


def count_tokens(batch: Any) -> int:
    """Tokens in a collated batch: its attention mask's sum, else its input ids."""
    if isinstance(batch, dict):
        if "attention_mask" in batch and isinstance(batch["attention_mask"], torch.Tensor):
            return int(batch["attention_mask"].sum())
        if "input_ids" in batch and isinstance(batch["input_ids"], torch.Tensor):
            return batch["input_ids"].numel()
    return 0


class Trainer:
    """Fits ``model`` with ``loss_fn`` on batches made by ``collate_fn``.

    Args:
        deployer: run settings (device, precision, workdir, mesh).
        collate_fn: list of examples -> batch (tensors moved to the device for you).
        loss_fn: (model, batch, is_training) -> loss (see module docstring).
        model: a ``torch.nn.Module``; a transformers model is saved with ``save_pretrained``.
        optimizer: an optimizer, an ``OptimizerConfig``, or None for AdamW defaults.
        lr_schedule: step -> learning rate; multiplied by each group's ``lr_mult``.
        accumulate_grad_batches: micro-batches per optimizer update.
        max_grad_norm: clip to this global L2 norm (None: no clipping; the norm is logged anyway).
        tokenizer: saved into every checkpoint when given.
        state: extra stateful objects (``state_dict``/``load_state_dict``) checkpointed with the run.
        callbacks: :class:`Callback` instances.
    """

    def __init__(
        self,
        deployer: Deployer,
        collate_fn: Callable[[list[Any]], Any],
        loss_fn: Callable[..., Any],
        model: torch.nn.Module,
        optimizer: Any = None,
        lr_schedule: Callable[[int], float] | None = None,
        accumulate_grad_batches: int = 1,
        max_grad_norm: float | None = 1.0,
        tokenizer: Any = None,
        state: dict[str, Any] | None = None,
        callbacks: Iterable[Callback] = (),
    ):
        if accumulate_grad_batches < 1:
            raise LuminaryError("accumulate_grad_batches must be >= 1")
        self.deployer = deployer
        self.collate_fn = collate_fn
        # with compile, the loss is compiled around the (compiled) model: one graph, cross-entropy included
        self.loss_fn = torch.compile(loss_fn) if deployer.compile else loss_fn
        self.model = deployer.prepare_model(model)
        if optimizer is None or not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = build_optimizer(unwrap(self.model), optimizer)
        self.optimizer = optimizer
        base_lr = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_mult", 1.0)
        self.lr_schedule = lr_schedule or (lambda step: base_lr)
        self.accumulate_grad_batches = accumulate_grad_batches
        self.max_grad_norm = max_grad_norm
        self.tokenizer = tokenizer
        self.state = dict(state or {})
        self.callbacks = list(callbacks)
        self.step = 0
        self.tokens_seen = 0
        self.source: Any = None
        self.metrics: MetricsLog | None = None

    # --- paths -------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path | None:
        return self.deployer.workdir / "checkpoints" if self.deployer.workdir else None

    # --- one optimizer update ------------------------------------------------------
    def train_step(self, examples: list[Any]) -> dict[str, Any]:
        """Forward/backward over micro-batches, clip, update. Returns the step's record."""
        d, model = self.deployer, self.model
        size = math.ceil(len(examples) / self.accumulate_grad_batches)
        micro_batches = [examples[i : i + size] for i in range(0, len(examples), size)]
        lr = self.lr_schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for i, micro in enumerate(micro_batches):
            batch = self.collate_fn(micro)
            tokens += count_tokens(batch)
            batch = d.to_device(batch)
            with d.gradient_sync(model, i == len(micro_batches) - 1), d.forward_context():
                loss, count, extra = unpack_loss(self.loss_fn(model, batch, True))
            count = torch.as_tensor(count, dtype=torch.float32, device=loss.device)
            (loss * count).backward()
            for key, value in {"loss": loss.detach(), **extra}.items():
                sums[key] = sums.get(key, 0.0) + torch.as_tensor(value, device=loss.device).float() * count
            sums["count"] = sums.get("count", 0.0) + count
        sums["tokens"] = torch.tensor(float(tokens), device=loss.device)
        keys = sorted(sums)
        totals = d.all_reduce_sum(torch.stack([sums[k] for k in keys]))
        # one pass over the gradients: sums -> global mean, then clipped
        grad_norm = d.clip_grad_norm(model, self.max_grad_norm, d.grad_scale(totals[keys.index("count")]))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        values = torch.cat([totals, grad_norm.reshape(1).to(totals)]).tolist()  # the step's one sync
        *totals_list, norm = values
        total = dict(zip(keys, totals_list))
        count = max(total.pop("count"), 1e-12)
        tokens = int(total.pop("tokens"))
        if not math.isfinite(total["loss"]) or not math.isfinite(norm):
            raise LuminaryError(f"step {self.step}: loss or gradient norm is not finite (lower the learning rate?)")
        record = {"step": self.step, "lr": lr, "grad_norm": norm, "tokens": tokens}
        record.update({k: v / count for k, v in total.items()})
        return record

    # --- the loop --------------------------------------------------------------------
    def fit(
        self,
        train_examples: Any,
        per_device_batch_size: int,
        n_epochs: float | None = None,
        max_steps: int | None = None,
        eval_examples: Sequence[Any] | None = None,
        eval_every: int | None = None,
        eval_per_device_batch_size: int | None = None,
        eval_predictor: Any = None,
        eval_metric_fn: Callable[[Sequence[Any], list[Any]], dict[str, float]] | None = None,
        checkpoint: CheckpointPolicy | None = None,
        resume: bool | str | Path = True,
        shuffle: bool = True,
    ) -> list[dict[str, Any]]:
        """Train until ``max_steps`` (or ``n_epochs`` over a list); returns the step records.

        The global batch is ``per_device_batch_size × accumulate_grad_batches ×
        data-parallel ranks``; step N reads samples [N·B, (N+1)·B).
        """
        d = self.deployer
        if per_device_batch_size < 1:
            raise LuminaryError("per_device_batch_size must be >= 1")
        self.source = as_source(train_examples, d.seed, shuffle)
        global_batch = per_device_batch_size * self.accumulate_grad_batches * d.dp_size
        last_step = self._total_steps(n_epochs, max_steps, global_batch)
        checkpoint = checkpoint or CheckpointPolicy(at_end=d.workdir is not None)
        if d.workdir is not None:
            self.metrics = MetricsLog(d.workdir / "metrics.jsonl", enabled=d.is_main)
            if resume:
                self.resume(None if resume is True else Path(resume))
        for cb in self.callbacks:
            cb.on_fit_start(self)
        records: list[dict[str, Any]] = []
        start_step = self.step
        with progress_bar("train", last_step) as bar:
            bar.advance(start_step)
            while self.step < last_step:
                for cb in self.callbacks:
                    cb.on_step_start(self, self.step)
                t0 = time.perf_counter()
                first = self.step * global_batch
                lo, hi = d.rank_slice(global_batch)
                examples = self.source.samples(first + lo, first + hi)
                if len(examples) < hi - lo:
                    break  # a finite stream ran dry
                digests = [example_digest(e) for e in examples]
                record = self.train_step(examples)
                record["batch_sha256"] = batch_hash([g for part in d.all_gather_objects(digests) for g in part])
                self.step += 1
                self.tokens_seen += record["tokens"]
                if eval_every and (self.step % eval_every == 0 or self.step == last_step):
                    record.update(self._evaluate(eval_examples, eval_per_device_batch_size or per_device_batch_size,
                                                 eval_predictor, eval_metric_fn))
                elapsed = time.perf_counter() - t0
                record["tokens_per_s"] = record["tokens"] / elapsed if elapsed > 0 else 0.0
                for cb in self.callbacks:
                    cb.on_step_end(self, record)
                if self.metrics:
                    self.metrics.write(record)
                records.append(record)
                bar.advance(1, info=f"loss {record['loss']:.4f}")
                if d.workdir is not None and checkpoint.due(self.step, last_step):
                    self.save(checkpoint)
        if self.metrics:
            self.metrics.close()
        return records

    def _total_steps(self, n_epochs: float | None, max_steps: int | None, global_batch: int) -> int:
        if max_steps is not None:
            if max_steps < 0:
                raise LuminaryError(f"max_steps must be >= 0, got {max_steps}")
            return max_steps
        per_epoch = getattr(self.source, "samples_per_epoch", None)
        if n_epochs is None or per_epoch is None:
            raise LuminaryError("give max_steps (or n_epochs with a list of examples)")
        if n_epochs <= 0:
            raise LuminaryError(f"n_epochs must be > 0, got {n_epochs}")
        return max(1, math.ceil(n_epochs * per_epoch / global_batch))

    # --- evaluation --------------------------------------------------------------------
    def evaluate(self, examples: Sequence[Any], per_device_batch_size: int) -> dict[str, float]:
        """Mean of ``loss_fn(model, batch, False)`` over ``examples`` (weighted by count)."""
        d, model = self.deployer, self.model
        model.eval()
        n = len(examples)
        per_rank = math.ceil(n / d.dp_size)
        mine = list(examples[d.dp_rank * per_rank : (d.dp_rank + 1) * per_rank])
        n_batches = math.ceil(per_rank / per_device_batch_size)
        sums: dict[str, float] = {"loss": 0.0, "count": 0.0}
        with torch.no_grad():
            for b in range(n_batches):
                chunk = mine[b * per_device_batch_size : (b + 1) * per_device_batch_size]
                real = bool(chunk)
                batch = d.to_device(self.collate_fn(chunk or list(examples[:1])))  # ranks run equal forwards
                with d.forward_context():
                    loss, count, extra = unpack_loss(self.loss_fn(model, batch, False))
                if real:
                    count = float(count)
                    for k, v in {"loss": loss, **extra}.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * count
                    sums["count"] += count
        keys = sorted(sums)
        totals = dict(zip(keys, d.all_reduce_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64)).tolist()))
        count = max(totals.pop("count"), 1e-12)
        return {k: v / count for k, v in totals.items()}

    def _evaluate(self, examples, batch_size, predictor, metric_fn) -> dict[str, float]:
        out: dict[str, float] = {}
        if examples is not None:
            out.update({f"eval_{k}": v for k, v in self.evaluate(examples, batch_size).items()})
            if predictor is not None and metric_fn is not None:
                preds = predictor.predict(self.model, examples, batch_size)
                out.update({f"eval_{k}": float(v) for k, v in metric_fn(examples, preds).items()})
        return out

    # --- checkpoints -------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        state = {"step": self.step, "tokens_seen": self.tokens_seen}
        if hasattr(self.source, "state_dict"):
            state["data"] = "stream"
        return state

    def save(self, policy: CheckpointPolicy | None = None) -> Path | None:
        """Write ``checkpoints/step_NNNNNN`` for the current step (collective)."""
        d = self.deployer
        if self.checkpoints_dir is None:
            return None
        folder = self.checkpoints_dir / checkpoint_name(self.step)
        if self.metrics:
            self.metrics.sync()
        weights = d.full_state_dict(self.model)
        optimizer_state = None if d.distributed else self.optimizer.state_dict()  # under a mesh: in the shards
        extra = {name: obj.state_dict() for name, obj in self.state.items()}
        if hasattr(self.source, "state_dict"):
            extra["data_stream"] = self.source.state_dict()

        def write(target: Path) -> None:
            ckpt.save_checkpoint(target, unwrap(self.model), weights, self.trainer_state(), optimizer_state,
                                 rng_state(), extra, self.tokenizer)

        if d.distributed:
            from luminary.parallel.checkpoint import save_distributed_checkpoint

            save_distributed_checkpoint(folder, self.model, self.optimizer, d, write)
        elif d.is_main:
            write(folder)
        if d.is_main:
            if policy is not None:
                ckpt.prune_checkpoints(self.checkpoints_dir, policy.keep_last, set(policy.steps))
            for cb in self.callbacks:
                cb.on_checkpoint(self, folder)
        d.barrier()
        return folder

    def resume(self, folder: Path | None = None) -> bool:
        """Restore the latest complete checkpoint (or ``folder``); False when there is none."""
        d = self.deployer
        if folder is None:
            if self.checkpoints_dir is None:
                return False
            if d.is_main:
                ckpt.sweep(self.checkpoints_dir)
            d.barrier()
            found = list_checkpoints(self.checkpoints_dir)
            if not found:
                if self.metrics:
                    self.metrics.truncate_after(-1)
                return False
            folder = found[-1][1]
        state = ckpt.read_trainer_state(folder)
        from luminary.parallel.checkpoint import has_sharded_state, load_sharded_state

        if d.distributed or has_sharded_state(folder):
            load_sharded_state(folder, self.model, self.optimizer, d)  # reshards to this mesh (or none)
        else:
            ckpt.load_model_weights(unwrap(self.model), folder)
            self.optimizer.load_state_dict(ckpt.load_named_state(folder, "optimizer"))
        for name, obj in self.state.items():
            obj.load_state_dict(ckpt.load_named_state(folder, f"extra_{name}"))
        if hasattr(self.source, "load_state_dict"):
            self.source.load_state_dict(ckpt.load_named_state(folder, "extra_data_stream"))
        set_rng_state(ckpt.load_named_state(folder, "rng"))
        self.step = int(state["step"])
        self.tokens_seen = int(state.get("tokens_seen", 0))
        if self.metrics:
            self.metrics.truncate_after(self.step - 1)
        d.log(f"resumed from {folder} at step {self.step}")
        return True
