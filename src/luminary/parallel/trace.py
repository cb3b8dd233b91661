"""The data flow of a model, read from one forward pass on a tiny input.

Redco's rule 2 says a dense layer alternates its split with "the layer before
it". Redco's own code takes "before" to mean the previous parameter name in
sorted order; here it means the layer whose output the input came from. A
forward pass on a probe input runs under a ``TorchFunctionMode`` that carries a
tag on every tensor derived from a column-split layer's output (through views,
activations, attention, anything), so each dense layer sees whether its input
is replicated or split:

- input replicated -> split the layer column-wise (output features), when they divide;
- input split by a column layer's output -> split it row-wise (input features);
  its output is summed over ranks, so it is replicated again;
- an embedding fed the token ids themselves (found by comparing values with the
  probe's ids, not by name) whose output is their rows (up to one scale) is
  split on the vocabulary; any other embedding (a learned position table, even
  one handed the ids for their shape as BART's, relative-position buckets) is
  left alone.

A column group (column layers whose outputs meet, and the row layers they
feed) must close inside its block (an element of a ``ModuleList``). A group
whose split output reaches the model's output with no row layer is the LM head:
its output is gathered. A group that leaks (into the residual stream, into the
next block, or ends nowhere, like a MoE router's logits) is left replicated and
the pass is repeated, so that the layers after it see a replicated input.
"""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from luminary.core.errors import LuminaryError
from luminary.core.modules import list_blocks
from luminary.parallel.experts import Bank, ExpertFlow, bank_params
from luminary.parallel.probe import output_tensors, probe_inputs

try:  # GPT-2's transposed Linear
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()

TAG = "_luminary_tp_groups"
MAX_PASSES = 24


def dense_kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Embedding):
        return "embedding"
    if Conv1D and isinstance(module, Conv1D):
        return "conv1d"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def dense_features(module: nn.Module) -> tuple[int, int]:
    """(input features, output features); an embedding's input is its vocabulary."""
    w = module.weight
    if isinstance(module, nn.Embedding):
        return w.shape[0], w.shape[1]
    if Conv1D and isinstance(module, Conv1D):  # weight (in, out)
        return w.shape[0], w.shape[1]
    return w.shape[1], w.shape[0]  # nn.Linear weight (out, in)


def block_of(name: str, blocks: list[str]) -> str:
    """The block (an element of a ModuleList) a module lives in; '' for none."""
    best = ""
    for b in blocks:
        if (name == b or name.startswith(b + ".")) and len(b) > len(best):
            best = b
    return best


@dataclass
class Group:
    """Column layers whose split outputs meet, and the row layers they feed."""

    cols: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    blocks: set[str] = field(default_factory=set)
    leaks: bool = False
    blocked: bool = False
    inner_params: bool = False  # a whole parameter (a per-head norm) works on the split values
    reaches_output: bool = False


@dataclass
class Trace:
    """What one probe pass found: each dense module's role, in data-flow order."""

    order: list[str]
    roles: dict[str, str]  # name -> style (colwise, rowwise, colwise_gather, vocab_embedding, replicate)
    reasons: dict[str, str]
    groups: list[Group]
    banks: dict[str, Bank] = field(default_factory=dict)  # expert banks: which parameter is column, which row


class _Tagger(TorchFunctionMode):
    """Carries the column groups a tensor was derived from through every torch op."""

    def __init__(self, tracer: "_Tracer"):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        groups: set[int] = set()
        leaves = tree_leaves((args, kwargs))
        for t in leaves:
            if isinstance(t, torch.Tensor):
                groups |= getattr(t, TAG, frozenset())
        if groups:
            merged = self.tracer.merge(groups)
            inner = [t for t in leaves if isinstance(t, nn.Parameter) and id(t) not in self.tracer.split_params]
            if inner:  # a whole parameter meets split values: each rank would see part of its gradient
                self.tracer.groups[min(merged)].inner_params = True
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
                    with contextlib.suppress(AttributeError, RuntimeError):
                        setattr(t, TAG, merged)
        return out


