"""The Deployer: where and how a run executes (Redco's ``Deployer``).

It owns the run folder, the seed, the device, mixed precision and compilation,
and everything that differs between one process and many: splitting a global
batch among data-parallel ranks, summing across them, gradient-sync control,
clipping and saving. Trainer and Predictor call these verbs and nothing else
about distribution, so the same user code runs in one CPU process or under
``torchrun`` (``luminary.parallel`` adds meshes, FSDP2 and tensor parallelism).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
import torch.distributed as dist

from luminary.core.errors import LuminaryError
from luminary.core.modules import unwrap
from luminary.core.progress import info
from luminary.core.seed import seed_everything


def _tree_to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _tree_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tree_to(v, device) for v in obj)
    return obj


class Deployer:
    """Run settings shared by Trainer and Predictor.

    Args:
        workdir: run folder (``metrics.jsonl``, ``checkpoints/``); None keeps nothing on disk.
        seed: seeds Python, NumPy and torch at construction.
        device: ``cpu``, ``cuda``, ...; default: CUDA when available.
        mixed_precision: ``auto`` (bf16 autocast where the device supports it), ``bf16`` or ``no``.
        compile: wrap the model with ``torch.compile``.
        activation_checkpointing: recompute each block in backward instead of keeping its
            activations (``luminary.parallel.recompute``).
        float8: the blocks' linear layers multiply in float8 while training (``luminary.train.float8``);
            not with tensor parallelism.
        tp_size: tensor-parallel degree; the rest of the world is data parallel.
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        seed: int = 0,
        device: str | None = None,
        mixed_precision: Literal["auto", "bf16", "no"] = "auto",
        compile: bool = False,
        tp_size: int = 1,
        activation_checkpointing: bool = False,
        float8: bool = False,
        verbose: bool = True,
        parallel_overrides: dict[str, str] | None = None,
    ):
        self.workdir = Path(workdir) if workdir is not None else None
        self.seed = seed
        self.compile = compile
        self.activation_checkpointing = activation_checkpointing
        self.float8 = float8
        self.verbose = verbose
        self.tp_size = tp_size
        self.parallel_overrides = parallel_overrides or {}
        if float8 and tp_size > 1:  # before the mesh: the limit is the config's, whatever the world
            raise LuminaryError("float8: not supported with tp_size > 1 yet; set it to false")
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if mixed_precision == "auto":
            bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            mixed_precision = "bf16" if bf16_ok else "no"
        self.mixed_precision = mixed_precision
        self.mesh = None
        if self.world_size > 1 or tp_size > 1:
            from luminary.parallel.mesh import init_mesh

            self.mesh = init_mesh(self.world_size, tp_size, self.device)
        seed_everything(seed)

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
    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Checkpoint activations; move to the device; under a mesh apply TP then FSDP2; then compile."""
        if self.float8:
            from luminary.train.float8 import convert_to_float8

            convert_to_float8(model, self.device)
        if self.activation_checkpointing:
            from luminary.parallel.recompute import apply_activation_checkpointing

            apply_activation_checkpointing(model)
        if self.distributed:
            from luminary.parallel.apply import parallelize

            model = parallelize(model, self.mesh, self.device, self.mixed_precision, self.parallel_overrides)
        else:
            model = model.to(self.device)
        if self.compile:
            model = torch.compile(model)
        return model

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.mixed_precision == "bf16":
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

    def to_device(self, batch: Any) -> Any:
        return _tree_to(batch, self.device)

    # --- data ------------------------------------------------------------------
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
