"""``luminary harvest RELATIONS --model M --out DIR``: BertNet knowledge tuples from a masked or causal LM.

``--release R`` (a release or a run folder) harvests every checkpoint instead, into
``DIR/ckpt_NNN/`` with a summary over checkpoints (``DIR`` defaults to
``R/analysis/harvest``, where ``luminary report R`` finds it). ``--html`` adds ``DIR/index.html``.
"""

from __future__ import annotations

from pathlib import Path

import typer


def harvest(
    relations: Path = typer.Argument(..., help="relation set: YAML/JSON (relations: [...]) or BertNet relation_info"),
    model: Path = typer.Option(None, "--model", "-m", help="a masked-LM or causal-LM folder (save_pretrained)"),
    release: Path = typer.Option(None, "--release", help="a release or run folder: harvest every checkpoint"),
    out: Path = typer.Option(None, "--out", "-o", help="output folder (with --release: default R/analysis/harvest)"),
    n: int = typer.Option(1000, "--n", min=1, help="tuples to keep per relation"),
    search: str = typer.Option("dfs", "--search", help="dfs (exact, pruned) or beam"),
    max_ent_tokens: int = typer.Option(2, "--max-ent-tokens", min=1, max=4, help="subword tokens per entity"),
    paraphraser: Path = typer.Option(None, "--paraphraser", help="a causal-LM folder that paraphrases prompts"),
    precision_n: int = typer.Option(10, "--precision-at", min=1, help="n of precision@n against a relation's truth"),
    html: bool = typer.Option(False, "--html", help="also write OUT/index.html, a page to browse the graph"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("cpu", "--device"),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT once the new harvest is complete"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read *.bin weights with weights_only=True"),
) -> None:
    """Harvest tuples of each relation: paraphrase, weigh prompts on the seeds, search, rescore."""
    from luminary.core.config import validate
    from luminary.core.errors import LuminaryError
    from luminary.harvest.over_training import default_out, harvest_checkpoints
    from luminary.harvest.run import HarvestConfig, harvest as run_harvest

    if (model is None) == (release is None):
        raise LuminaryError("harvest: give exactly one of --model M or --release R")
    if model is not None and out is None:
        raise LuminaryError("harvest: --model needs --out DIR")
    cfg = validate(HarvestConfig, {"n": n, "search": search, "max_ent_tokens": max_ent_tokens,
                                   "batch_size": batch_size, "seed": seed, "device": device,
                                   "precision_at": precision_n,
                                   "paraphraser": str(paraphraser) if paraphraser else None}, "options")
    if release is not None:
        out = out or default_out(release)
        summary = harvest_checkpoints(relations, release, out, cfg, overwrite=overwrite, allow_pickle=allow_pickle,
                                      html=html)
        _print_over(summary)
    else:
        summary = run_harvest(relations, model, out, cfg, overwrite=overwrite, allow_pickle=allow_pickle, html=html)
        _print_one(summary)
    typer.echo(f"-> {out}" + (f"  (open {out / 'index.html'})" if html else ""))
    if out is not None:
        typer.echo(f"next: read {out}/summary.json" + ("" if html else f", or rerun with --html for {out}/index.html"))


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])


def _print_one(summary: list[dict]) -> None:
    rows = [("relation", "prompts", "tuples", "precision", "top tuple")]
    for s in summary:
        top = " | ".join(s["top"]) + f" ({s['top_score']:.3f})" if s["top"] else "-"
        p = s.get("precision")
        rows.append((s["relation"], str(s["prompts"]), str(s["tuples"]),
                     f"{p['precision']:.3f}@{p['n']}" if p else "-", top))
    _table(rows)


def _print_over(summary: dict) -> None:
    rows = [("relation", "checkpoint", "step", "tuples", f"precision@{summary['precision_at']}")]
    for name, rel in summary["relations"].items():
        for i, c in enumerate(summary["checkpoints"]):
            p = rel.get("precision")
            rows.append((name, c["name"], str(c["step"]), str(rel["tuples"][i]), f"{p[i]:.3f}" if p else "-"))
    _table(rows)


def register(app: typer.Typer) -> None:
    app.command("harvest")(harvest)
