"""``luminary harvest RELATIONS --model M --out DIR``: BertNet knowledge tuples from a masked or causal LM."""

from __future__ import annotations

from pathlib import Path

import typer


def harvest(
    relations: Path = typer.Argument(..., help="relation set: YAML/JSON (relations: [...]) or BertNet relation_info"),
    model: Path = typer.Option(..., "--model", "-m", help="a masked-LM or causal-LM folder (save_pretrained)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder, one subfolder per relation"),
    n: int = typer.Option(1000, "--n", min=1, help="tuples to keep per relation"),
    search: str = typer.Option("dfs", "--search", help="dfs (exact, pruned) or beam"),
    max_ent_tokens: int = typer.Option(2, "--max-ent-tokens", min=1, max=4, help="subword tokens per entity"),
    paraphraser: Path = typer.Option(None, "--paraphraser", help="a causal-LM folder that paraphrases prompts"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("cpu", "--device"),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT once the new harvest is complete"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read *.bin weights with weights_only=True"),
) -> None:
    """Harvest tuples of each relation: paraphrase, weigh prompts on the seeds, search, rescore."""
    from luminary.core.config import validate
    from luminary.harvest.run import HarvestConfig, harvest as run_harvest

    cfg = validate(HarvestConfig, {"n": n, "search": search, "max_ent_tokens": max_ent_tokens,
                                   "batch_size": batch_size, "seed": seed, "device": device,
                                   "paraphraser": str(paraphraser) if paraphraser else None}, "options")
    summary = run_harvest(relations, model, out, cfg, overwrite=overwrite, allow_pickle=allow_pickle)
    rows = [("relation", "prompts", "tuples", "top tuple")]
    for s in summary:
        top = " | ".join(s["top"]) + f" ({s['top_score']:.3f})" if s["top"] else "-"
        rows.append((s["relation"], str(s["prompts"]), str(s["tuples"]), top))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    typer.echo(f"-> {out}")


def register(app: typer.Typer) -> None:
    app.command("harvest")(harvest)
