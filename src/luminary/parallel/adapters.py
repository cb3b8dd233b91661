"""Tensor-parallel plans for a model under LoRA adapters (peft's ``lora.Linear``).

peft wraps each adapted layer W as ``lora.Linear``: ``base_layer`` (W, frozen) and the ModuleDicts
``lora_A`` (A: r × in) and ``lora_B`` (B: out × r), y = W x + s · B (A x). The automatic plan
(``luminary.parallel.plan``) is derived on the plain model, as for any other run, and carried over
to the wrapper here (:func:`adapter_plan`); W keeps its style, and the adapter takes the one that
needs no more communication than W's (the usual scheme):

- W column-split (its input x replicated, its output this rank's columns): A replicated (it reads
  the same whole x on every rank), B column-split like W, so each rank adds its own columns of
  s · B A x. The gradient of A's output is summed over ranks by B's column split (its input's
  backward), as the hidden state's gradient is by W's.
- W row-split (x arrives split on its features, the output summed over ranks): A row-split (it reads
  the same local part of x), its r-wide partial sums reduced once, B replicated: each rank adds the
  same whole s · B A x to W's summed output.
- W replicated (or an embedding's vocabulary split, whose adapter is parameters, not layers): the
  adapter is left whole.
"""

from __future__ import annotations

import torch
from torch import nn

from luminary.core.errors import LuminaryError
from luminary.parallel.plan import Entry, Plan
from luminary.parallel.styles import base_style
from luminary.parallel.trace import dense_kind


def peft_base(model: nn.Module) -> nn.Module | None:
    """The transformers model inside a peft wrapper (with the adapter layers in it); None for a plain model."""
    if not hasattr(model, "peft_config") or not hasattr(model, "get_base_model"):
        return None
    return model.get_base_model()


def adapter_styles(style: str) -> tuple[str, str]:
    """(lora_A's style, lora_B's style) for a base layer of ``style``."""
    if base_style(style) == "colwise":
        return "replicate", style
    if style == "rowwise":
        return "rowwise", "replicate"
    if style == "replicate":
        return "replicate", "replicate"
    raise LuminaryError(f"train.lora: no tensor-parallel split for an adapter on a layer split as '{style}'; "
                        "leave that layer out of train.lora.target_modules, or set deploy.tp to 1")


def _entry(module: nn.Module, style: str, reason: str) -> Entry:
    kind = dense_kind(module)
    if kind is None:
        raise LuminaryError(f"train.lora: an adapter layer of type {type(module).__name__} cannot be split")
    return Entry(style, reason, kind, tuple(module.weight.shape))


def _adapter_entries(name: str, layer: nn.Module, entry: Entry) -> dict[str, Entry]:
    """The entries of one peft layer: its ``base_layer`` as ``entry``, each adapter's A and B
    by :func:`adapter_styles`."""
    out = {f"{name}.base_layer": entry}
    for key, a in layer.lora_A.items():  # none for an embedding: its adapter is parameters, left whole
        style_a, style_b = adapter_styles(entry.style)
        why = f"LoRA on a {entry.style} layer"
        out[f"{name}.lora_A.{key}"] = _entry(a, style_a, f"{why}: A reads its input ({style_a})")
        out[f"{name}.lora_B.{key}"] = _entry(layer.lora_B[key], style_b, f"{why}: B writes its output ({style_b})")
    return out


def adapter_plan(plan: Plan, model: nn.Module) -> Plan:
    """``plan`` (made for the plain model inside ``model``) over the peft wrapper ``model``'s names."""
    base = peft_base(model)
    prefix = next(n for n, m in model.named_modules() if m is base)
    modules = dict(model.named_modules())
    out = Plan(plan.tp_size)
    for name, entry in plan.entries.items():
        wrapped = f"{prefix}.{name}"
        layer = modules.get(wrapped)
        if layer is None:
            raise LuminaryError(f"train.lora: the tensor-parallel plan names {name}, which the adapter model lacks")
        if hasattr(layer, "base_layer") and isinstance(getattr(layer, "lora_A", None), nn.ModuleDict):
            out.entries.update(_adapter_entries(wrapped, layer, entry))
        else:
            out.entries[wrapped] = entry
    out.attributes = {f"{prefix}.{n}": dict(v) for n, v in plan.attributes.items()}
    out.head_tables = {f"{prefix}.{n}": dict(v) for n, v in plan.head_tables.items()}
    return out


def adapter_twin(model: torch.nn.Module, twin: torch.nn.Module) -> torch.nn.Module:
    """``twin`` under the adapters of peft model ``model`` (its class and config), each ``lora_B`` drawn
    small and seeded rather than zero, so a training step gives A a gradient too."""
    import copy

    adapted = type(model)(twin, copy.deepcopy(model.peft_config[model.active_adapter]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return adapted
