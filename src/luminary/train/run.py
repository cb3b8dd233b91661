"""The one path from a capability's config to a fitted model.

A capability supplies its model (usually a :class:`ModelSource`), its
``collate_fn`` and ``loss_fn``, its data and its loop settings; these two
functions do the rest, the same way for all of them:

    deployer = start_run(out, config.deploy, config, resume=resume, needs=CAUSAL_LM)
    ...                                      # data that may need the deployer (rank 0 prepares)
    result = fit_run(deployer, model, collate_fn, loss_fn, train_examples,
                     per_device_batch_size=8, max_steps=100, optimizer=..., schedule=...)

``start_run`` refuses what the deploy section asks and the capability cannot
honour (one line naming ``deploy.<key>``), refuses to write into a run folder
that is not being resumed, makes the Deployer (device, precision, mesh) and
writes ``run.json``, in that order, so bad input leaves nothing on disk.
``fit_run`` computes the steps, builds the optimizer and the schedule, the
Trainer and its checkpoint policy, and fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import BaseModel

from luminary.core.config import dump_config
from luminary.core.deploy import CheckpointPolicy, DeployConfig
from luminary.core.errors import LuminaryError
from luminary.core.io import read_json
from luminary.core.locks import acquire, release
from luminary.core.runs import write_run_json
from luminary.train.deployer import Deployer
from luminary.train.schedules import ScheduleConfig, build_schedule
from luminary.train.trainer import Callback, Evaluation, Trainer

CAUSAL_LM = frozenset({"fused_cross_entropy"})  # what only a causal LM's loss can honour


@dataclass
class FitResult:
    records: list[dict[str, Any]]
    trainer: Trainer

    @property
    def deployer(self) -> Deployer:
        return self.trainer.deployer


def check_deploy(deploy: DeployConfig, needs: Iterable[str] = ()) -> None:
    """Refuse deploy settings the capability cannot honour, before anything starts or is written.

    ``needs``: the optional levers this capability's loss supports (``CAUSAL_LM``:
    the fused head). Everything else (device, precision, compile, checkpointing,
    float8, the mesh) any model trained through the Trainer can take.
    """
    needs = set(needs)
    if deploy.fused_cross_entropy:
        if "fused_cross_entropy" not in needs:
            raise LuminaryError("deploy.fused_cross_entropy: this capability's loss is not a causal LM's "
                                "next-token cross-entropy; set it to false")
        if deploy.tp > 1 or (deploy.dp or 1) > 1 or _world_size() > 1:
            raise LuminaryError("deploy.fused_cross_entropy: not supported with deploy.tp > 1 or under "
                                "torchrun yet; set it to false")


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def start_run(out: str | Path, deploy: DeployConfig, config: BaseModel | dict[str, Any], resume: bool = False,
              needs: Iterable[str] = (), info: dict[str, Any] | None = None, model_config: Any = None,
              check: Callable[[Deployer], None] | None = None,
              upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Deployer:
    """Check, make the Deployer, create the run folder and write ``run.json`` (rank 0).

    ``model_config``: the model's config, checked against the mesh (every head
    count must divide by ``deploy.tp``) before any process group starts;
    ``check(deployer)``: the capability's own checks that need the mesh, before anything is written;
    ``upgrade``: see :func:`check_same_run`.
    """
    out = Path(out)
    check_deploy(deploy, needs)
    if model_config is not None and deploy.tp > 1:
        from luminary.parallel.plan import check_heads

        check_heads(model_config, deploy.tp)
    if out.exists() and not out.is_dir():
        raise LuminaryError(f"--out: {out} is a file, not a run folder")
    if out.exists() and any(out.iterdir()) and not resume:
        raise LuminaryError(f"{out}: run folder exists; pass --resume to continue it or choose another --out")
    deployer = Deployer.from_config(deploy, workdir=out)
    if check is not None:
        check(deployer)
    refused = None
    if deployer.is_main:  # one writer per run folder (luminary.core.locks); released when fit_run ends
        try:
            acquire(out, "run folder")
            if resume:
                check_same_run(out, config, upgrade)
        except LuminaryError as exc:
            refused = str(exc)
    refused = deployer.broadcast_object(refused)
    if refused:
        release(out)  # where this process took it before the refusal
        raise LuminaryError(refused)
    if deployer.is_main:
        out.mkdir(parents=True, exist_ok=True)
        resolved = dump_config(config) if isinstance(config, BaseModel) else config
        write_run_json(out, resolved, deploy.seed, info)
    deployer.barrier()
    return deployer


# deploy keys a resumed run may change: where and how fast it runs, not what it computes from
RESUMABLE = ("device", "dp", "tp", "tp_overrides", "compile", "activation_checkpointing", "precision",
             "checkpoints", "log", "wandb", "loader")


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if path == "deploy" and key in RESUMABLE:
                continue
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if a == b else f"{path or '(root)'} is {a!r} there and {b!r} here"


def check_same_run(out: Path, config: BaseModel | dict[str, Any],
                   upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """``--resume`` continues this config's own run only, never another run's folder.

    The folder's ``run.json`` must hold the same resolved config, but for the
    deploy keys in :data:`RESUMABLE` (a run may resume on another mesh or
    device); a folder with files and no ``run.json`` is not a run to continue.
    ``upgrade`` brings a ``run.json`` an older luminary wrote into today's shape.
    """
    if not out.is_dir() or not any(out.iterdir()):
        return
    run_json = out / "run.json"
    if not run_json.is_file():
        raise LuminaryError(f"{out}: holds files but no run.json: not a run this config can continue "
                            "(choose another --out)")
    recorded = read_json(run_json).get("config")
    if not isinstance(recorded, dict):
        raise LuminaryError(f"{run_json}: has no config: not a luminary run folder (choose another --out)")
    recorded = upgrade(recorded) if upgrade else recorded
    if isinstance(config, BaseModel):  # both resolved: a key added since, with its default, is no difference
        try:
            recorded = dump_config(type(config).model_validate(recorded))
        except ValueError:
            pass  # compared as written: the first difference names what no longer fits
        resolved = dump_config(config)
    else:
        resolved = config
    difference = _first_difference(recorded, resolved)
    if difference:
        raise LuminaryError(f"{run_json}: {difference}; --resume continues the same run only "
                            "(choose another --out)")


def total_steps(deployer: Deployer, n_examples: int, per_device_batch_size: int, accumulate_grad_batches: int,
                max_steps: int | None, n_epochs: float | None) -> int:
    """``max_steps``, else ⌈n_epochs · examples / global batch⌉ (at least one)."""
    if max_steps is not None:
        return max_steps
    if n_epochs is None:
        raise LuminaryError("give max_steps or n_epochs")
    global_batch = per_device_batch_size * accumulate_grad_batches * deployer.dp_size
    return max(1, math.ceil(n_epochs * n_examples / global_batch))


def fit_run(
    deployer: Deployer,
    model: Any,
    collate_fn: Callable[[list[Any]], Any],
    loss_fn: Callable[..., Any],
    train_examples: Any,
    per_device_batch_size: int,
    accumulate_grad_batches: int = 1,
    global_batch: int | None = None,
    max_steps: int | None = None,
    n_epochs: float | None = None,
    optimizer: Any = None,
    schedule: ScheduleConfig | Callable[[int], Callable[[int], float]] | None = None,
    max_grad_norm: float | None = 1.0,
    evaluation: Evaluation | None = None,
    tokenizer: Any = None,
    state: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint: CheckpointPolicy | None = None,
    resume: bool = False,
    compile_loss: bool = True,
    card: Callable[[int], str] | None = None,
) -> FitResult:
    """Build the Trainer from the pieces and fit.

    ``global_batch``: sequences per update, fixed whatever the world size
    (pretraining); the accumulation is then global / (per-device × dp ranks).
    ``schedule``: a ``ScheduleConfig`` over the run's steps, or a function of
    the total steps returning ``step -> lr``; None: the optimizer's rate.
    ``checkpoint``: default ``deploy.checkpoints``. ``card``: step -> the README.md of each checkpoint.
    """
    if global_batch is not None:
        per_update = per_device_batch_size * deployer.dp_size
        if global_batch % per_update:
            raise LuminaryError(f"train.global_batch {global_batch} is not a multiple of micro_batch × "
                                f"data-parallel ranks ({per_device_batch_size} × {deployer.dp_size})")
        accumulate_grad_batches = global_batch // per_update
    n = getattr(train_examples, "samples_per_epoch", None) or (len(train_examples) if hasattr(train_examples, "__len__") else 0)
    total = total_steps(deployer, n, per_device_batch_size, accumulate_grad_batches, max_steps, n_epochs)
    if isinstance(schedule, ScheduleConfig):
        lr_schedule = build_schedule(schedule, total)
    else:
        lr_schedule = schedule(total) if schedule is not None else None
    trainer = Trainer(deployer, collate_fn, loss_fn, model, optimizer=optimizer, lr_schedule=lr_schedule,
                      accumulate_grad_batches=accumulate_grad_batches, max_grad_norm=max_grad_norm,
                      tokenizer=tokenizer, state=state, callbacks=callbacks, compile_loss=compile_loss)
    trainer.card = card
    if deployer.config.fused_cross_entropy:
        from luminary.train.fused_ce import check_fusable

        check_fusable(trainer.model, "deploy.fused_cross_entropy")
    run = _read_config(deployer) if "wandb" in deployer.config.log else None
    try:
        records = trainer.fit(train_examples, per_device_batch_size, max_steps=total, evaluation=evaluation,
                              checkpoint=checkpoint, resume=resume, config=run)
    finally:  # the run folder is free again (for a Python session that goes on to other work)
        if deployer.workdir is not None:
            release(deployer.workdir)
    return FitResult(records, trainer)


def _read_config(deployer: Deployer) -> dict[str, Any] | None:
    """The resolved config of the run folder (for the W&B sink)."""
    path = deployer.workdir / "run.json" if deployer.workdir else None
    if path is None or not path.is_file():
        return None
    return read_json(path).get("config")
