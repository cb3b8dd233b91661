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

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_write_json, read_json
from luminary.parallel.plan import Plan, auto_plan, memory_per_rank


AUTO_CLASSES = (  # (transformers' mapping, the Auto class, the name endings that stand for it)
    ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "AutoModelForCausalLM", ("ForCausalLM", "LMHeadModel")),
    ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "AutoModelForSeq2SeqLM",
     ("ForConditionalGeneration", "ForSeq2SeqLM")),
    ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", "AutoModelForMaskedLM", ("ForMaskedLM",)),
    ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "AutoModelForSequenceClassification",
     ("ForSequenceClassification",)),
)


def auto_class_for(folder: str | Path) -> Any:
    """The Auto class a folder's ``config.json`` names in ``architectures``.

    A name transformers maps (causal LM, seq2seq, masked LM, sequence
    classification) takes that mapping's class; otherwise its ending decides
    (luminary's own ``CrystalForCausalLM``); a config with no architectures is
    a seq2seq model when ``is_encoder_decoder``, else a causal LM.
    """
    import transformers
    from transformers.models.auto import modeling_auto

    from luminary.models.loading import resolve_model_dir

    raw = read_json(resolve_model_dir(folder) / "config.json")
    names = raw.get("architectures") or []
    for arch in names:
        for mapping, auto, _ in AUTO_CLASSES:
            values = getattr(modeling_auto, mapping, {}).values()
            if any(arch == v or (isinstance(v, (tuple, list)) and arch in v) for v in values):
                return getattr(transformers, auto)
        for _, auto, endings in AUTO_CLASSES:
            if arch.endswith(endings):
                return getattr(transformers, auto)
    if names:
        raise LuminaryError(f"{folder}/config.json: architectures {names} is none of a causal LM, seq2seq, "
                            "masked LM or sequence classification model")
    return transformers.AutoModelForSeq2SeqLM if raw.get("is_encoder_decoder") else transformers.AutoModelForCausalLM


def build_for_plan(model: str, vocab_size: int = 32000, allow_pickle: bool = False) -> nn.Module:
    """A preset name (random weights) or a model folder, loaded through the Auto class its config names.

    The plan depends on the code, not the values.
    """
    from luminary.models import build_model, load_model
    from luminary.models.presets import FAMILIES, PRESETS

    if model in PRESETS or model in FAMILIES:
        return build_model(model, vocab_size, seed=0)
    return load_model(model, auto_class=auto_class_for(model), allow_pickle=allow_pickle)


def plan_report(model: nn.Module, tp_size: int, dp_size: int = 1, overrides: dict[str, str] | None = None,
                declared: Path | None = None, shipped: bool = True) -> dict[str, Any]:
    """The plan as JSON-able data, with memory per rank.

    ``declared``: a JSON plan the user wrote; else, with ``shipped``,
    transformers' ``tp_plan`` where the model has one. Either is applied as
    given and the automatic plan fills the rest; ``declared_differences``
    lists where the automatic plan alone would differ.
    """
    from luminary.parallel.declared import differences, read_declared, shipped_plan

    given, unsupported, source = {}, {}, None
    if declared is not None:
        given, source = read_declared(declared), str(declared)
    elif shipped:
        given, unsupported = shipped_plan(model)
        source = f"transformers' {type(model).__name__}.tp_plan" if given or unsupported else None
    plan = auto_plan(model, tp_size, overrides, declared=given)
    data = plan.to_json()
    data.update(model=type(model).__name__, dp_size=dp_size, memory=memory_per_rank(model, plan, dp_size))
    if source is not None:
        automatic = auto_plan(model, tp_size, overrides)
        data["declared"] = {"source": source, "plan": given, "left_to_the_automatic_plan": unsupported,
                            "differences": differences(plan, automatic, given)}
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
    d = data.get("declared")
    if d is not None:
        console.print(f"declared plan: {d['source']}, applied as given; the automatic plan fills the rest")
        for pattern, style in d["left_to_the_automatic_plan"].items():
            console.print(f"  {pattern}: '{style}' has no luminary style: left to the automatic plan")
        if d["differences"]:
            diff = Table(title="where the automatic plan alone differs")
            for col in ("module", "declared", "automatic", "why (automatic)"):
                diff.add_column(col, overflow="fold")
            for r in d["differences"]:
                diff.add_row(r["module"], r["declared"], r["automatic"], r["automatic_reason"])
            console.print(diff)
        else:
            console.print("  the automatic plan alone is the same")
    console.print(f"parameters: {m['params_total']:,.0f} in all, {m['params_per_rank']:,.0f} per rank "
                  f"(weights {m['weights_mib_per_rank']:.1f} MiB, fp32 AdamW training state "
                  f"{m['train_state_mib_per_rank']:.1f} MiB per rank)")
    return out.getvalue()


def format_check(results: list[dict[str, Any]]) -> str:
    """One line a mesh: the largest differences of the training step from one process."""
    lines = []
    for r in results:
        parts = ", ".join(f"{k} {r[k]['max_rel_diff']:.1e}" for k in ("logits", "loss", "gradient", "weight"))
        lines.append(f"check dp {r['dp']} x tp {r['tp']}: one training step matches one process ({parts})")
    return "\n".join(lines)


def write_plan(data: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, data)


def read_plan(path: Path) -> Plan:
    return Plan.from_json(read_json(Path(path)))
