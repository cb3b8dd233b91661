"""Automatic tensor-parallel plans (Redco's two rules, in data-flow order).

``auto_plan(model, tp_size)`` returns a :class:`Plan`: module name -> style
name (``luminary.parallel.styles``), with the reason for each, in the order the
forward pass reaches the modules. The rules (specs/redco.md):

1. attention: q, k, v split column-wise, the output projection row-wise;
2. every other dense layer alternates with the layer before it in the data
   flow (column, row, column ...), so consecutive layers need no communication;

with PyTorch's refinements: embeddings fed token ids split on the vocabulary
when it divides (``RowwiseParallel(input_layouts=Replicate())``), a learned
position table left alone, the LM head column-split with its output gathered,
dimensions that do not divide left whole. Rule 1 is rule 2 seen on attention:
q, k and v read the replicated hidden states, the output projection reads what
they produced (``luminary.parallel.trace``). Whether the model code works on
local (split) outputs is then checked numerically (``luminary.parallel.simulate``);
groups that need global shapes keep DTensor outputs (``colwise_dtensor``).

The plan is data: it is applied in one place (``luminary.parallel.apply``),
written as JSON and printed by ``luminary parallel plan``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from luminary.core.errors import LuminaryError
from luminary.parallel.declared import match_declared
from luminary.parallel.experts import bank_params, split_candidates
from luminary.parallel.simulate import choose_bank_splits, group_anchor, group_signature, local_output_check
from luminary.parallel.styles import SPLIT_DIM, STYLES, base_style, check_style, packed, shard_shape
from luminary.parallel.probe import probe_inputs, run_probe
from luminary.parallel.trace import Group, Trace, dense_features, dense_kind, match_overrides, trace

MAX_ROUNDS = 16
WHOLE_HEADS = ("; outputs kept as DTensors: the weights are split, but what reads them (attention) "
               "runs on all heads on every rank")
INNER_PARAMS = ("whole parameters (a per-head norm) work on its split values, "
                "so each rank would see part of their gradient")
# The families' own names come before ``num_key_value_heads``, the name transformers (>= 5.25) also
# derives for them (Falcon's from ``num_kv_heads``): a refusal names the field the user wrote.
HEAD_FIELDS = ("num_attention_heads", "num_kv_heads", "n_head", "n_heads", "n_head_kv", "n_kv_heads", "num_heads",
               "kv_n_heads", "encoder_attention_heads", "decoder_attention_heads", "multi_query_group_num",
               "num_key_value_heads")


@dataclass(frozen=True)
class Entry:
    style: str
    reason: str
    kind: str  # linear | conv1d | embedding | experts
    shape: tuple[int, ...]  # the whole weight (an expert bank: its first parameter)
    split: dict[str, tuple[int, int]] | None = None  # expert bank: parameter -> (dimension, packs)
    params: dict[str, tuple[int, ...]] | None = None  # expert bank: parameter -> whole shape
    roles: dict[str, str] | None = None  # expert bank: parameter -> column | row (by the data flow)

    def local_shapes(self, tp_size: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Parameter -> (whole shape, the shape one tensor-parallel rank holds); the weight only for a layer."""
        if self.kind != "experts":
            return {"weight": (self.shape, shard_shape(self.kind, self.style, self.shape, tp_size))}
        out = {}
        for name, shape in (self.params or {}).items():
            local = list(shape)
            if self.style == "experts" and name in (self.split or {}):
                local[self.split[name][0]] //= tp_size
            out[name] = (tuple(shape), tuple(local))
        return out


