"""Applying parallelism to a plain model from outside, in torchtitan's order.

``parallelize`` is what the Deployer calls under a mesh:

1. move to the device and start every rank from rank 0's weights;
2. tensor parallel on the ``tp`` dimension: the automatic plan
   (``luminary.parallel.plan``) applied with ``parallelize_module``; tied
   weights tied again; the model's output on a probe input checked against
   the unsplit model (a plan that changes the numbers is an error, not a
   silent 4.853 against 4.849);
3. FSDP2 on the ``dp`` dimension: ``fully_shard`` each block, then the root,
   with a ``MixedPrecisionPolicy``.

The model file knows nothing of this (STYLE.md, take 1).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate
from torch.distributed.tensor.experimental import implicit_replication
from torch.distributed.tensor.parallel import parallelize_module
from torch.nn.utils import get_total_norm
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from luminary.core.errors import LuminaryError
from luminary.parallel.plan import Plan, auto_plan, tie_groups
from luminary.parallel.simulate import close
from luminary.parallel.styles import build_style
from luminary.parallel.probe import probe_inputs, run_probe
from luminary.parallel.trace import list_blocks


def broadcast_parameters(model: nn.Module) -> None:
    """Every rank gets rank 0's parameters and buffers (as DDP does at start)."""
    seen: set[int] = set()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                dist.broadcast(t.data, src=0)


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh, plan: Plan, probe: dict[str, Any] | None = None) -> None:
    """Split the modules of ``plan`` over ``tp_mesh``; check the output did not change."""
    probe = probe if probe is not None else probe_inputs(model)
    reference = run_probe(model, probe)
    if plan.needs_implicit_replication and tp_mesh.device_type == "cpu" and hasattr(model, "set_attn_implementation"):
        # DTensor has no sharding rule for the CPU flash-attention kernel; eager attention is matmuls
        model.set_attn_implementation("eager")
    ties = tie_groups(model)
    modules = dict(model.named_modules())
    for name, entry in plan.entries.items():
        style = build_style(entry.style, entry.kind, entry.split)
        if style is not None:
            parallelize_module(modules[name], tp_mesh, style)
    for names in ties:  # each split made its own copy of a shared weight: share one again
        shared = modules[names[0]].weight
        for other in names[1:]:
            modules[other].weight = shared
    with tp_forward_context():
        out = run_probe(model, probe)
    if not close(reference, out):
        raise LuminaryError(
            f"{type(model).__name__}: the tensor-parallel plan changes the model's output on a probe input; "
            "override the styles of the modules involved (luminary parallel plan shows the plan)"
        )


def apply_fsdp(model: nn.Module, dp_mesh: DeviceMesh, mixed_precision: str = "no") -> None:
    """FSDP2: each block (element of a ModuleList) is one unit, the root holds the rest."""
    if mixed_precision == "bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    for name in list_blocks(model):
        fully_shard(model.get_submodule(name), mesh=dp_mesh, mp_policy=policy)
    fully_shard(model, mesh=dp_mesh, mp_policy=policy)


def parallelize(model: nn.Module, mesh: DeviceMesh, device: torch.device, mixed_precision: str = "no",
                overrides: dict[str, str] | None = None) -> nn.Module:
    """Tensor parallel on ``mesh["tp"]`` (when larger than 1), then FSDP2 on ``mesh["dp"]``."""
    model = model.to(device)
    broadcast_parameters(model)
    tp = mesh["tp"].size()
    if tp > 1:
        apply_tp(model, mesh["tp"], auto_plan(model, tp, overrides))
    elif overrides:
        raise LuminaryError("parallel overrides need tp_size > 1")
    # FSDP2 even on a dp dimension of 1: every parameter then is a DTensor, so
    # the optimizer's foreach/fused kernels never mix them with plain tensors
    apply_fsdp(model, mesh["dp"], mixed_precision)
    return model


class _ReplicatePlain(TorchFunctionMode):
    """A plain floating-point tensor that meets a DTensor becomes a replicated DTensor first.

    ``implicit_replication`` alone treats plain tensors as replicated inside
    one operator, below autograd: the backward then meets the same plain
    tensors again outside that context (rotary tables times a split query:
    "got mixed torch.Tensor and DTensor"), and the gradient of a plain
    parameter (T5's relative position bias) comes back as a DTensor where
    FSDP expects a plain one. ``DTensor.from_local`` is differentiable and its
    backward hands back a plain, replicated gradient.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, spec = tree_flatten((args, kwargs))
        mesh = next((t.device_mesh for t in flat if isinstance(t, DTensor)), None)
        if mesh is not None and any(_plain_float(t) for t in flat):
            flat = [DTensor.from_local(t, mesh, [Replicate()] * mesh.ndim, run_check=False)
                    if _plain_float(t) else t for t in flat]
            args, kwargs = tree_unflatten(flat, spec)
        return func(*args, **kwargs)


def _plain_float(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and not isinstance(t, DTensor) and t.is_floating_point() and t.ndim > 0


@contextlib.contextmanager
def tp_forward_context() -> Iterator[None]:
    """What a forward runs inside under tensor parallelism.

    A DTensor output (``colwise_dtensor``) meets the model's plain tensors:
    floating-point ones (rotary tables, biases, per-head norm weights) become
    replicated DTensors, differentiably; the rest (masks, indices) are taken
    as replicated by ``implicit_replication``. With local outputs only,
    nothing changes.
    """
    with implicit_replication(), _ReplicatePlain():
        yield


def _by_mesh(tensors: Iterable[torch.Tensor]) -> dict[Any, list[torch.Tensor]]:
    """Tensors grouped by the mesh they live on (None: plain tensors)."""
    groups: dict[Any, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.device_mesh if isinstance(t, DTensor) else None, []).append(t)
    return groups


def clip_grad_norm_across_meshes(grads: list[torch.Tensor], max_norm: float | None,
                                 scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Scale and clip gradients that live on different meshes; returns the norm before clipping.

    ``clip_grad_norm_`` stacks the per-parameter norms, which fails when they
    live on different meshes (dp x tp weights, dp-only norms). So: one norm per
    mesh (a DTensor norm made whole with ``full_tensor``), combined as
    n = scale · sqrt(sum_m n_m^2); then every gradient is multiplied once by
    scale · min(1, max_norm / (n + 1e-6)), ``clip_grad_norm_``'s coefficient.
    """
    by_mesh = _by_mesh(grads)
    if not by_mesh:
        return torch.zeros(())
    norms = []
    for group in by_mesh.values():
        norm = get_total_norm(group, norm_type=2.0, foreach=True)
        norms.append((norm.full_tensor() if isinstance(norm, DTensor) else norm).float())
    device = norms[0].device
    total = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms])) * scale
    coef = scale if max_norm is None else scale * (max_norm / (total + 1e-6)).clamp(max=1.0)
    with implicit_replication():
        for group in by_mesh.values():
            torch._foreach_mul_(group, coef.to(group[0].device) if isinstance(coef, torch.Tensor) else coef)
    return total
