"""Declared plans: one the user wrote, or the one transformers ships, applied as given.

A declared plan maps module-name globs to styles. It is read from

- a JSON file: luminary's own plan (``luminary parallel plan --out``, rows of
  ``{"module", "style"}``) or a flat mapping ``{"glob": "style"}`` in luminary's
  style names or transformers' (``colwise``, ``rowwise``,
  ``colwise_gather_output``, ``embedding_rowwise``, ``replicate``);
- the model itself: ``model.tp_plan``, transformers' ``base_model_tp_plan``
  with the head's prefix, where the config class defines one.

The declared modules are fixed before the data flow is read (as overrides
are), so the automatic plan fills the rest around them; the command prints
where the automatic plan alone would have differed. Styles luminary has no
equivalent for (``local_colwise``, ``sequence_parallel``
...) are left to the automatic plan and listed.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from torch import nn

from luminary.core.errors import LuminaryError
from luminary.core.io import read_json
from luminary.parallel.experts import bank_params
from luminary.parallel.styles import STYLES
from luminary.parallel.trace import dense_kind

TRANSFORMERS_STYLES = {  # transformers' tp_plan names -> luminary's
    "colwise": "colwise", "rowwise": "rowwise", "colwise_gather_output": "colwise_gather",
    "embedding_rowwise": "vocab_embedding", "replicate": "replicate", "moe_tp_experts": "experts",
    "packed_colwise": "colwise_packed2",  # a fused [gate; up]
}


def translate(plan: dict[str, str], where: str) -> tuple[dict[str, str], dict[str, str]]:
    """(glob -> luminary style, glob -> style with no luminary equivalent)."""
    out, unknown = {}, {}
    for pattern, style in plan.items():
        if not isinstance(pattern, str) or not isinstance(style, str):
            raise LuminaryError(f"{where}: a declared plan maps module names to style names, got {pattern!r}: {style!r}")
        if style in STYLES:
            out[pattern] = style
        elif style in TRANSFORMERS_STYLES:
            out[pattern] = TRANSFORMERS_STYLES[style]
        else:
            unknown[pattern] = style
    return out, unknown


def read_declared(path: Path) -> dict[str, str]:
    """A declared plan from a JSON file (luminary's plan, or a flat glob -> style mapping)."""
    data = read_json(Path(path))
    if isinstance(data, dict) and isinstance(data.get("modules"), list):
        plan = {row["module"]: row["style"] for row in data["modules"] if isinstance(row, dict) and "module" in row}
    elif isinstance(data, dict):
        plan = data
    else:
        raise LuminaryError(f"{path}: a declared plan is a JSON object (glob -> style) or a luminary plan")
    styles, unknown = translate(plan, str(path))
    if unknown:
        pattern, style = next(iter(unknown.items()))
        raise LuminaryError(f"{path}: '{pattern}': unknown tensor-parallel style '{style}' "
                            f"(known: {', '.join(list(STYLES) + list(TRANSFORMERS_STYLES))})")
    return styles


def shipped_plan(model: nn.Module) -> tuple[dict[str, str], dict[str, str]]:
    """transformers' plan for ``model`` (its ``tp_plan``), translated; and what has no luminary style."""
    plan = getattr(model, "tp_plan", None) or {}
    return translate(dict(plan), f"{type(model).__name__}.tp_plan")


def match_declared(model: nn.Module, declared: dict[str, str]) -> dict[str, str]:
    """Module name -> style for the declared globs (a glob naming a parameter, not a module, is skipped)."""
    names = [n for n, m in model.named_modules() if dense_kind(m) or bank_params(m)]
    out: dict[str, str] = {}
    for pattern, style in declared.items():
        for n in names:
            if fnmatch.fnmatchcase(n, pattern) and n.count(".") == pattern.count("."):
                out[n] = style
    return out


def differences(declared_plan: Any, automatic: Any, declared: dict[str, str]) -> list[dict[str, str]]:
    """Rows where the automatic plan alone differs from the plan with the declared modules."""
    rows = []
    for name, e in declared_plan.entries.items():
        auto = automatic.entries.get(name)
        if auto is not None and auto.style != e.style:
            rows.append({"module": name, "declared": e.style if name in declared else f"(follows) {e.style}",
                         "automatic": auto.style, "automatic_reason": auto.reason})
    return rows
