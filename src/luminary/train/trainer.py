"""The Trainer: Redco's three-function training on PyTorch.

The user writes ``collate_fn(examples) -> batch`` and ``loss_fn(model, batch,
is_training) -> dict``; the Trainer does the rest: batches by global sample
index, gradient accumulation, mixed precision, clipping, the learning-rate
schedule, ``metrics.jsonl`` (and the other sinks of ``deploy.log``),
checkpoints and exact resume.

``loss_fn`` returns one shape: ``{"loss": mean, "count": n, **scalars}``.
``loss`` is the mean over the ``count`` items of its micro-batch (target
tokens, pairs, sequences; ``count`` defaults to 1), and every other entry is
a scalar to log. The Trainer backpropagates ``loss × count`` and divides the
accumulated gradients by the global count, so the update uses the mean over
all items of the global batch however they fall into micro-batches and ranks
(torchtune #2307: normalise by the global count, in one place).

With ``deploy.loader.prefetch`` the next micro-batch (the next step's first,
too) is collated in a worker thread while the current one runs, and pinned
when the device is a GPU; ``collate_fn`` must therefore not draw from the
global RNGs (seed a generator per example instead).

One process on the CPU (from the repository root):
    python -c "from luminary.train import Trainer"   # see docs/train.md
Under torchrun the same code runs data- and tensor-parallel (luminary.parallel).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from luminary.core.deploy import CheckpointPolicy
from luminary.core.errors import Interrupted, LuminaryError
from luminary.core.io import atomic_write_text
from luminary.core.modules import unwrap
from luminary.core.progress import progress_bar
from luminary.core.runs import MetricsLog, checkpoint_name, list_checkpoints
from luminary.core.seed import rng_state, set_rng_state
from luminary.models.source import ModelSource
from luminary.train import checkpoint as ckpt
from luminary.train.data import as_source, batch_hash, example_digest
from luminary.train.deployer import Deployer, pin_tree
from luminary.train.optim import build_optimizer
from luminary.train.sinks import Sinks
from luminary.train.tracking import MetricWatch


@dataclass
class Evaluation:
    """What ``fit`` evaluates, and when.

    Every ``every`` steps and after the last one: the mean of ``loss_fn(model,
    batch, False)`` over ``examples`` (weighted by count), logged as
    ``eval_loss`` and ``eval_<scalar>``; with a ``predictor`` and a
    ``metric_fn(examples, predictions) -> {name: value}``, those metrics too.
    ``every`` None: after the last step only.
    """

    examples: Sequence[Any]
    every: int | None = None
    batch_size: int | None = None  # default: the training per-device batch size
    predictor: Any = None
    metric_fn: Callable[[Sequence[Any], list[Any]], dict[str, float]] | None = None

    def due(self, step: int, last_step: int) -> bool:
        return step == last_step or (self.every is not None and step % self.every == 0)


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
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"loss_fn must return a dict {{'loss': mean, 'count': n, ...}}, got {type(out).__name__}")
    extra = {k: v for k, v in out.items() if k not in ("loss", "count")}
    return out["loss"], out.get("count", 1.0), extra


TALLY = "tally"  # a collated batch's counts by name (same names in every batch), summed into the step's record


def count_tokens(batch: Any) -> int:
    """Tokens in a collated batch: its attention mask's sum, else its input ids."""
    if isinstance(batch, dict):
        if "attention_mask" in batch and isinstance(batch["attention_mask"], torch.Tensor):
            return int(batch["attention_mask"].sum())
        if "input_ids" in batch and isinstance(batch["input_ids"], torch.Tensor):
            return batch["input_ids"].numel()
    return 0


