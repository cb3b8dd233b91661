"""The Deployer: where and how a run executes (Redco's ``Deployer``).

It reads a run's ``deploy:`` section (``luminary.core.deploy.DeployConfig``)
and owns everything that differs between one process and many: the device,
mixed precision, the dp × tp mesh, making the model (built on the meta device,
sharded, then each process's part filled), splitting a global batch among
data-parallel ranks, summing across them, gradient-sync control, clipping and
the full weights for saving. Trainer and Predictor call these verbs and
nothing else about distribution, so the same capability code runs in one CPU
process or under ``torchrun``; no capability reads ``WORLD_SIZE`` or builds a
mesh itself.

    deployer = Deployer.from_config(config.deploy, workdir=out)
    model = deployer.prepare_model(ModelSource.from_folder(path))   # or a model you built
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from pydantic import ValidationError

from luminary.core.config import describe_validation_error
from luminary.core.deploy import DeployConfig
from luminary.core.errors import LuminaryError
from luminary.core.modules import unwrap
from luminary.core.progress import info
from luminary.core.seed import seed_everything
from luminary.models.source import ModelSource, snapshot_buffers


def _tree_to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _tree_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tree_to(v, device) for v in obj)
    return obj


def pin_tree(obj: Any) -> Any:
    """A batch's CPU tensors in page-locked memory (so the copy to a GPU need not wait)."""
    if isinstance(obj, torch.Tensor):
        return obj.pin_memory() if obj.device.type == "cpu" else obj
    if isinstance(obj, dict):
        return {k: pin_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(pin_tree(v) for v in obj)
    return obj


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LuminaryError(f"deploy.device: {name} asked for, but this machine has no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


class Deployer:
    """Run settings shared by Trainer and Predictor, from one ``DeployConfig``.

    Args:
        workdir: run folder (``metrics.jsonl``, ``checkpoints/``); None keeps nothing on disk.
        config: the run's ``deploy:`` section; None: its defaults.
        verbose: log lines from rank 0.
        **settings: ``DeployConfig`` fields set in Python (``Deployer(tp=2, precision="fp32")``).
    """

    def __init__(self, workdir: str | Path | None = None, config: DeployConfig | None = None,
                 verbose: bool = True, **settings: Any):
        try:
            data = {**(config.model_dump() if config is not None else {}), **settings}
            config = DeployConfig.model_validate(data) if settings or config is None else config
        except ValidationError as exc:
            raise LuminaryError(describe_validation_error(exc, "deploy", data, DeployConfig)
                                .replace("deploy: ", "deploy.", 1)) from None
        self.config = config
        self.workdir = Path(workdir) if workdir is not None else None
        self.verbose = verbose
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(config.device, self.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.precision = ("bf16" if bf16_ok else "fp32") if config.precision == "auto" else config.precision
        self._check_float8()
        self._check_mesh()
        self.mesh = None
        if self.world_size > 1 or config.tp > 1:
            from luminary.parallel.mesh import init_mesh

            self.mesh = init_mesh(self.world_size, config.tp, self.device)
        seed_everything(config.seed)

    @classmethod
    def from_config(cls, config: DeployConfig, workdir: str | Path | None = None, verbose: bool = True) -> "Deployer":
        return cls(workdir, config, verbose=verbose)

    def _check_float8(self) -> None:
        float8 = self.config.float8
        if float8 and self.config.tp > 1:  # the limit is the config's, whatever the world
            raise LuminaryError("deploy.float8: not supported with deploy.tp > 1 yet; set it to false")
        if float8 is True:
            ok = self.device.type == "cuda" and torch.cuda.get_device_capability(self.device) >= (8, 9)
            if not ok:
                raise LuminaryError(f"deploy.float8: needs a GPU of compute capability 8.9 or later (Ada, Hopper); "
                                    f"this run's device is {self.device} (float8: emulated computes the same "
                                    "numbers on any device, without the speed)")

    def _check_mesh(self) -> None:
        tp, dp = self.config.tp, self.config.dp
        if self.world_size % tp:
            raise LuminaryError(f"deploy.tp: {tp} does not divide the {self.world_size} processes of this run "
                                f"(start it with torchrun --nproc-per-node {tp * (dp or 1)})")
        if dp is not None and dp * tp != self.world_size:
            raise LuminaryError(f"deploy.dp: {dp} × deploy.tp {tp} needs {dp * tp} processes, this run has "
                                f"{self.world_size} (start it with torchrun --nproc-per-node {dp * tp})")

    # --- settings read elsewhere --------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def compile(self) -> bool:
        return self.config.compile

    @property
    def tp_size(self) -> int:
        return self.config.tp

    # --- who am I --------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def dp_size(self) -> int:
        return self.world_size // self.tp_size

    @property
    def dp_rank(self) -> int:
        return self.rank // self.tp_size

    @property
    def distributed(self) -> bool:
        return self.mesh is not None

    def log(self, message: str) -> None:
        if self.verbose and self.is_main:
            info(message)

    # --- model -----------------------------------------------------------------
    def prepare_model(self, model: torch.nn.Module | ModelSource) -> torch.nn.Module:
        """The model on this process, with every lever of the deploy section applied.

        A :class:`ModelSource` is built on the meta device, parallelized there
        (``luminary.parallel.apply.parallelize``: tensor parallel, activation
        checkpointing, per-block compile, FSDP2), and only then materialised:
        each process allocates and fills its own part, and no process ever
        holds the whole model. A model already built is moved to the device,
        given rank 0's weights, then parallelized the same way.
        """
        from luminary.parallel.apply import check_overrides, parallelize

        check_overrides(self.config.tp_overrides)
        source = model if isinstance(model, ModelSource) else None
        if source is not None:
            model = source.skeleton()
            buffers = snapshot_buffers(model)
        self._check_heads(model)
        if self.config.float8:
            from luminary.train.float8 import convert_to_float8

            convert_to_float8(model, self.device)
        if source is None:
            model = model.to(self.device)
            if self.distributed:
                from luminary.parallel.apply import broadcast_parameters

                broadcast_parameters(model)
        plan = self._plan(model, source) if self.distributed and self.tp_size > 1 else None
        model = parallelize(model, self.mesh, self.config, plan, self.precision)
        if source is not None:
            source.materialize(model, self.device, buffers)
        return model

    def _check_heads(self, model: torch.nn.Module) -> None:
        if self.tp_size > 1:
            from luminary.parallel.plan import check_heads

            check_heads(model, self.tp_size)

    def _plan(self, model: torch.nn.Module, source: ModelSource | None):
        """The tensor-parallel plan, derived and checked on a two-block twin, stretched over ``model``.

        A LoRA model (peft's wrapper) gets the plan of the plain model inside it, carried onto the
        adapter layers (``luminary.parallel.adapters``); with ``tp_check``, the twin under the same
        adapters is checked by one training step too."""
        from luminary.parallel.adapters import adapter_plan, adapter_twin, peft_base
        from luminary.parallel.apply import expand_plan
        from luminary.parallel.check import check_training_step, plan_tensor_parallel
        from luminary.parallel.declared import read_declared

        # the whole ("dp", "tp") mesh: the plan is checked by one training step on it (luminary.parallel.check)
        mesh, overrides, check = self.mesh, self.config.tp_overrides, self.config.tp_check
        declared = read_declared(Path(self.config.tp_plan)) if self.config.tp_plan else None
        base = peft_base(model)
        target = model
        if base is not None:
            source = ModelSource(base.config, type(base), seed=self.seed)
            target = source.skeleton()
        config = getattr(target, "config", None)
        twin = source.twin() if source is not None else (
            ModelSource(config, type(target)).twin() if config is not None and hasattr(target, "_init_weights") else None)
        plan = None
        if twin is not None:
            twin_plan = plan_tensor_parallel(twin.to(self.device), mesh, overrides, check, declared)
            plan = expand_plan(twin_plan, twin, target)
            if plan is None:
                self.log(f"{type(target).__name__}: its blocks differ from a two-block twin's; planning on the "
                         "whole model")
        if plan is None:
            whole = source.build(self.device) if source is not None else target
            plan = plan_tensor_parallel(whole, mesh, overrides, check, declared)
        if base is None:
            return plan
        if check:
            adapted = adapter_twin(model, twin)
            check_training_step(adapted, mesh, adapter_plan(twin_plan, adapted))
        return adapter_plan(plan, model)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_context(self) -> contextlib.AbstractContextManager:
        """What a forward pass runs inside (autocast; implicit replication under TP)."""
        if self.distributed and self.tp_size > 1:
            from luminary.parallel.apply import tp_forward_context

            stack = contextlib.ExitStack()
            stack.enter_context(self.autocast())
            stack.enter_context(tp_forward_context())
            return stack
        return self.autocast()

    # --- data ------------------------------------------------------------------
    @property
    def pin_memory(self) -> bool:
        pin = self.config.loader.pin_memory
        return self.device.type == "cuda" if pin is None else pin

    def to_device(self, batch: Any) -> Any:
        return _tree_to(batch, self.device)

    def rank_slice(self, global_batch: int) -> tuple[int, int]:
        """This rank's [start, stop) within a global batch (contiguous, equal parts)."""
        if global_batch % self.dp_size:
            raise LuminaryError(
                f"global batch {global_batch} is not divisible by the {self.dp_size} data-parallel ranks"
            )
        part = global_batch // self.dp_size
        return self.dp_rank * part, (self.dp_rank + 1) * part

    # --- collectives (identity in one process) -----------------------------------
    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over data-parallel ranks (itself in one process)."""
        if not self.distributed:
            return values
        t = values.to(self._comm_device())
        dist.all_reduce(t, group=self.dp_group())
        return t.to(values.device)

    def all_gather_objects(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.dp_size
        dist.all_gather_object(out, obj, group=self.dp_group())
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def dp_group(self):
        return self.mesh["dp"].get_group() if self.mesh is not None else None

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def gradient_sync(self, model: torch.nn.Module, enabled: bool) -> Iterator[None]:
        """Skip the gradient reduction on inner micro-batches (FSDP2)."""
        if self.distributed and hasattr(unwrap(model), "set_requires_gradient_sync"):
            unwrap(model).set_requires_gradient_sync(enabled)
        yield

    def grad_scale(self, total_count: torch.Tensor) -> torch.Tensor:
        """Factor turning accumulated per-rank gradient sums into the global mean.

        FSDP averages gradients over data-parallel ranks, so the sum over ranks is
        dp_size × that average. A tensor, so that no host sync is needed.
        """
        return (self.dp_size if self.distributed else 1) / total_count.clamp(min=1e-12)

    def clip_grad_norm(self, model: torch.nn.Module, max_norm: float | None,
                       scale: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Scale the gradients, clip them to ``max_norm``; returns the norm before clipping.

        With n = ‖scale · g‖ (global L2), every gradient is multiplied once by
        scale · min(1, max_norm / (n + 1e-6)), ``clip_grad_norm_``'s coefficient.
        """
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if self.distributed:
            from luminary.parallel.apply import clip_grad_norm_across_meshes

            return clip_grad_norm_across_meshes(grads, max_norm, scale)
        if not grads:
            return torch.zeros(())
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) * scale
        coef = scale if max_norm is None else scale * (max_norm / (norm + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, coef)
        return norm

    # --- state -------------------------------------------------------------------
    def full_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The whole model's weights on the CPU (gathered from shards when distributed)."""
        if self.distributed:
            from luminary.parallel.checkpoint import gather_full_state_dict

            return gather_full_state_dict(unwrap(model))
        return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
