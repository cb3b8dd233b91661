"""Applying the levers to a plain model from outside, in torchtitan's order.

``parallelize(model, mesh, config, plan)`` is what the Deployer calls, in
this order (torchtitan's ``parallelize_llama``: ``apply_tp``, ``apply_ac``,
``apply_compile``, ``apply_fsdp``):

1. tensor parallel on the ``tp`` dimension: a plan's styles applied with
   ``parallelize_module``, tied weights tied again;
2. activation checkpointing of each block (``luminary.parallel.recompute``);
3. compilation of each block for training (``luminary.parallel.compile``);
4. FSDP2 on the ``dp`` dimension: ``fully_shard`` each block, then the root,
   with a ``MixedPrecisionPolicy``.

The model may be a skeleton on the meta device (``luminary.models.source``):
every step above only rewrites modules and wraps parameters, so it costs no
memory until the Deployer materialises each process's part. The plan is
derived and checked beforehand on a twin of the model with two blocks
(``luminary.parallel.check.plan_tensor_parallel``), since a plan depends on the architecture and
the widths, not on the depth or the values, and then stretched over the
model's blocks (:func:`expand_plan`).

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
from luminary.core.modules import list_blocks
from luminary.parallel.compile import apply_compile
from luminary.parallel.plan import Plan, tie_groups
from luminary.parallel.recompute import apply_activation_checkpointing
from luminary.parallel.styles import build_style, check_style
from luminary.parallel.simulate import head_table_hook

ORDER = ("tensor_parallel", "activation_checkpointing", "compile", "fsdp")  # torchtitan's, and ours


def broadcast_parameters(model: nn.Module) -> None:
    """Every rank gets rank 0's parameters and buffers (as DDP does at start)."""
    seen: set[int] = set()
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                dist.broadcast(t.data, src=0)


def check_overrides(overrides: dict[str, str]) -> None:
    for pattern, style in overrides.items():
        check_style(style, f"deploy.tp_overrides '{pattern}'")


def _signature(module: nn.Module) -> tuple:
    """What a block is made of: its modules' classes and its parameters' names and shapes."""
    return (tuple((n, type(m).__name__) for n, m in module.named_modules()),
            tuple((n, tuple(p.shape)) for n, p in module.named_parameters()))


def expand_plan(plan: Plan, twin: nn.Module, model: nn.Module) -> Plan | None:
    """The twin's plan over ``model``'s blocks: block j takes twin block min(j, last) of its stack.

    None when some block of the model is not built like its twin block (a
    model whose later blocks differ, such as dense then mixture-of-experts
    blocks), or a module outside the blocks differs: plan on the model itself then.
    """
    twin_blocks = list_blocks(twin)
    stacks: dict[str, list[str]] = {}
    for name in twin_blocks:
        stacks.setdefault(name.rsplit(".", 1)[0], []).append(name)
    source: dict[str, str] = {}  # model block -> the twin block it copies
    for name in list_blocks(model):
        stack, index = name.rsplit(".", 1)
        if stack not in stacks:
            return None
        twin_name = stacks[stack][min(int(index), len(stacks[stack]) - 1)]
        if _signature(model.get_submodule(name)) != _signature(twin.get_submodule(twin_name)):
            return None
        source[name] = twin_name
    by_twin: dict[str, list[str]] = {}
    for name, twin_name in source.items():
        by_twin.setdefault(twin_name, []).append(name)
    modules = dict(model.named_modules())
    out = Plan(plan.tp_size)
    for field in ("attributes", "head_tables"):
        for name, values in getattr(plan, field).items():
            block = next((b for b in twin_blocks if name == b or name.startswith(b + ".")), None)
            targets = [t + name[len(block):] for t in by_twin.get(block, [])] if block is not None else [name]
            for target in targets:
                if target not in modules:
                    return None
                getattr(out, field)[target] = dict(values)
    for name, entry in plan.entries.items():
        block = next((b for b in twin_blocks if name.startswith(b + ".")), None)
        if block is None:
            weight = getattr(modules.get(name), "weight", None)
            if name not in modules or (weight is not None and tuple(weight.shape) != entry.shape):
                return None
            out.entries[name] = entry
            continue
        for target in by_twin.get(block, []):
            out.entries[target + name[len(block):]] = entry
    return out