@dataclass
class Plan:
    """Module name -> :class:`Entry`, in data-flow order, for ``tp_size`` ranks."""

    tp_size: int
    entries: dict[str, Entry] = field(default_factory=dict)
    # module -> attribute -> the value each rank's module holds (its share of the heads: head_attributes)
    attributes: dict[str, dict[str, int]] = field(default_factory=dict)
    # module -> keyword -> (dimension, heads): a per-head table it receives, sliced to each rank's heads
    head_tables: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)

    def styles(self) -> dict[str, str]:
        """The modules that are split, with their style names."""
        return {n: e.style for n, e in self.entries.items() if e.style != "replicate"}

    @property
    def needs_implicit_replication(self) -> bool:
        return any(e.style == "colwise_dtensor" for e in self.entries.values())

    def rows(self) -> list[dict[str, Any]]:
        """One row a module: name, style, weight shape, shard shape, MiB per rank (float32)."""
        out = []
        for name, e in self.entries.items():
            shapes = e.local_shapes(self.tp_size)
            row = {"module": name, "style": e.style, "kind": e.kind, "shape": list(e.shape),
                   "shard": list(next(iter(shapes.values()))[1]),
                   "mib_per_rank": sum(math.prod(local) for _, local in shapes.values()) * 4 / 2**20,
                   "reason": e.reason}
            if e.kind == "experts":
                row["params"] = {n: {"shape": list(w), "shard": list(loc)} for n, (w, loc) in shapes.items()}
                row["split"] = {n: list(v) for n, v in (e.split or {}).items()}
                row["roles"] = dict(e.roles or {})
            out.append(row)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"tp_size": self.tp_size, "styles": {k: STYLES[k] for k in STYLES},
                "modules": self.rows(), "attributes": {k: dict(v) for k, v in self.attributes.items()},
                "head_tables": {m: {k: list(v) for k, v in t.items()} for m, t in self.head_tables.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Plan":
        entries = {}
        for row in data["modules"]:
            check_style(row["style"], row["module"])
            kind = row.get("kind", "linear")
            split = {n: tuple(v) for n, v in row["split"].items()} if "split" in row else None
            params = {n: tuple(v["shape"]) for n, v in row["params"].items()} if "params" in row else None
            entries[row["module"]] = Entry(row["style"], row.get("reason", ""), kind, tuple(row["shape"]),
                                           split, params, row.get("roles"))
        attributes = {str(m): {str(a): int(v) for a, v in values.items()}
                      for m, values in (data.get("attributes") or {}).items()}
        tables = {str(m): {str(k): (int(v[0]), int(v[1])) for k, v in t.items()}
                  for m, t in (data.get("head_tables") or {}).items()}
        return cls(int(data["tp_size"]), entries, attributes, tables)


def check_heads(model: nn.Module | Any, tp_size: int, field: str = "deploy.tp") -> None:
    """Every head count in the config must divide by ``tp_size`` (one line otherwise).

    ``model`` is a model or its config: the commands check the config before
    any process group starts, so a bad mesh never costs a rendezvous.
    """
    configs = [model if not isinstance(model, nn.Module) else getattr(model, "config", None)]
    configs += [getattr(configs[0], k, None) for k in ("text_config", "encoder", "decoder", "attn_config")
                ] if configs[0] else []
    for config in filter(None, configs):
        for key, heads in head_counts(config).items():
            if heads % tp_size:
                raise LuminaryError(f"{field}: the model's {key} = {heads} is not divisible by {tp_size} "
                                    "(each rank needs whole heads); choose a tp that divides it, or train it "
                                    "data-parallel (deploy.tp: 1)")


def head_counts(config: Any) -> dict[str, int]:
    """Every head count a config states, and the key/value heads it implies.

    ``multi_query`` without Falcon's ``new_decoder_architecture`` means one
    key/value head whatever ``num_kv_heads`` says (Falcon-7B, GPT-BigCode).
    """
    counts = {}
    # first, so that a refusal names the field the user wrote (transformers >= 5.25 also derives
    # Falcon's num_key_value_heads = 1 from it)
    if getattr(config, "multi_query", False) is True and not getattr(config, "new_decoder_architecture", False):
        counts["multi_query (one key/value head)"] = 1
    counts.update({key: v for key in HEAD_FIELDS
                   if isinstance(v := getattr(config, key, None), int) and not isinstance(v, bool) and v > 0})
    return counts


def head_attributes(model: nn.Module, groups: list[Group], tp_size: int) -> dict[str, dict[str, int]]:
    """Module -> attribute -> per-rank value: the head counts and widths that the module holding a
    column group keeps as plain integers (OPT's ``num_heads``, GPT-2's ``split_size``, T5's ``n_heads``
    and ``inner_dim``), divided by ``tp_size``.

    Model code that reshapes with such a count breaks on local outputs; with
    each rank's module holding its own share it runs on 1/tp of the heads, as
    Megatron's attention does with ``num_attention_heads_per_partition``. The
    candidates are the integers equal to a head count of the config or to a
    column layer's output width (or its half or third: a fused projection);
    whether they are the right ones is decided by the numbers
    (``luminary.parallel.simulate``), not by their names.
    """
    config = getattr(model, "config", None)
    configs = [config] + [getattr(config, k, None) for k in ("text_config", "encoder", "decoder", "attn_config")]
    counts = {v for c in configs if c is not None for v in head_counts(c).values()}
    out: dict[str, dict[str, int]] = {}
    for g in groups:
        anchor = group_anchor(g)
        if not anchor:
            continue
        widths = {dense_features(model.get_submodule(c))[1] // k for c in g.cols for k in (1, 2, 3)}
        values = {k: v // tp_size for k, v in vars(model.get_submodule(anchor)).items()
                  if type(v) is int and v >= tp_size and v % tp_size == 0 and (v in counts or v in widths)
                  and not k.startswith("_") and "idx" not in k and "layer_id" not in k}
        if values:
            out[anchor] = values
    return out


def head_tables(model: nn.Module, groups: list[Group], tp_size: int,
                probe: dict[str, Any]) -> dict[str, dict[str, tuple[int, int]]]:
    """Module -> keyword -> (dimension, heads): the per-head tables the module holding a column group
    receives, built for all heads outside the split layers.

    ALiBi is the case: BLOOM's block hands its attention ``alibi`` of shape
    (batch · heads, 1, T), MPT's ``position_bias`` of shape (heads, 1, T); the
    scores of 1/tp of the heads need the same 1/tp of the table. Candidates
    are the tensors passed by keyword with a dimension of ``heads`` or
    ``batch · heads`` for a head count of the config, seen on one probe
    forward; whether slicing them is right is decided by the numbers
    (``luminary.parallel.simulate``), as for :func:`head_attributes`.
    """
    config = getattr(model, "config", None)
    configs = [config] + [getattr(config, k, None) for k in ("text_config", "encoder", "decoder", "attn_config")]
    counts = sorted({v for c in configs if c is not None for v in head_counts(c).values() if v % tp_size == 0})
    anchors = {a for g in groups if (a := group_anchor(g))}
    seen: dict[str, dict[str, tuple[int, ...]]] = {}
    batch = next(iter(probe.values())).shape[0]

    def record(name):
        def hook(module, args, kwargs):
            seen.setdefault(name, {k: tuple(v.shape) for k, v in kwargs.items()
                                   if isinstance(v, torch.Tensor) and v.is_floating_point()})
        return hook

    handles = [model.get_submodule(a).register_forward_pre_hook(record(a), with_kwargs=True) for a in anchors]
    try:
        run_probe(model, probe)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for anchor, shapes in seen.items():
        for key, shape in shapes.items():
            if key == "hidden_states":
                continue
            found = next(((d, h) for h in counts for d, n in enumerate(shape) if n in (h, batch * h)), None)
            if found:
                out.setdefault(anchor, {})[key] = found
    return out


def auto_plan(model: nn.Module, tp_size: int, overrides: dict[str, str] | None = None,
              probe: dict[str, Any] | None = None, declared: dict[str, str] | None = None,
              packed_splits: bool = True) -> Plan:
    """The tensor-parallel plan for ``model`` on ``tp_size`` ranks.

    ``overrides``: module-name glob -> style; they are fixed before the data
    flow is read, so the layers after an overridden one adapt to it.
    ``declared``: a declared plan (``luminary.parallel.declared``: the user's,
    or transformers' ``tp_plan``), glob -> style, applied as given the same
    way; the automatic plan fills the rest, and overrides win over it.
    ``packed_splits``: try ``colwise_packed*`` on fused projections (False:
    their heads stay whole, as DTensor outputs).
    """
    if tp_size < 1:
        raise LuminaryError(f"tp_size must be >= 1, got {tp_size}")
    for pattern, style in {**(declared or {}), **(overrides or {})}.items():
        check_style(style, f"parallel override '{pattern}'")
    check_heads(model, tp_size, "tp")
    probe = probe if probe is not None else probe_inputs(model)
    given = match_declared(model, declared or {})
    forced = {**given, **match_overrides(model, overrides or {})}
    t, dissolved, dtensor, attributes, packs, tables = _settle(model, tp_size, forced, probe, packed_splits)
    roles, reasons = {**t.roles, **packs}, dict(t.reasons)
    for g in t.groups:
        anchor = group_anchor(g)
        if anchor in attributes:
            whole = model.get_submodule(anchor)
            share = ", ".join(f"{k} {getattr(whole, k)} -> {v}" for k, v in attributes[anchor].items())
            share += "".join(f", its rank's heads of {k}" for k in tables.get(anchor, {}))
            for c in g.cols:
                reasons[c] = f"{reasons.get(c, '')}; heads split: each rank's {type(whole).__name__} holds {share}"
    for g in t.groups:
        why = dtensor.get(group_signature(model, g))
        for c in g.cols if why else ():
            if c not in forced:
                roles[c], reasons[c] = "colwise_dtensor", why + WHOLE_HEADS
    reasons.update(dissolved)
    for name, style in forced.items():
        reasons[name] = f"declared: {style}" if name in given and given[name] == style else f"override: {style}"
    modules = dict(model.named_modules())
    splits = _bank_splits(model, t, roles, reasons, tp_size, probe)
    plan = Plan(tp_size, attributes=attributes, head_tables=tables)
    never = [n for n, m in modules.items() if (dense_kind(m) or bank_params(m)) and n not in roles]
    for name in t.order + never:
        module = modules[name]
        style = roles.get(name, forced.get(name, "replicate"))
        reason = reasons.get(name, "not reached by the probe forward: left whole")
        if dense_kind(module):
            plan.entries[name] = Entry(style, reason, dense_kind(module), tuple(module.weight.shape))
        else:
            params = {n: tuple(getattr(module, n).shape) for n in bank_params(module)}
            roles_in = t.banks[name].roles if name in t.banks else None
            plan.entries[name] = Entry(style, reason, "experts", next(iter(params.values())), splits.get(name), params,
                                       roles_in)
    _follow_ties(model, plan)
    if tp_size > 1 and not plan.styles():
        raise LuminaryError(f"{type(model).__name__}: no module can be split in {tp_size} parts (tp_size too large?)")
    return plan


def _split_numel(model: nn.Module, t: Trace) -> int:
    modules = dict(model.named_modules())
    return sum(modules[n].weight.numel() for n, role in t.roles.items()
               if role != "replicate" and dense_kind(modules[n]))


def _bank_splits(model: nn.Module, t: Trace, roles: dict[str, str], reasons: dict[str, str], tp_size: int,
                 probe: dict[str, Any]) -> dict[str, dict[str, tuple[int, int]]]:
    """How each expert bank splits, chosen numerically; banks with no working split are left whole."""
    banks = [n for n, role in roles.items() if role == "experts"]
    candidates = {n: split_candidates(model.get_submodule(n), t.banks[n], tp_size) for n in banks if n in t.banks}
    chosen = choose_bank_splits(model, {n: c for n, c in candidates.items() if c}, tp_size, probe,
                                run_probe(model, probe)) if any(candidates.values()) else {}
    for name in banks:
        if name in chosen:
            packs = [f"{p} packed {k} ways" for p, (_, k) in chosen[name].items() if k > 1]
            reasons[name] = "expert bank: " + ", ".join(
                f"{p} {t.banks[name].roles[p]}" for p in chosen[name]) + ("; " + ", ".join(packs) if packs else "")
        else:
            roles[name] = "replicate"
            reasons[name] = ("expert bank: no split of its parameters reproduces its output: left whole"
                             if candidates.get(name) else "expert bank: sizes do not divide: left whole")
    return chosen


def _settle(model: nn.Module, tp_size: int, forced: dict[str, str],
            probe: dict[str, Any], packed_splits: bool = True
            ) -> tuple[Trace, dict[str, str], dict[str, str], dict[str, dict[str, int]], dict[str, str],
                       dict[str, dict[str, tuple[int, int]]]]:
    """Trace, then check local outputs numerically, one troubled group kind at a time.

    A group kind whose local outputs change the model's output is left whole
    when what it fed then splits column-wise instead (a low-rank bottleneck
    followed by a norm, as in DeepSeek's attention: the split moves one layer
    on), and otherwise keeps DTensor outputs (a reshape with a global head
    count, as in OPT). Before either, a failing kind is tried with each rank's
    module holding its share of the heads (:func:`head_attributes`); where
    that gives the unsplit numbers, heads split for real; where it does not,
    again with the per-head tables the module receives sliced to each rank's
    heads (:func:`head_tables`: ALiBi). Returns the trace, the modules left
    whole with why, the group kinds kept as DTensors with why, the per-rank
    attributes, the column layers split as packed pieces, and the sliced tables.
    """
    dissolved: dict[str, str] = {}
    dtensor: dict[str, str] = {}
    attributes: dict[str, dict[str, int]] = {}
    packs: dict[str, str] = {}  # column layers split as packed pieces (a fused [q; k; v])
    tables: dict[str, dict[str, tuple[int, int]]] = {}  # per-head tables sliced per rank (ALiBi)
    t = trace(model, tp_size, forced, probe)
    reference = run_probe(model, probe) if tp_size > 1 else []
    modules = dict(model.named_modules())
    for _ in range(MAX_ROUNDS):
        pending = [g for g in t.groups if not set(g.cols + g.rows) & set(forced)
                   and group_signature(model, g) not in dtensor]
        failing = {group_signature(model, g): INNER_PARAMS for g in pending if g.inner_params}
        failing.update({k: v for k, v in local_output_check(model, pending, tp_size, probe, reference,
                                                            attributes, packs, tables).items()
                        if v != "local" and k not in failing})
        for sig in [k for k, v in failing.items() if v != INNER_PARAMS]:
            gs = [g for g in pending if group_signature(model, g) == sig]
            shares = head_attributes(model, gs, tp_size)
            found = head_tables(model, gs, tp_size, probe) if shares else {}
            candidates = ("colwise", "colwise_packed3", "colwise_packed2") if packed_splits else ("colwise",)
            # plain, then fused [q; k; v], [k; v]; each without, then with the per-head tables sliced
            for style, sliced in ((s, t) for s in candidates for t in ([{}, found] if found else [{}])):
                styles = {c: style for g in gs for c in g.cols
                          if dense_features(modules[c])[1] % (tp_size * packed(style)) == 0}
                if shares and local_output_check(model, gs, tp_size, probe, reference, {**attributes, **shares},
                                                 {**packs, **styles}, {**tables, **sliced}).get(sig) == "local":
                    attributes.update(shares)
                    packs.update({c: v for c, v in styles.items() if v != "colwise"})
                    tables.update(sliced)
                    del failing[sig]
                    break
        if not failing:
            break
        base, whole = _split_numel(model, t), {c: "replicate" for c in dissolved}
        for sig, why in failing.items():
            cols = [c for g in pending if group_signature(model, g) == sig for c in g.cols]
            alt = trace(model, tp_size, {**forced, **whole, **{c: "replicate" for c in cols}}, probe)
            # leaving the group whole must cost no more than its own columns: what it fed splits instead
            if _split_numel(model, alt) >= base - sum(modules[c].weight.numel() for c in cols):
                dissolved.update({c: f"{why}; left whole so the next layer splits instead" for c in cols})
            else:
                dtensor[sig] = why
        t = trace(model, tp_size, {**forced, **{c: "replicate" for c in dissolved}}, probe)
    return t, dissolved, dtensor, attributes, packs, tables


def tie_groups(model: nn.Module) -> list[list[str]]:
    """Names of modules that share one weight (tied embeddings and LM heads)."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        w = getattr(module, "weight", None)
        if dense_kind(module) and isinstance(w, torch.Tensor):
            owners.setdefault(id(w), []).append(name)
    return [names for names in owners.values() if len(names) > 1]


def weight_split(entry: Entry) -> int | None:
    """Which dimension of the weight a style splits (None: whole)."""
    return SPLIT_DIM.get((entry.kind, base_style(entry.style)))


def _follow_ties(model: nn.Module, plan: Plan) -> None:
    """Tied modules share one weight, so they must split it the same way.

    A module the probe never reached (T5's ``shared``) takes the split of its
    partners; partners that disagree are an error an override must resolve.
    """
    for names in tie_groups(model):
        names = [n for n in names if n in plan.entries]
        reached = [n for n in names if "not reached" not in plan.entries[n].reason]
        splits = {weight_split(plan.entries[n]) for n in reached}
        if len(splits) > 1:
            raise LuminaryError(f"tied modules {', '.join(reached)} would split their shared weight differently; "
                                "override them to one style")
        split = splits.pop() if splits else None
        for n in names:
            e = plan.entries[n]
            if n not in reached and split is not None:
                style = next(s for (k, s), d in SPLIT_DIM.items() if k == e.kind and d == split)
                style = "vocab_embedding" if e.kind == "embedding" and split == 0 else style
                plan.entries[n] = Entry(style, f"shares its weight with {reached[0]}", e.kind, e.shape)


def memory_per_rank(model: nn.Module, plan: Plan, dp_size: int = 1) -> dict[str, float]:
    """Parameters and bytes per rank: split weights divide by tp, FSDP divides all by dp.

    Training state in float32 with AdamW is 16 bytes a parameter (weight,
    gradient, two moments).
    """
    modules = dict(model.named_modules())
    split = {}
    for name, e in plan.entries.items():
        for pname, (_, local) in e.local_shapes(plan.tp_size).items():
            split[id(getattr(modules[name], pname))] = math.prod(local)
        bias = getattr(modules[name], "bias", None)
        if isinstance(bias, torch.Tensor) and base_style(e.style) == "colwise":
            split[id(bias)] = bias.numel() // plan.tp_size
    total = 0
    for p in {id(p): p for p in model.parameters()}.values():
        total += split.get(id(p), p.numel())
    per_rank = total / dp_size
    return {"params_per_rank": per_rank, "weights_mib_per_rank": per_rank * 4 / 2**20,
            "train_state_mib_per_rank": per_rank * 16 / 2**20,
            "params_total": float(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()))}