class Prefetcher:
    """Collates micro-batches ahead in a worker thread (and pins them for a GPU).

    ``submit(examples)`` starts collating a micro-batch that comes later;
    ``get(examples)`` returns it (the same list object), or collates it now.
    """

    def __init__(self, collate_fn: Callable[[list[Any]], Any], pin: bool, enabled: bool):
        self.collate_fn, self.pin, self.enabled = collate_fn, pin, enabled
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, tuple[list[Any], Future]] = {}

    def _make(self, examples: list[Any]) -> tuple[Any, int, dict[str, int]]:
        batch = self.collate_fn(examples)
        tally = (batch.pop(TALLY, None) or {}) if isinstance(batch, dict) else {}
        tokens = count_tokens(batch)
        return (pin_tree(batch) if self.pin else batch), tokens, tally

    def submit(self, examples: list[Any] | None) -> None:
        if not self.enabled or examples is None:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="luminary-collate")
        self._ahead[id(examples)] = (examples, self._pool.submit(self._make, examples))

    def get(self, examples: list[Any]) -> tuple[Any, int, dict[str, int]]:
        """(batch, its tokens, its tally) for ``examples``: the prefetched one if it is this, else made now."""
        ahead = self._ahead.pop(id(examples), None)
        if ahead is not None and ahead[0] is examples:
            return ahead[1].result()
        return self._make(examples)

    def close(self) -> None:
        """Drop what was collated ahead and stop the worker (a later ``submit`` starts another)."""
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class Trainer:
    """Fits ``model`` with ``loss_fn`` on batches made by ``collate_fn``.

    Args:
        deployer: run settings (device, precision, workdir, mesh; ``Deployer.from_config``).
        collate_fn: list of examples -> batch (tensors moved to the device for you).
        loss_fn: (model, batch, is_training) -> ``{"loss", "count", ...}`` (see module docstring).
        model: a ``torch.nn.Module``, or a ``ModelSource`` (built on the meta device, each
            process making only its part); a transformers model is saved with ``save_pretrained``.
        optimizer: an optimizer, an ``OptimizerConfig``, a callable model -> optimizer, or None
            for AdamW defaults.
        lr_schedule: step -> learning rate; multiplied by each group's ``lr_mult``.
        accumulate_grad_batches: micro-batches per optimizer update.
        max_grad_norm: clip to this global L2 norm (None: no clipping; the norm is logged anyway).
        tokenizer: saved into every checkpoint when given.
        state: extra stateful objects (``state_dict``/``load_state_dict``) checkpointed with the run.
        callbacks: :class:`Callback` instances.
        compile_loss: with ``deploy.compile`` in one process, compile ``loss_fn`` whole (the model's
            blocks inlined); False for a loss that generates or leaves the tensor world (SQL samples
            with ``generate``), whose blocks alone are then compiled.
    """

    def __init__(
        self,
        deployer: Deployer,
        collate_fn: Callable[[list[Any]], Any],
        loss_fn: Callable[..., Any],
        model: torch.nn.Module | ModelSource,
        optimizer: Any = None,
        lr_schedule: Callable[[int], float] | None = None,
        accumulate_grad_batches: int = 1,
        max_grad_norm: float | None = 1.0,
        tokenizer: Any = None,
        state: dict[str, Any] | None = None,
        callbacks: Iterable[Callback] = (),
        compile_loss: bool = True,
    ):
        if accumulate_grad_batches < 1:
            raise LuminaryError("accumulate_grad_batches must be >= 1")
        self.deployer = deployer
        self.collate_fn = collate_fn
        # with compile in one process, the loss is compiled around the model: one graph, the compiled
        # blocks inlined and the cross-entropy included; under a mesh only the blocks are (FSDP2's hooks stay out)
        whole = deployer.compile and compile_loss and not deployer.distributed
        if whole:
            from luminary.parallel.recompute import compile_around_checkpoints

            loss_fn = compile_around_checkpoints(loss_fn)
        self.loss_fn = loss_fn
        self.model = deployer.prepare_model(model)
        if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = optimizer(unwrap(self.model))
        if not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = build_optimizer(unwrap(self.model), optimizer)
        self.optimizer = optimizer
        base_lr = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_mult", 1.0)
        self.lr_schedule = lr_schedule or (lambda step: base_lr)
        self.accumulate_grad_batches = accumulate_grad_batches
        self.max_grad_norm = max_grad_norm
        self.tokenizer = tokenizer
        self.state = dict(state or {})
        self.callbacks = list(callbacks)
        self.card: Callable[[int], str] | None = None  # step -> each checkpoint's README.md (fit_run's card)
        self.step = 0
        self.tokens_seen = 0
        self.tallies_seen: dict[str, int] = {}  # the batches' tallies summed over the run
        self.source: Any = None
        self.metrics: MetricsLog | None = None
        self.sinks: Sinks | None = None
        self.stop_signal: int | None = None  # set by SIGINT / SIGTERM during fit
        self.stop_agreed = False
        self.best_watch: MetricWatch | None = None  # deploy.checkpoints.best (set by fit)
        self.best_latest: float | None = None  # its metric's latest value
        self.stop_watch: MetricWatch | None = None  # deploy.early_stopping
        self.stopped_early = False
        loader = deployer.config.loader
        self.prefetcher = Prefetcher(collate_fn, deployer.pin_memory, loader.prefetch)

    # --- paths -------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path | None:
        return self.deployer.workdir / "checkpoints" if self.deployer.workdir else None

    # --- one optimizer update ------------------------------------------------------
    def split(self, examples: list[Any]) -> list[list[Any]]:
        """A step's examples as its micro-batches."""
        size = math.ceil(len(examples) / self.accumulate_grad_batches)
        return [examples[i : i + size] for i in range(0, len(examples), size)]

    def train_step(self, examples: list[Any]) -> dict[str, Any]:
        """Forward/backward over the micro-batches of ``examples``, clip, update. Returns the step's record."""
        return self._step(self.split(examples))

    def _step(self, micro_batches: list[list[Any]], upcoming: list[Any] | None = None) -> dict[str, Any]:
        """One update over ``micro_batches``; ``upcoming``: the micro-batch after the last, collated ahead."""
        d, model = self.deployer, self.model
        lr = self.lr_schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        tokens = 0
        tallies: dict[str, float] = {}
        for i, micro in enumerate(micro_batches):
            batch, n_tokens, tally = self.prefetcher.get(micro)
            self.prefetcher.submit(micro_batches[i + 1] if i + 1 < len(micro_batches) else upcoming)
            tokens += n_tokens
            for name, n in tally.items():
                tallies[name] = tallies.get(name, 0.0) + float(n)
            batch = d.to_device(batch)
            with d.gradient_sync(model, i == len(micro_batches) - 1), d.forward_context():
                loss, count, extra = unpack_loss(self.loss_fn(model, batch, True))
            count = torch.as_tensor(count, dtype=torch.float32, device=loss.device)
            (loss * count).backward()
            for key, value in {"loss": loss.detach(), **extra}.items():
                sums[key] = sums.get(key, 0.0) + torch.as_tensor(value, device=loss.device).float() * count
            sums["count"] = sums.get("count", 0.0) + count
        sums["tokens"] = torch.tensor(float(tokens), device=loss.device)
        for name, n in tallies.items():  # every rank has the same names: the collate function gives them all
            sums[f"{TALLY}\0{name}"] = torch.tensor(n, device=loss.device)
        # a stop asked for by a signal travels with the step's sums: every rank stops after the same step
        sums["stop"] = torch.tensor(float(self.stop_signal is not None), device=loss.device)
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
        tally = {key.split("\0", 1)[1]: int(total.pop(key)) for key in list(total) if key.startswith(f"{TALLY}\0")}
        self.stop_agreed = total.pop("stop") > 0
        if not math.isfinite(total["loss"]) or not math.isfinite(norm):
            raise LuminaryError(f"step {self.step}: loss or gradient norm is not finite (lower the learning rate?)")
        record = {"step": self.step, "lr": lr, "grad_norm": norm, "tokens": tokens}
        record.update({k: v / count for k, v in total.items()})
        if tally:
            record[TALLY] = tally
        return record

    # --- the loop --------------------------------------------------------------------
    def fit(
        self,
        train_examples: Any,
        per_device_batch_size: int,
        n_epochs: float | None = None,
        max_steps: int | None = None,
        evaluation: Evaluation | None = None,
        checkpoint: CheckpointPolicy | None = None,
        resume: bool | str | Path = True,
        shuffle: bool = True,
        config: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Train until ``max_steps`` (or ``n_epochs`` over a list); returns the step records.

        The global batch is ``per_device_batch_size × accumulate_grad_batches ×
        data-parallel ranks``; step N reads samples [N·B, (N+1)·B).
        ``checkpoint``: when to save (default: the deploy section's policy);
        ``config``: the run's resolved config, given to the W&B sink.
        """
        d = self.deployer
        if per_device_batch_size < 1:
            raise LuminaryError("per_device_batch_size must be >= 1")
        self.source = as_source(train_examples, d.seed, shuffle)
        global_batch = per_device_batch_size * self.accumulate_grad_batches * d.dp_size
        last_step = self._total_steps(n_epochs, max_steps, global_batch)
        policy = checkpoint or d.config.checkpoints
        due = set(policy.due_steps(last_step))
        self.best_watch = MetricWatch(policy.best, "deploy.checkpoints.best") if policy.best else None
        stopping = d.config.early_stopping
        self.stop_watch = MetricWatch(stopping, "deploy.early_stopping", stopping.min_delta) if stopping else None
        if d.workdir is not None:
            self.metrics = MetricsLog(d.workdir / "metrics.jsonl", enabled=d.is_main)
            if resume:
                self.resume(None if resume is True else Path(resume))
            self.sinks = Sinks(self.metrics, d.config.log, self.step, d.config.wandb.project, d.config.wandb.mode,
                               config)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        records: list[dict[str, Any]] = []
        look_ahead = not hasattr(self.source, "state_dict")  # a stream's position is its state: read in order
        pending: list[list[Any]] | None = None
        try:
            with progress_bar("train", last_step) as bar, self._stop_on_signals():
                bar.advance(self.step)
                while self.step < last_step and not self.stopped_early:
                    for cb in self.callbacks:
                        cb.on_step_start(self, self.step)
                    t0 = time.perf_counter()
                    examples = pending if pending is not None else self._examples(self.step, global_batch)
                    if examples is None:
                        break  # a finite stream ran dry
                    pending = self._examples(self.step + 1, global_batch) \
                        if look_ahead and self.step + 1 < last_step else None
                    flat = [e for micro in examples for e in micro]
                    digests = [example_digest(e) for e in flat]
                    record = self._step(examples, upcoming=pending[0] if pending else None)
                    record["batch_sha256"] = batch_hash([g for part in d.all_gather_objects(digests) for g in part])
                    self.step += 1
                    self.tokens_seen += record["tokens"]
                    for name, n in record.get(TALLY, {}).items():
                        self.tallies_seen[name] = self.tallies_seen.get(name, 0) + n
                    if evaluation is not None and evaluation.due(self.step, last_step):
                        record.update(self._evaluate(evaluation, per_device_batch_size))
                    elapsed = time.perf_counter() - t0
                    record["tokens_per_s"] = record["tokens"] / elapsed if elapsed > 0 else 0.0
                    for cb in self.callbacks:
                        cb.on_step_end(self, record)
                    self._watch(record)
                    if self.sinks:
                        self.sinks.write(record)
                    records.append(record)
                    bar.advance(1, info=f"loss {record['loss']:.4f}")
                    if d.workdir is not None and (self.step in due or self.stopped_early):
                        self.save(policy)
                    if self.stopped_early:
                        d.log(f"early stopping at step {self.step}: {self.stop_watch.config.metric} has not "
                              f"improved on {self.stop_watch.best:.6g} (step {self.stop_watch.best_step}) for "
                              f"{self.stop_watch.stale} evaluations")
                    if self.stop_agreed:
                        self._stop(policy, saved=self.step in due)
        finally:
            self.prefetcher.close()
            if self.sinks:
                self.sinks.close()
        return records

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM finish the step, save and stop (:meth:`_stop`); a second one stops at once.

        A preempted cluster job gets SIGTERM and a grace period: the steps since
        the last checkpoint are kept. Only the main thread can take signals; in
        another thread fit runs without these handlers.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.stop_signal is not None:  # the second signal: now
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)
            self.stop_signal = signum
            self.deployer.log(f"{signal.Signals(signum).name}: stopping after this step (again to stop at once)")

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _watch(self, record: dict[str, Any]) -> None:
        """Follow the best checkpoint's metric and early stopping's on this step's record."""
        if self.best_watch is not None:
            value = self.best_watch.value(record)
            if value is not None:
                self.best_latest = value
        if self.stop_watch is not None:
            value = self.stop_watch.value(record)
            if value is not None:
                self.stop_watch.update(value, self.step)
                self.stopped_early = self.stop_watch.stale >= self.stop_watch.config.patience

    def _stop(self, policy: CheckpointPolicy, saved: bool) -> None:
        """Save the step reached (unless just saved) and end the run with :class:`Interrupted`."""
        d = self.deployer
        folder = None
        if d.workdir is not None:
            folder = self.checkpoints_dir / checkpoint_name(self.step) if saved else self.save(policy)
        signum = self.stop_signal or signal.SIGTERM  # another rank's signal, when this one got none
        raise Interrupted(signum, self.step, folder)

    def _examples(self, step: int, global_batch: int) -> list[list[Any]] | None:
        """This rank's micro-batches of ``step`` (None when a finite stream has run dry)."""
        first = step * global_batch
        lo, hi = self.deployer.rank_slice(global_batch)
        examples = self.source.samples(first + lo, first + hi)
        return self.split(examples) if len(examples) == hi - lo else None

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
        chunks = [mine[b * per_device_batch_size : (b + 1) * per_device_batch_size] for b in range(n_batches)]
        chunks = [c or list(examples[:1]) for c in chunks]  # ranks run equal forwards; an empty part runs a copy
        sums: dict[str, float] = {"loss": 0.0, "count": 0.0}
        with torch.no_grad():
            for b, chunk in enumerate(chunks):
                batch, _, _ = self.prefetcher.get(chunk)
                self.prefetcher.submit(chunks[b + 1] if b + 1 < len(chunks) else None)
                with d.forward_context():
                    loss, count, extra = unpack_loss(self.loss_fn(model, d.to_device(batch), False))
                if b * per_device_batch_size < len(mine):
                    count = float(count)
                    for k, v in {"loss": loss, **extra}.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * count
                    sums["count"] += count
        keys = sorted(sums)
        totals = dict(zip(keys, d.all_reduce_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64)).tolist()))
        count = max(totals.pop("count"), 1e-12)
        return {k: v / count for k, v in totals.items()}

    def _evaluate(self, evaluation: Evaluation, per_device_batch_size: int) -> dict[str, float]:
        batch_size = evaluation.batch_size or per_device_batch_size
        out = {f"eval_{k}": v for k, v in self.evaluate(evaluation.examples, batch_size).items()}
        if evaluation.predictor is not None and evaluation.metric_fn is not None:
            preds = evaluation.predictor.predict(self.model, evaluation.examples, batch_size)
            out.update({f"eval_{k}": float(v) for k, v in evaluation.metric_fn(evaluation.examples, preds).items()})
        return out

    # --- checkpoints -------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step": self.step, "tokens_seen": self.tokens_seen}
        if self.tallies_seen:
            state["tallies_seen"] = dict(self.tallies_seen)
        if self.best_watch is not None:
            state["best_checkpoint"] = {**self.best_watch.state_dict(), "latest": self.best_latest}
        if self.stop_watch is not None:
            state["early_stopping"] = {**self.stop_watch.state_dict(), "stopped": self.stopped_early}
        return state

    def save(self, policy: CheckpointPolicy | None = None) -> Path | None:
        """Write ``checkpoints/step_NNNNNN`` for the current step (collective)."""
        d = self.deployer
        if self.checkpoints_dir is None:
            return None
        folder = self.checkpoints_dir / checkpoint_name(self.step)
        new_best = (self.best_watch is not None and self.best_latest is not None
                    and self.best_watch.update(self.best_latest, self.step))
        if self.sinks:
            self.sinks.sync()
        weights = d.full_state_dict(self.model)
        optimizer_state = None if d.distributed else self.optimizer.state_dict()  # under a mesh: in the shards
        extra = {name: obj.state_dict() for name, obj in self.state.items()}
        if hasattr(self.source, "state_dict"):
            extra["data_stream"] = self.source.state_dict()

        def write(target: Path) -> None:
            ckpt.save_checkpoint(target, unwrap(self.model), weights, self.trainer_state(), optimizer_state,
                                 rng_state(), extra, self.tokenizer, self.card(self.step) if self.card else None)

        if d.distributed:
            from luminary.parallel.checkpoint import save_distributed_checkpoint

            save_distributed_checkpoint(folder, self.model, self.optimizer, d, write)
        elif d.is_main:
            write(folder)
        if d.is_main:
            if new_best:
                watch = self.best_watch
                atomic_write_text(self.checkpoints_dir / "best.json", json.dumps(
                    {"metric": watch.config.metric, "mode": watch.config.mode, "value": watch.best,
                     "step": watch.best_step, "checkpoint": checkpoint_name(watch.best_step)}, indent=2) + "\n")
            if policy is not None:
                best = {self.best_watch.best_step} if self.best_watch and self.best_watch.best_step else set()
                ckpt.prune_checkpoints(self.checkpoints_dir, policy.keep_last, set(policy.steps) | best)
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
        self.tallies_seen = {k: int(v) for k, v in state.get("tallies_seen", {}).items()}
        if self.best_watch is not None and "best_checkpoint" in state:
            self.best_watch.load_state_dict(state["best_checkpoint"])
            self.best_latest = state["best_checkpoint"].get("latest")
        if self.stop_watch is not None and "early_stopping" in state:
            self.stop_watch.load_state_dict(state["early_stopping"])
            self.stopped_early = bool(state["early_stopping"].get("stopped"))
        if self.metrics:
            self.metrics.truncate_after(self.step - 1)
        d.log(f"resumed from {folder} at step {self.step}")
        return True
