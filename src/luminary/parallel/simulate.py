"""Tensor parallelism simulated in one process, to check a plan numerically.

With ``use_local_output=True`` a column-split layer hands the model code a
plain tensor with 1/tp of the features. Model code that reshapes with ``-1``
heads (LLaMA) works on it; code that reshapes with the global head count
(OPT's ``view(bsz, -1, num_heads, head_dim)``), splits a fused projection by a
global size (GPT-2's ``split(embed_dim)``) or adds a bias with all heads (T5)
gives wrong numbers, sometimes with no error (specs/redco.md: TP loss 4.853
against 4.849). Names do not tell which; numbers do.

Each of ``tp`` threads plays one rank and runs the real model code on a probe
input: a column layer returns its rank's slice of the output features, a row
layer multiplies its local input by its rank's slice of the weight, and the
partial results are summed over the threads (the all-reduce). The output of
rank 0 must equal the unsplit forward. Groups whose local outputs break the
model are switched to DTensor outputs (``colwise_dtensor``), which keep global
shapes and need ``implicit_replication`` around the forward.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import types
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from luminary.parallel.experts import local_slice
from luminary.parallel.probe import output_tensors
from luminary.parallel.styles import packed
from luminary.parallel.trace import Group, dense_features, dense_kind

TIMEOUT_S = 300.0


class _AllReduce:
    """Sum over the rank threads, in rank order (the same bits on every rank)."""

    def __init__(self, n: int):
        self.slots: list[Any] = [None] * n
        self.barrier = threading.Barrier(n, timeout=TIMEOUT_S)

    def __call__(self, rank: int, value: torch.Tensor) -> torch.Tensor:
        self.slots[rank] = value
        self.barrier.wait()
        total = self.slots[0]
        for part in self.slots[1:]:
            total = total + part
        self.barrier.wait()
        return total


def _chunk(size: int, tp: int, rank: int) -> slice:
    part = size // tp
    return slice(rank * part, (rank + 1) * part)


def _local_forward(module: nn.Module, role: str, tp: int, state: threading.local, reduce: _AllReduce):
    kind = dense_kind(module)
    n_in, n_out = dense_features(module)
    original = module.forward

    def forward(self, x, *args, **kwargs):
        rank = getattr(state, "rank", None)
        if rank is None:
            return original(x, *args, **kwargs)
        w, b = self.weight, getattr(self, "bias", None)
        if role.startswith("colwise"):  # colwise, or colwise_packedK: this rank's part of each of K pieces
            packs = packed(role)
            wl = local_slice(w, 1 if kind == "conv1d" else 0, packs, tp, rank)
            bl = local_slice(b, 0, packs, tp, rank) if b is not None else None
            if kind == "conv1d":
                return x @ wl + (bl if bl is not None else 0)
            return F.linear(x, wl, bl)
        # rowwise: a local input (or a whole one from a group kept global) times this rank's rows
        rows = _chunk(n_in, tp, rank)
        local = x if x.shape[-1] == n_in // tp else x[..., rows]
        partial = local @ (w[rows] if kind == "conv1d" else w[:, rows].t())
        total = reduce(rank, partial)
        return total + b if b is not None else total

    return types.MethodType(forward, module)


def _bank_forward(module: nn.Module, split: dict[str, tuple[int, int]], tp: int, state: threading.local,
                  reduce: _AllReduce):
    """Each rank runs the bank's own code on a shallow copy holding its parts; outputs are summed."""
    copies = []
    for rank in range(tp):
        c = copy.copy(module)
        c._parameters = {n: local_slice(p, *split[n], tp, rank) if n in split else p
                         for n, p in module._parameters.items()}
        copies.append(c)
    original, cls_forward = module.forward, type(module).forward

    def forward(*args, **kwargs):
        rank = getattr(state, "rank", None)
        if rank is None:
            return original(*args, **kwargs)
        return reduce(rank, cls_forward(copies[rank], *args, **kwargs))

    return forward


@contextlib.contextmanager
def _patched(model: nn.Module, roles: dict[str, str], tp: int, state: threading.local,
             reduce: _AllReduce, banks: dict[str, dict[str, tuple[int, int]]]) -> Iterator[None]:
    modules = dict(model.named_modules())
    patched = []
    for name, split in banks.items():
        modules[name].forward = _bank_forward(modules[name], split, tp, state, reduce)
        patched.append(modules[name])
    for name, role in roles.items():
        module = modules[name]
        module.forward = _local_forward(module, role, tp, state, reduce)
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


@contextlib.contextmanager
def local_attributes(model: nn.Module, attributes: dict[str, dict[str, int]]) -> Iterator[None]:
    """Set each module's attributes to their per-rank values (``luminary.parallel.plan.head_attributes``)
    for the duration, and put the whole values back."""
    saved = []
    for name, values in attributes.items():
        module = model.get_submodule(name)
        for attr, value in values.items():
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, value)
    try:
        yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)


