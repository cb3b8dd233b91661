"""``luminary report RUN_OR_RELEASE``: one HTML page that shows the run.

Plots (PNG, matplotlib): loss, learning rate, gradient norm and tokens per
source over steps, with phase boundaries marked; per-source validation loss
over checkpoints; the memorization heatmap (checkpoints × chunks) and any
benchmark curves found under ``analysis/``; and, when ``analysis/harvest/``
holds a harvest over checkpoints (``luminary harvest RELATIONS --release
FOLDER``), per relation the tuples each checkpoint yields and their
precision@n where the relation has ground truth. The page references only
its own PNG files: it opens from disk with no server and no network.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from luminary.analysis.over_checkpoints import validation_curves  # noqa: E402
from luminary.core.errors import LuminaryError  # noqa: E402
from luminary.core.io import atomic_dir, read_json  # noqa: E402
from luminary.core.locks import locked  # noqa: E402
from luminary.data.fim import describe as describe_fim  # noqa: E402
from luminary.core.runs import read_metrics  # noqa: E402


def _phases(folder: Path) -> list[dict[str, Any]]:
    lock = folder / "recipe.lock.json"
    return read_json(lock)["phases"] if lock.is_file() else []


def _mark_phases(ax, phases: list[dict[str, Any]]) -> None:
    lo, hi = ax.get_xlim()
    for p in phases[1:]:
        ax.axvline(p["start_step"], color="grey", linestyle="--", linewidth=0.8)
    for p in phases:
        x = max(p["start_step"], lo)
        if x < hi:
            ax.text(x, 1.0, f" {p['name']}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="grey")
    ax.set_xlim(lo, hi)


def _draw(ax, title: str, series: dict[str, tuple[list, list]], ylabel: str, phases, marker: str = "") -> None:
    for label, (x, y) in series.items():
        ax.plot(x, y, marker, label=label, linewidth=1.2)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    _mark_phases(ax, phases)
    if len(series) > 1:
        ax.legend(fontsize=8)


def _line_plot(path: Path, title: str, series: dict[str, tuple[list, list]], ylabel: str, phases) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _draw(ax, title, series, ylabel, phases)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _panels_plot(path: Path, title: str, steps: list, metrics: dict[str, list], phases) -> None:
    """One panel per named score of a benchmark (their scales differ), side by side."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 1.5, 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], metrics.items()):
        _draw(ax, name, {name: (steps, values)}, name, phases, marker=".-")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _heatmap(path: Path, grid: dict[str, Any]) -> None:
    import numpy as np

    data = np.asarray(grid["token_match"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=max(float(data.max()), 1e-6), aspect="auto")
    ax.set_xlabel("data chunk")
    ax.set_ylabel("checkpoint (step)")
    ax.set_yticks(range(len(grid["steps"])), [str(s) for s in grid["steps"]], fontsize=7)
    ax.set_title(f"memorization: token match (k={grid['k']}, l={grid['l']}, {grid['samples']} samples)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _harvest_plot(path: Path, name: str, summary: dict[str, Any], phases) -> None:
    """Tuples per checkpoint and, with ground truth, precision@n per checkpoint, for one relation."""
    rel = summary["relations"][name]
    steps = [c["step"] for c in summary["checkpoints"]]
    metrics = {"tuples harvested": rel["tuples"]}
    if rel.get("precision") is not None:
        metrics[f"precision@{summary['precision_at']}"] = rel["precision"]
    _panels_plot(path, f"Knowledge over training (BertNet harvest): {name}", steps, metrics, phases)


def harvest_summary(folder: Path) -> dict[str, Any] | None:
    """``analysis/harvest/summary.json`` when it is a harvest over checkpoints, else None."""
    path = folder / "analysis" / "harvest" / "summary.json"
    if not path.is_file():
        return None
    summary = read_json(path)
    return summary if isinstance(summary, dict) and summary.get("kind") == "checkpoints" else None


def write_report(folder: str | Path) -> Path:
    folder = Path(folder)
    records = read_metrics(folder / "metrics.jsonl")
    if not records:
        raise LuminaryError(f"{folder}: no metrics.jsonl to report on")
    phases = _phases(folder)
    steps = [r["step"] for r in records]
    figures: list[tuple[str, str]] = []
    with locked(folder / "report", "report"), atomic_dir(folder / "report", overwrite=True) as out:
        def add(name: str, caption: str) -> Path:
            figures.append((name, caption))
            return out / name

        _line_plot(add("loss.png", "Training loss"), "training loss", {"loss": (steps, [r["loss"] for r in records])},
                   "loss", phases)
        _line_plot(add("lr.png", "Learning rate"), "learning rate", {"lr": (steps, [r["lr"] for r in records])},
                   "lr", phases)
        _line_plot(add("grad_norm.png", "Gradient norm (global L2, before clipping)"), "gradient norm",
                   {"grad_norm": (steps, [r["grad_norm"] for r in records])}, "norm", phases)
        if "source_tokens" in records[0]:
            sources = list(records[0]["source_tokens"])
            _line_plot(add("tokens.png", "Tokens seen per source"), "tokens seen per source",
                       {s: (steps, [r["source_tokens"][s] for r in records]) for s in sources}, "tokens", phases)
        try:
            curves = validation_curves(folder)
            _line_plot(add("val_loss.png", "Validation loss per source at each checkpoint"),
                       "validation loss per source",
                       {s: (curves["steps"], v) for s, v in curves["val_loss"].items()}, "loss", phases)
        except LuminaryError:
            pass
        analysis = folder / "analysis"
        if (analysis / "memorization.json").is_file():
            _heatmap(add("memorization.png", "Memorization across checkpoints and data chunks"),
                     read_json(analysis / "memorization.json"))
        for bench in sorted(analysis.glob("benchmark_*.json")) if analysis.is_dir() else []:
            b = read_json(bench)
            _panels_plot(add(f"{bench.stem}.png", f"Benchmark over checkpoints: {b['task']}"), b["task"],
                         b["steps"], b.get("metrics") or {"score": b["scores"]}, phases)
        harvest = harvest_summary(folder)
        for name in harvest["relations"] if harvest else []:
            caption = f"Harvested knowledge over checkpoints: {name}"
            if harvest["relations"][name].get("precision") is not None:
                caption += f" (tuples and precision@{harvest['precision_at']})"
            _harvest_plot(add(f"harvest_{name}.png", caption), name, harvest, phases)
        (out / "index.html").write_text(_page(folder, records, phases, figures))
    return folder / "report" / "index.html"


def _page(folder: Path, records, phases, figures) -> str:
    last = records[-1]
    rows = "".join(
        f"<tr><td>{html.escape(p['name'])}</td><td>{p['start_step']}</td><td>{p['steps']}</td>"
        f"<td>{html.escape(', '.join(f'{k} {v:.2f}' for k, v in p['weights'].items()))}</td>"
        f"<td>{html.escape(describe_fim(p['fim']))}</td></tr>" for p in phases)
    phase_table = (f"<h2>Phases</h2><table><tr><th>phase</th><th>first step</th><th>steps</th><th>weights</th>"
                   f"<th>FIM rate</th></tr>{rows}</table>") if phases else ""
    figs = "".join(f'<figure><img src="{html.escape(n)}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}'
                   f"</figcaption></figure>" for n, c in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>luminary report: {html.escape(folder.name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 520px; }}
figcaption {{ font-size: 0.85em; color: #555; }}
</style></head><body>
<h1>{html.escape(folder.name)}</h1>
<p>{len(records)} steps logged; last step {last['step']}: loss {last['loss']:.4f}, lr {last['lr']:.3g}.</p>
{phase_table}
<h2>Training</h2>
{figs}
</body></html>
"""
