"""What ``luminary parallel plan`` shows: the plan as a table and as JSON.

One row a module, in data-flow order: style, whole weight shape, the shard
each tensor-parallel rank holds and its size, and why the rule chose it.
Totals give parameters and memory per rank (weights in float32, and the
float32 AdamW training state of 16 bytes a parameter, FSDP dividing by dp).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from torch import nn

from luminary.core.io import atomic_write_json, read_json
from luminary.parallel.plan import Plan, auto_plan, memory_per_rank


def build_for_plan(model: str, vocab_size: int = 32000, allow_pickle: bool = False) -> nn.Module:
    """A preset name (random weights) or a model folder; the plan depends on the code, not the values."""
    from luminary.models import build_model, load_model
    from luminary.models.presets import FAMILIES, PRESETS

    if model in PRESETS or model in FAMILIES:
        return build_model(model, vocab_size, seed=0)
    return load_model(model, allow_pickle=allow_pickle)


def plan_report(model: nn.Module, tp_size: int, dp_size: int = 1,
                overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The plan as JSON-able data, with memory per rank."""
    plan = auto_plan(model, tp_size, overrides)
    data = plan.to_json()
    data.update(model=type(model).__name__, dp_size=dp_size, memory=memory_per_rank(model, plan, dp_size))
    return data


def format_table(data: dict[str, Any]) -> str:
    table = Table(title=f"{data['model']}: tensor parallel {data['tp_size']} x data parallel {data['dp_size']}")
    for col in ("module", "style", "weight", "shard", "MiB/rank", "why"):
        table.add_column(col, justify="right" if col == "MiB/rank" else "left", overflow="fold")
    for row in data["modules"]:
        table.add_row(row["module"], row["style"], "x".join(map(str, row["shape"])),
                      "x".join(map(str, row["shard"])), f"{row['mib_per_rank']:.3f}", row["reason"])
    m = data["memory"]
    out = io.StringIO()
    console = Console(file=out, width=160, no_color=True)
    console.print(table)
    console.print(f"parameters: {m['params_total']:,.0f} in all, {m['params_per_rank']:,.0f} per rank "
                  f"(weights {m['weights_mib_per_rank']:.1f} MiB, fp32 AdamW training state "
                  f"{m['train_state_mib_per_rank']:.1f} MiB per rank)")
    return out.getvalue()


def write_plan(data: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, data)


def read_plan(path: Path) -> Plan:
    return Plan.from_json(read_json(Path(path)))