def slice_head_table(x: torch.Tensor, dim: int, heads: int, tp: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s heads of a per-head table whose ``dim`` is (outer × ``heads``), heads inner:
    MPT's ALiBi bias (heads, 1, T), BLOOM's (batch · heads, 1, T)."""
    return local_slice(x, dim, x.shape[dim] // heads, tp, rank)


def head_table_hook(tables: dict[str, tuple[int, int]], tp: int, rank_of):
    """A forward pre-hook (``with_kwargs``) giving a module its rank's heads of each per-head table
    it receives by keyword (``luminary.parallel.plan.head_tables``); ``rank_of()`` is the rank or None."""

    def hook(module, args, kwargs):
        rank = rank_of()
        if rank is None:
            return None
        kwargs = dict(kwargs)
        for key, (dim, heads) in tables.items():
            if isinstance(kwargs.get(key), torch.Tensor):
                kwargs[key] = slice_head_table(kwargs[key], dim, heads, tp, rank)
        return args, kwargs

    return hook


@contextlib.contextmanager
def local_head_tables(model: nn.Module, tables: dict[str, dict[str, tuple[int, int]]], tp: int,
                      state: threading.local) -> Iterator[None]:
    handles = [model.get_submodule(name).register_forward_pre_hook(
        head_table_hook(spec, tp, lambda: getattr(state, "rank", None)), with_kwargs=True)
        for name, spec in tables.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def simulate(model: nn.Module, roles: dict[str, str], tp: int, probe: dict[str, Any],
             banks: dict[str, dict[str, tuple[int, int]]] | None = None,
             attributes: dict[str, dict[str, int]] | None = None,
             tables: dict[str, dict[str, tuple[int, int]]] | None = None) -> list[torch.Tensor] | str:
    """Rank 0's output with ``roles`` (name -> colwise|rowwise) and expert ``banks`` (name -> parameter
    -> (dimension, packs)) split over ``tp`` threads, ``attributes`` (module -> attribute -> per-rank
    value: the heads a rank holds) set and per-head ``tables`` (module -> keyword -> (dimension, heads))
    sliced to each rank's heads meanwhile; or the error."""
    state = threading.local()
    reduce = _AllReduce(tp)
    results: list[Any] = [None] * tp

    def run(rank: int) -> None:
        state.rank = rank
        try:
            with torch.no_grad():
                results[rank] = [t.detach() for t in output_tensors(model(**probe))]
        except BaseException as exc:  # noqa: BLE001 - reported, and the other ranks released
            results[rank] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            reduce.barrier.abort()

    was_training = model.training
    model.eval()
    try:
        with _patched(model, roles, tp, state, reduce, banks or {}), local_attributes(model, attributes or {}), \
                local_head_tables(model, tables or {}, tp, state):
            threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in range(tp)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        model.train(was_training)
    errors = [r for r in results if isinstance(r, str) and not r.startswith("BrokenBarrierError")]
    if errors or any(isinstance(r, str) for r in results):
        return errors[0] if errors else "ranks did not finish together"
    return results[0]


def close(a: list[torch.Tensor], b: list[torch.Tensor] | str, rtol: float = 1e-4) -> bool:
    """Outputs agree to float32 rounding (relative to their scale)."""
    if isinstance(b, str) or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return False
        scale = float(x.abs().max()) if x.numel() else 0.0
        if not torch.allclose(x.float(), y.float(), rtol=rtol, atol=rtol * max(scale, 1e-3)):
            return False
    return True


def group_anchor(group: Group) -> str:
    """The name of the innermost module holding all of the group's layers ('' for the model)."""
    parts = [n.split(".") for n in group.cols + group.rows]
    common: list[str] = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def group_signature(model: nn.Module, group: Group) -> str:
    """What repeats across blocks: the class of the group's common parent and its members' names."""
    names = group.cols + group.rows
    anchor = group_anchor(group)
    parent = model.get_submodule(anchor) if anchor else model
    rel = sorted({n[len(anchor) + 1:] if anchor else n for n in names})
    return f"{type(parent).__name__}({', '.join(rel)})"


def local_output_check(model: nn.Module, groups: list[Group], tp: int, probe: dict[str, Any],
                       reference: list[torch.Tensor],
                       attributes: dict[str, dict[str, int]] | None = None,
                       styles: dict[str, str] | None = None,
                       tables: dict[str, dict[str, tuple[int, int]]] | None = None) -> dict[str, str]:
    """Signature -> 'local' or the reason its groups need DTensor outputs (with ``attributes`` set
    to their per-rank values, and column layers in ``styles`` split that way, where given)."""
    by_sig: dict[str, list[Group]] = {}
    for g in groups:
        by_sig.setdefault(group_signature(model, g), []).append(g)

    def roles_of(gs: list[Group]) -> dict[str, str]:
        roles = {c: (styles or {}).get(c, "colwise") for g in gs for c in g.cols}
        roles.update({r: "rowwise" for g in gs for r in g.rows})
        return roles

    if not by_sig:
        return {}
    out = simulate(model, roles_of(groups), tp, probe, attributes=attributes, tables=tables)
    if close(reference, out):
        return {sig: "local" for sig in by_sig}
    verdict = {}
    for sig, gs in by_sig.items():
        out = simulate(model, roles_of(gs), tp, probe, attributes=attributes, tables=tables)
        if close(reference, out):
            verdict[sig] = "local"
        else:
            why = out if isinstance(out, str) else "local outputs change the model output"
            verdict[sig] = f"local outputs break {sig}: {why}"
    return verdict


def choose_bank_splits(model: nn.Module, candidates: dict[str, list[dict[str, tuple[int, int]]]], tp: int,
                       probe: dict[str, Any], reference: list[torch.Tensor]) -> dict[str, dict[str, tuple[int, int]]]:
    """For each kind of expert bank, the first candidate split that reproduces the output (none: left whole)."""
    by_kind: dict[str, list[str]] = {}
    for name in candidates:
        by_kind.setdefault(type(model.get_submodule(name)).__name__, []).append(name)
    chosen: dict[str, dict[str, tuple[int, int]]] = {}
    for names in by_kind.values():
        for cand in candidates[names[0]]:
            if close(reference, simulate(model, {}, tp, probe, {n: cand for n in names})):
                chosen.update({n: cand for n in names})
                break
    return chosen