class _Tracer:
    def __init__(self, model: nn.Module, tp_size: int, forced: dict[str, str], token_ids: list[torch.Tensor]):
        self.model, self.tp, self.forced, self.token_ids = model, tp_size, forced, token_ids
        self.names = {id(m): n for n, m in model.named_modules() if dense_kind(m)}
        self.bank_names = {id(m): n for n, m in model.named_modules() if bank_params(m)}
        self.banks: dict[str, Bank] = {}
        self.blocks = list_blocks(model)
        self.parent: list[int] = []
        self.groups: list[Group] = []
        self.order: list[str] = []
        self.roles: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.conflicts: set[str] = set()
        self.split_params: set[int] = set()  # parameters of split dense modules

    # --- groups (union-find) ----------------------------------------------------
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def merge(self, groups: set[int]) -> frozenset[int]:
        roots = {self.find(g) for g in groups}
        first = min(roots)
        for r in roots - {first}:
            self.parent[r] = first
            a, b = self.groups[first], self.groups[r]
            a.cols += b.cols
            a.rows += b.rows
            a.blocks |= b.blocks
            a.leaks |= b.leaks
            a.blocked |= b.blocked
            a.inner_params |= b.inner_params
        return frozenset({first})

    def new_group(self, name: str) -> frozenset[int]:
        self.parent.append(len(self.groups))
        self.groups.append(Group(cols=[name], blocks={block_of(name, self.blocks)}))
        return frozenset({len(self.groups) - 1})

    # --- hooks --------------------------------------------------------------------
    def is_token_ids(self, x: Any) -> bool:
        if not isinstance(x, torch.Tensor) or x.is_floating_point():
            return False
        return any(x.numel() == ids.numel() and torch.equal(x.reshape(-1), ids.reshape(-1)) for ids in self.token_ids)

    def decide(self, name: str, module: nn.Module, x: Any) -> tuple[str, str]:
        n_in, n_out = dense_features(module)
        if dense_kind(module) == "embedding":
            if name in self.forced:
                return self.forced[name], "override"
            if not self.is_token_ids(x):
                return "replicate", "input is not the token ids (a position or bucket table): left alone"
            if n_in % self.tp:
                return "replicate", f"fed token ids, but vocabulary {n_in} does not divide by {self.tp}"
            return "vocab_embedding", "fed token ids: split on the vocabulary"
        live = self.live_groups(name, x)
        forced = self.forced.get(name)
        if forced is not None:
            if forced == "rowwise":
                for g in live:
                    self.groups[g].rows.append(name)
            return forced, "override"
        if live:
            if n_in % self.tp:
                for g in live:
                    self.groups[g].blocked = True
                return "replicate", f"input features {n_in} do not divide by {self.tp}"
            for g in live:
                self.groups[g].rows.append(name)
            return "rowwise", "input comes split from " + ", ".join(
                sorted({c for g in live for c in self.groups[g].cols}))
        if n_out % self.tp:
            return "replicate", f"output features {n_out} do not divide by {self.tp}"
        return "colwise", "input is replicated"

    def pre_hook(self, module: nn.Module, args: tuple) -> None:
        name = self.names[id(module)]
        x = args[0] if args else None
        role, reason = self.decide(name, module, x)
        if name not in self.roles:
            self.order.append(name)
            self.roles[name], self.reasons[name] = role, reason
        elif self.roles[name] != role:
            self.conflicts.add(name)  # called twice with different inputs: keep it whole
        module._luminary_role = role
        if role != "replicate":
            self.split_params.update(id(p) for p in module.parameters(recurse=False))

    def post_hook(self, module: nn.Module, args: tuple, out: Any) -> None:
        role = module._luminary_role
        if not isinstance(out, torch.Tensor):
            return
        name = self.names[id(module)]
        if role == "vocab_embedding" and name not in self.forced and not _looks_up(module, args[0], out):
            # BART's learned positions read only the shape of the ids they are given
            self.roles[name], self.reasons[name] = "replicate", (
                "fed the token ids, but its output is not their rows (a position table): left alone")
            role = module._luminary_role = "replicate"
        if role in ("colwise", "colwise_dtensor") or role.startswith("colwise_packed"):
            setattr(out, TAG, self.new_group(self.names[id(module)]))
        elif role in ("rowwise", "vocab_embedding", "colwise_gather"):
            setattr(out, TAG, frozenset())

    def live_groups(self, name: str, x: Any) -> set[int]:
        """The column groups ``x`` comes split from, as seen from module ``name`` (leaks noted)."""
        home = block_of(name, self.blocks)
        live: set[int] = set()
        for g in getattr(x, TAG, frozenset()) if isinstance(x, torch.Tensor) else ():
            root = self.find(g)
            group = self.groups[root]
            if group.blocks != {home}:
                group.leaks = True  # a split value crossed a block boundary
            else:
                live.add(root)
        return live

    def bank_pre_hook(self, module: nn.Module, args: tuple) -> None:
        name = self.names_of_bank(module)
        x = args[0] if args else None
        live = self.live_groups(name, x)
        if name in self.forced:
            role, reason = self.forced[name], "override"
        elif live or not isinstance(x, torch.Tensor):
            role, reason = "replicate", "an expert bank fed split values: left whole"
            for g in live:
                self.groups[g].blocked = True
        else:
            role, reason = "experts", "expert bank fed replicated values: intermediate dimension split"
        if name not in self.roles:
            self.order.append(name)
            self.roles[name], self.reasons[name] = role, reason
        module._luminary_flow = ExpertFlow(module, x) if role == "experts" else None
        if module._luminary_flow is not None:
            module._luminary_flow.__enter__()

    def bank_post_hook(self, module: nn.Module, args: tuple, out: Any) -> None:
        flow = module._luminary_flow
        if flow is not None:
            flow.__exit__(None, None, None)
            self.banks.setdefault(self.names_of_bank(module), flow.bank)
        if isinstance(out, torch.Tensor):
            setattr(out, TAG, frozenset())  # the bank's output is summed over ranks

    def names_of_bank(self, module: nn.Module) -> str:
        return self.bank_names[id(module)]

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        for module in self.model.modules():
            if id(module) in self.names:
                handles.append(module.register_forward_pre_hook(self.pre_hook))
                handles.append(module.register_forward_hook(self.post_hook))
            elif id(module) in self.bank_names:
                handles.append(module.register_forward_pre_hook(self.bank_pre_hook))
                handles.append(module.register_forward_hook(self.bank_post_hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for module in self.model.modules():
                for attr in ("_luminary_role", "_luminary_flow"):
                    if hasattr(module, attr):
                        delattr(module, attr)


def _looks_up(module: nn.Module, ids: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether ``out`` is the rows of ``ids`` in the table, up to one scale (BART's ``embed_scale``)."""
    if not isinstance(ids, torch.Tensor) or ids.numel() == 0 or int(ids.max()) >= module.weight.shape[0]:
        return False
    rows = torch.nn.functional.embedding(ids, module.weight)
    if rows.shape != out.shape:
        return False
    c = (out * rows).sum() / (rows * rows).sum().clamp_min(1e-30)
    return torch.allclose(out, c * rows, rtol=1e-4, atol=1e-6)


def _one_pass(model: nn.Module, tp_size: int, forced: dict[str, str], probe: dict[str, Any]) -> _Tracer:
    token_ids = [v for k, v in probe.items() if k.endswith("input_ids")]
    tracer = _Tracer(model, tp_size, forced, token_ids)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tracer.hooks(), _Tagger(tracer):
            out = output_tensors(model(**probe))
    finally:
        model.train(was_training)
    for t in out:
        for g in getattr(t, TAG, frozenset()):
            tracer.groups[tracer.find(g)].reaches_output = True
    return tracer


def trace(model: nn.Module, tp_size: int, forced: dict[str, str] | None = None,
          probe: dict[str, Any] | None = None) -> Trace:
    """Roles of the dense modules from probe passes; repeated until no group leaks."""
    forced = dict(forced or {})
    probe = probe if probe is not None else probe_inputs(model)
    notes: dict[str, str] = {}
    for _ in range(MAX_PASSES):
        t = _one_pass(model, tp_size, forced, probe)
        added = {name: "called with both split and replicated inputs: left whole" for name in t.conflicts}
        position = {name: i for i, name in enumerate(t.order)}
        first: dict[str, tuple[int, list[str], str]] = {}  # block -> its first troubled group
        for i, g in enumerate(t.groups):
            why = _trouble(g) if t.find(i) == i else None
            start = min(position[c] for c in g.cols)
            block = min(g.blocks)
            if why and (block not in first or start < first[block][0]):
                first[block] = (start, g.cols, why)
        # a leak corrupts what the pass saw after it: fix the first one in each block, then look again
        for _, cols, why in first.values():
            added.update({c: why for c in cols})
        added = {k: v for k, v in added.items() if k not in forced}
        if not added:
            break
        forced.update({k: "replicate" for k in added})
        notes.update(added)
    else:  # pragma: no cover - a model this irregular is left to overrides
        raise LuminaryError(f"{type(model).__name__}: the automatic plan did not settle; give overrides")
    groups = [g for i, g in enumerate(t.groups) if t.find(i) == i]
    roles, reasons = dict(t.roles), dict(t.reasons)
    for g in groups:
        if g.reaches_output and not g.rows:
            for c in g.cols:
                roles[c], reasons[c] = "colwise_gather", "its split output is the model output: gathered"
    for name, why in notes.items():
        if name in roles:
            reasons[name] = why
    return Trace(order=t.order, roles=roles, reasons=reasons,
                 groups=[g for g in groups if g.rows and not g.reaches_output], banks=t.banks)


def _trouble(g: Group) -> str | None:
    """Why a column group cannot stay split, if it cannot."""
    if g.leaks:
        return "its split output leaves its block before a row layer: left whole"
    if g.blocked:
        return "a layer it feeds cannot be split: left whole"
    if g.reaches_output and g.rows:
        return "its split output reaches the model output past a row layer: left whole"
    if not g.rows and not g.reaches_output:
        return "its split output never reaches a row layer: left whole"
    return None


def match_overrides(model: nn.Module, overrides: dict[str, str]) -> dict[str, str]:
    """Module name -> style for each glob pattern; a pattern that names nothing is an error."""
    names = [n for n, m in model.named_modules() if dense_kind(m) or bank_params(m)]
    out: dict[str, str] = {}
    for pattern, style in overrides.items():
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise LuminaryError(f"parallel override '{pattern}': matches no Linear, Conv1D, Embedding or expert bank")
        out.update({n: style for n in hits})
    return out
