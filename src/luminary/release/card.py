"""The release's model card: Hugging Face front matter, then the recipe and results."""

from __future__ import annotations

from typing import Any

import yaml

from luminary.data.fim import describe as describe_fim
from luminary.pretrain.recipe import Recipe

DATASET_NAMES = {"stdlib-code": "cpython-stdlib-code", "stdlib-prose": "cpython-stdlib-docs"}


def model_card(recipe: Recipe, lock: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    sources = lock["sources"]
    front = {
        "license": "apache-2.0",
        "language": ["en", "code"],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["luminary", "llm360", "crystal", recipe.model.preset, "fill-in-the-middle"],
        "datasets": [DATASET_NAMES.get(s["type"], name) for name, s in sources.items()],
    }
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