def eager_attention(model: nn.Module) -> None:
    """Eager attention (matmuls) in every config of ``model``.

    DTensor has no sharding rule for the CPU flash-attention kernel and
    decomposes it op by op, for minutes. ``set_attn_implementation`` is not
    enough for Falcon, which refuses eager attention with a warning and reads
    ``config._attn_implementation`` at each forward: so it is set there too.
    """
    if getattr(model, "_supports_attention_backend", False):  # the others warn that they cannot
        with contextlib.suppress(ValueError, ImportError):
            model.set_attn_implementation("eager")
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "_attn_implementation", None) not in (None, "eager"):
            config._attn_implementation = "eager"


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh, plan: Plan) -> None:
    """Split the modules of ``plan`` over ``tp_mesh`` and tie shared weights again."""
    if plan.needs_implicit_replication and tp_mesh.device_type == "cpu":
        eager_attention(model)
    ties = tie_groups(model)
    modules = dict(model.named_modules())
    for name, entry in plan.entries.items():
        style = build_style(entry.style, entry.kind, entry.split)
        if style is not None:
            parallelize_module(modules[name], tp_mesh, style)
    for name, values in plan.attributes.items():  # each rank's attention holds its share of the heads
        for attr, value in values.items():
            setattr(modules[name], attr, value)
    rank, size = tp_mesh.get_local_rank(), tp_mesh.size()
    for name, tables in plan.head_tables.items():  # and its rank's heads of each per-head table (ALiBi)
        modules[name].register_forward_pre_hook(head_table_hook(tables, size, lambda: rank), with_kwargs=True)
    for names in ties:  # each split made its own copy of a shared weight: share one again
        shared = modules[names[0]].weight
        for other in names[1:]:
            modules[other].weight = shared


def apply_fsdp(model: nn.Module, dp_mesh: DeviceMesh, precision: str = "fp32") -> None:
    """FSDP2: each block (element of a ModuleList) is one unit, the root holds the rest."""
    if precision == "bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    for name in list_blocks(model):
        fully_shard(model.get_submodule(name), mesh=dp_mesh, mp_policy=policy)
    fully_shard(model, mesh=dp_mesh, mp_policy=policy)


def parallelize(model: nn.Module, mesh: DeviceMesh | None, config: Any, plan: Plan | None = None,
                precision: str = "fp32") -> nn.Module:
    """The levers of ``config`` (a ``DeployConfig``) on ``model``, in :data:`ORDER`.

    1. tensor parallel on ``mesh["tp"]`` with ``plan`` (when tp > 1);
    2. activation checkpointing (``config.activation_checkpointing``);
    3. each block compiled for training (``config.compile``);
    4. FSDP2 on ``mesh["dp"]`` (under any mesh, even dp 1: every parameter then is a
       DTensor, so the optimizer's foreach kernels never mix them with plain tensors).

    ``mesh`` None: one process, steps 2 and 3 only.
    """
    if mesh is not None and mesh["tp"].size() > 1:
        if plan is None:
            raise LuminaryError("tensor parallel needs a plan (Deployer.prepare_model derives one)")
        apply_tp(model, mesh["tp"], plan)
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    if config.compile:
        apply_compile(model)
    if mesh is not None:
        apply_fsdp(model, mesh["dp"], precision)
    return model


class _ReplicatePlain(TorchFunctionMode):
    """A plain floating-point tensor that meets a DTensor becomes a replicated DTensor first.

    ``implicit_replication`` alone treats plain tensors as replicated inside
    one operator, below autograd: the backward then meets the same plain
    tensors again outside that context (rotary tables times a split query:
    "got mixed torch.Tensor and DTensor"), and the gradient of a plain
    parameter (T5's relative position bias) comes back as a DTensor where
    FSDP expects a plain one. ``DTensor.from_local`` is differentiable and its
    backward hands back a plain, replicated gradient. Boolean masks become
    replicated DTensors too: ``masked_fill`` saves its mask for the backward,
    which then meets the DTensor gradient outside the context (MPT:
    "aten.masked_fill.Scalar got mixed torch.Tensor and DTensor").
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
    """A plain floating-point tensor or a boolean mask: what autograd may save beside a DTensor."""
    return (isinstance(t, torch.Tensor) and not isinstance(t, DTensor) and t.ndim > 0
            and (t.is_floating_point() or t.dtype == torch.bool))


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
