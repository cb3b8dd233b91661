"""Expert banks: mixture-of-experts weights kept as 3-D tensors (experts, ·, ·).

transformers stores a MoE layer's experts as one module with 3-D parameters
(Mixtral: ``gate_up_proj`` (E, 2F, D), ``down_proj`` (E, D, F)) and runs them
through ``F.linear``, ``matmul`` or grouped GEMMs. Redco's rule 2 applies inside
the bank as it does between layers: the parameter that meets the bank's input
splits its intermediate dimension (column), the one that meets what the first
produced splits the same dimension (row), and the bank's output is summed over
ranks (Megatron's MoE tensor parallelism; transformers' ``moe_tp_experts``).
Which parameter comes first is read from the data flow (:class:`ExpertFlow`);
which dimension is the intermediate one from the sizes (the one that is not
the hidden size D); whether a fused ``[gate; up]`` must be split gate and up
apart (packed) is decided numerically (``luminary.parallel.simulate``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DeviceMesh, DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ParallelStyle
from torch.distributed.tensor.placement_types import _StridedShard
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

STAGE = "_luminary_expert_stage"  # 1: the bank's input, 2: a column's output, 3: a row's output
ORIGIN = "_luminary_expert_param"


def bank_params(module: nn.Module) -> list[str]:
    """Names of a module's own 3-D parameters (experts, out, in) or (experts, in, out)."""
    return [n for n, p in module.named_parameters(recurse=False) if p.ndim == 3]


@dataclass
class Bank:
    hidden: int  # D, the last dimension of the bank's input
    roles: dict[str, str] = field(default_factory=dict)  # parameter -> column | row


class ExpertFlow(TorchFunctionMode):
    """Inside one bank's forward: which parameter meets the input, which meets the first one's output."""

    def __init__(self, module: nn.Module, x: torch.Tensor):
        super().__init__()
        self.params = {id(getattr(module, n)): n for n in bank_params(module)}
        self.bank = Bank(hidden=x.shape[-1])
        self.x = x

    def __enter__(self):
        setattr(self.x, STAGE, 1)
        return super().__enter__()

    def __exit__(self, *exc):
        if hasattr(self.x, STAGE):
            delattr(self.x, STAGE)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves = [t for t in tree_leaves((args, kwargs or {})) if isinstance(t, torch.Tensor)]
        origin = next((self.params.get(id(t)) or getattr(t, ORIGIN, None) for t in leaves
                       if id(t) in self.params or hasattr(t, ORIGIN)), None)
        stage = max((getattr(t, STAGE, 0) for t in leaves), default=0)
        if origin and stage in (1, 2):
            self.bank.roles.setdefault(origin, "column" if stage == 1 else "row")
            stage = 2 if self.bank.roles[origin] == "column" else 3
            origin = None
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                try:
                    if origin and not stage:
                        setattr(t, ORIGIN, origin)  # a view or slice of an expert parameter
                    elif stage:
                        setattr(t, STAGE, stage)
                except (AttributeError, RuntimeError):
                    pass
        return out


def split_candidates(module: nn.Module, bank: Bank, tp: int) -> list[dict[str, tuple[int, int]]]:
    """Ways to split the bank: parameter -> (dimension, packs), most likely first.

    The split dimension is the non-expert one that is not the hidden size (both
    when ambiguous); a column parameter k times the rows' intermediate size is
    packed k ways (gate and up split apart), or not.
    """
    columns = [n for n, r in bank.roles.items() if r == "column"]
    rows = [n for n, r in bank.roles.items() if r == "row"]
    if not columns or not rows or set(bank.roles) != set(bank_params(module)):
        return []
    options: dict[str, list[int]] = {}
    for name in bank.roles:
        shape = getattr(module, name).shape
        options[name] = [d for d in (1, 2) if shape[d] != bank.hidden] or [1, 2]
    found = []
    for dims in itertools.product(*(options[n] for n in bank.roles)):
        chosen = dict(zip(bank.roles, dims))
        inner = {getattr(module, n).shape[chosen[n]] for n in rows}
        if len(inner) != 1:
            continue
        f = inner.pop()
        sizes = {n: getattr(module, n).shape[chosen[n]] for n in columns}
        if any(s % f for s in sizes.values()) or f % tp:
            continue
        packed = {n: (chosen[n], sizes[n] // f) for n in columns}
        flat = {n: (chosen[n], 1) for n in columns}
        tail = {n: (chosen[n], 1) for n in rows}
        for cand in ({**packed, **tail}, {**flat, **tail}):
            if cand not in found:
                found.append(cand)
    return found


def local_slice(t: torch.Tensor, dim: int, packs: int, tp: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s part: each of ``packs`` equal pieces along ``dim`` split ``tp`` ways."""
    pieces = t.chunk(packs, dim=dim)
    return torch.cat([p.chunk(tp, dim=dim)[rank] for p in pieces], dim=dim)


def placement(dim: int, packs: int):
    return Shard(dim) if packs == 1 else _StridedShard(dim, split_factor=packs)


class ExpertsParallel(ParallelStyle):
    """Split an expert bank's parameters, run its code on the local parts, sum its output over ranks."""

    def __init__(self, split: dict[str, tuple[int, int]]):
        super().__init__()
        self.split = split

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        for name, (dim, packs) in self.split.items():
            p = module._parameters[name]
            module.register_parameter(name, nn.Parameter(distribute_tensor(p, device_mesh, [placement(dim, packs)]),
                                                         requires_grad=p.requires_grad))
        original, names = module.forward, list(self.split)

        def forward(*args: Any, **kwargs: Any):
            # inputs are replicated; the local work gives partial gradients, summed over ranks backward
            args = tuple(_partial_grad(a, device_mesh) for a in args)
            kwargs = {k: _partial_grad(v, device_mesh) for k, v in kwargs.items()}
            whole = {n: module._parameters[n] for n in names}
            for n in names:
                w = whole[n]
                module._parameters[n] = w.to_local() if isinstance(w, DTensor) else w
            try:
                out = original(*args, **kwargs)
            finally:
                module._parameters.update(whole)
            return DTensor.from_local(out, device_mesh, [Partial()], run_check=False).redistribute(
                device_mesh, [Replicate()]).to_local()

        module.forward = forward
        return module


def _partial_grad(t: Any, mesh: DeviceMesh) -> Any:
    if not isinstance(t, torch.Tensor) or isinstance(t, DTensor) or not t.is_floating_point() or not t.requires_grad:
        return t
    return DTensor.from_local(t, mesh, [Replicate()], run_check=False).to_local(grad_placements=[Partial()])
