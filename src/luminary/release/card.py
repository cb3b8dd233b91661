"""The release's model card: Hugging Face front matter, then the recipe and results."""

from __future__ import annotations

import math
from typing import Any

import yaml

from luminary.data.fim import describe as describe_fim
from luminary.pretrain.recipe import Recipe


def _is_stderr(metric: str) -> bool:
    """``acc_stderr``, or ``exact_match_stderr,strict-match`` (a stderr under a filter other than ``none``)."""
    return metric.partition(",")[0].endswith("_stderr")


def lm_eval_scores(summary: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``(task, metric, value)`` for every number in an lm-eval summary (the ``step_STEP.json``
    ``luminary evaluate`` writes), tasks sorted by name, each task's metrics in lm-eval's order;
    stderr entries and values that are not finite numbers are left out."""
    scores = []
    for task, result in sorted((summary.get("tasks") or {}).items()):
        for metric, value in (result.get("metrics") or {}).items():
            if _is_stderr(metric) or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if math.isfinite(value):
                scores.append((task, metric, float(value)))
    return scores


def _lm_eval_args(summary: dict[str, Any]) -> dict[str, Any]:
    """The settings the scores depend on (few-shot examples, rows scored), those that were given."""
    return {k: summary[k] for k in ("num_fewshot", "limit") if summary.get(k) is not None}


def lm_eval_results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """``model-index`` results for an lm-eval summary: one per task, each metric as lm-eval names it."""
    args = _lm_eval_args(summary)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for task, metric, value in lm_eval_scores(summary):
        entry = {"type": metric, "value": round(value, 4), "verified": False}
        if args:
            entry["args"] = dict(args)  # one copy each, or yaml writes &anchors and *aliases
        by_task.setdefault(task, []).append(entry)
    return [{"task": {"type": "text-generation", "name": "Text Generation"},
             "dataset": {"name": task, "type": task}, "metrics": metrics}
            for task, metrics in by_task.items()]


def model_index(name: str, recipe: Recipe, entry: dict[str, Any],
                lm_eval: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Hugging Face ``model-index`` results for what luminary measured on the final checkpoint: the
    validation loss per source (held-out documents of each source), as ``huggingface_hub`` parses them,
    then, given ``lm_eval`` (that checkpoint's ``luminary evaluate`` summary), each task's metrics."""
    results = []
    for source, value in sorted((entry.get("val_loss") or {}).items()):
        given = recipe.sources.get(source)
        results.append({
            "task": {"type": "text-generation", "name": "Text Generation"},
            "dataset": {"name": f"{source} (held out)", "type": (given.hub_dataset if given else None) or source,
                        "split": "validation"},
            "metrics": [{"type": "loss", "name": "validation loss", "value": round(float(value), 4)}],
        })
    if lm_eval:
        results += lm_eval_results(lm_eval)
    return [{"name": name, "results": results}] if results else []


def evaluation_section(summary: dict[str, Any], checkpoint: str) -> list[str]:
    """The card's ``## Evaluation`` lines: each lm-eval score of the final checkpoint, and how it was run."""
    version = summary.get("lm_eval_version", "unknown")
    args = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in _lm_eval_args(summary).items())
    lines = ["## Evaluation", "",
             f"`luminary evaluate` ran lm-evaluation-harness on the final checkpoint (`{checkpoint}`)"
             + (f" ({args})" if args else "") + ".", "",
             "| task | metric | value | lm-eval version |", "| --- | --- | --- | --- |"]
    for task, metric, value in lm_eval_scores(summary):
        lines.append(f"| {task} | {metric} | {value:.4f} | {version} |")
    return lines + [""]


def model_card(recipe: Recipe, lock: dict[str, Any], entries: list[dict[str, Any]],
               lm_eval: dict[str, Any] | None = None) -> str:
    """The card: front matter ``huggingface_hub.ModelCard`` parses (datasets as the recipe gives their
    Hub ids; no made-up names), then the data, phases and checkpoints; given ``lm_eval`` (the final
    checkpoint's ``luminary evaluate`` summary), its scores in ``model-index`` and an evaluation table."""
    sources = lock["sources"]
    front = {
        "license": "apache-2.0",
        "language": ["en", "code"],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["luminary", "llm360", "crystal", recipe.model.preset, "fill-in-the-middle"],
    }
    datasets = [s.hub_dataset for s in recipe.sources.values() if s.hub_dataset]
    if datasets:
        front["datasets"] = list(dict.fromkeys(datasets))
    index = model_index(recipe.name, recipe, entries[-1], lm_eval)
    if index:
        front["model-index"] = index
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {recipe.name}", "",
             f"A `{recipe.model.preset}` model pretrained with luminary in {len(lock['phases'])} phases "
             f"({lock['total_steps']} steps of {lock['global_batch']} × {lock['seq_len']} tokens), released "
             f"LLM360-style: {len(entries)} checkpoints and, for each, the exact data chunk it saw.", "",
             "## Data", "", "| source | type | documents | tokens | sha256 |", "| --- | --- | --- | --- | --- |"]
    for name, s in sources.items():
        lines.append(f"| {name} | {s['type']} | {s['documents']:,} | {s['tokens']:,} | `{s['sha256'][:16]}…` |")
    names = list(sources)
    lines += ["", "## Phases", "",
              "| phase | steps | " + " | ".join(f"{n} share" for n in names) + " | FIM rate | SPM | peak lr |",
              "| --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- | --- |"]
    for p in lock["phases"]:
        share = " | ".join(f"{p['weights'][n]:.2f}" for n in names)
        lines.append(f"| {p['name']} | {p['steps']} | {share} | {describe_fim(p['fim'])} | {p['fim']['spm']} | "
                     f"{p['schedule']['peak_lr']} |")
    lines += ["", "## Checkpoints", "",
              "| checkpoint | step | phase | loss | " + " | ".join(f"{n} val loss" for n in names) + " | chunk |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " | --- |"]
    for e in entries:
        val = e.get("val_loss") or {}
        vals = " | ".join(f"{val[n]:.3f}" if n in val else "-" for n in names)
        lines.append(f"| `{e['checkpoint']}` | {e['step']} | {e['phase']} | {e['loss']:.3f} | {vals} | `{e['chunk']}` |")
    lines.append("")
    if lm_eval and lm_eval_scores(lm_eval):
        lines += evaluation_section(lm_eval, entries[-1]["checkpoint"])
    lines += ["## Use", "", "```python", "import luminary  # registers the crystal architecture",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              f"model = AutoModelForCausalLM.from_pretrained('{entries[-1]['checkpoint']}')",
              "tokenizer = AutoTokenizer.from_pretrained('tokenizer')", "```", "",
              "`luminary verify .` rechecks every sha256 and rebuilds every chunk from `recipe.json`.", ""]
    return "\n".join(lines)
