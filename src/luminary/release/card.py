"""The release's model card: Hugging Face front matter, then the recipe and results."""

from __future__ import annotations

from typing import Any

import yaml

from luminary.data.fim import describe as describe_fim
from luminary.pretrain.recipe import Recipe

def model_index(name: str, recipe: Recipe, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Hugging Face ``model-index`` results for what luminary measured on the final checkpoint: the
    validation loss per source (held-out documents of each source), as ``huggingface_hub`` parses them."""
    results = []
    for source, value in sorted((entry.get("val_loss") or {}).items()):
        given = recipe.sources.get(source)
        results.append({
            "task": {"type": "text-generation", "name": "Text Generation"},
            "dataset": {"name": f"{source} (held out)", "type": (given.hub_dataset if given else None) or source,
                        "split": "validation"},
            "metrics": [{"type": "loss", "name": "validation loss", "value": round(float(value), 4)}],
        })
    return [{"name": name, "results": results}] if results else []


def model_card(recipe: Recipe, lock: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    """The card: front matter ``huggingface_hub.ModelCard`` parses (datasets as the recipe gives their
    Hub ids; no made-up names), then the data, phases and checkpoints."""
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
    index = model_index(recipe.name, recipe, entries[-1])
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
    lines += ["", "## Use", "", "```python", "import luminary  # registers the crystal architecture",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              f"model = AutoModelForCausalLM.from_pretrained('{entries[-1]['checkpoint']}')",
              "tokenizer = AutoTokenizer.from_pretrained('tokenizer')", "```", "",
              "`luminary verify .` rechecks every sha256 and rebuilds every chunk from `recipe.json`.", ""]
    return "\n".join(lines)
