"""``luminary report RUN_OR_RELEASE``: one HTML page that shows the run.

The page, top to bottom (a section only where there is something to show):

- **the model**: its name, a one-paragraph summary, and a table of facts
  (architecture, parameters counted from the final weights' headers, layers,
  width, heads, vocabulary, context; steps, target tokens and tokens per
  source seen; final loss and validation loss per source);
- **phases**: each phase's first step, length, source weights and FIM rate;
- **training**: loss on a log scale, smoothed (an exponential moving average,
  bias-corrected as TensorBoard's smoothing is) with the raw curve faint
  behind it; learning rate; gradient norm; tokens seen per source, all with
  the phase boundaries marked;
- **validation and evaluation**: per-source validation loss at each
  checkpoint; every benchmark curve under ``analysis/`` (``luminary analyze
  benchmark``, ``luminary evaluate``);
- **memorization** (LLM360's Analysis360): the token-match heatmap of
  checkpoints × data chunks with the chunks each checkpoint had already
  trained on outlined, the same for the full match, and the distribution of
  matched tokens per sample at the final checkpoint, chunk by chunk;
- **knowledge**: per relation harvested over checkpoints (``luminary
  harvest``), the tuples each checkpoint yields and their precision@n;
- **files**: a link to every checkpoint and every data chunk.

Under each figure, the numbers behind it: a table (at most ``TABLE_ROWS``
evenly spaced rows, first and last included) and a CSV file with every row.
Figures sit in a grid that fills the page's width. The page references only
its own files and the folder's: it opens from disk with no server and no
network.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from luminary.analysis.over_checkpoints import checkpoints_of, validation_curves  # noqa: E402
from luminary.core.errors import LuminaryError  # noqa: E402
from luminary.core.io import atomic_dir, read_json  # noqa: E402
from luminary.core.locks import locked  # noqa: E402
from luminary.core.runs import read_metrics  # noqa: E402
from luminary.data.fim import describe as describe_fim  # noqa: E402

TABLE_ROWS = 24
SMOOTHING = 0.9  # TensorBoard's default weight; fewer than 50 points: 0.6


@dataclass
class Figure:
    name: str  # the PNG's file name; the CSV is the same name with .csv
    caption: str
    columns: list[str]
    rows: list[list[Any]]
    wide: bool = False  # three panels or more: the whole row


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)


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


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _line_plot(path: Path, title: str, series: dict[str, tuple[list, list]], ylabel: str, phases) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    _draw(ax, title, series, ylabel, phases)
    _save(fig, path)


def smooth(values: list[float], weight: float | None = None) -> list[float]:
    """Bias-corrected exponential moving average: sₜ = mₜ / (1 − wᵗ⁺¹), mₜ = w·mₜ₋₁ + (1 − w)·xₜ, m₋₁ = 0.

    TensorBoard's scalar smoothing (its default weight 0.9 here; 0.6 for fewer than 50 points);
    the correction keeps the first points from being pulled toward zero.
    """
    w = weight if weight is not None else (SMOOTHING if len(values) >= 50 else 0.6)
    out, m = [], 0.0
    for t, x in enumerate(values):
        m = w * m + (1 - w) * x
        out.append(m / (1 - w ** (t + 1)))
    return out


def _loss_plot(path: Path, steps: list, loss: list[float], phases) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="raw")
    ax.plot(steps, smooth(loss), color="tab:blue", linewidth=1.6, label="smoothed")
    if min(loss) > 0:
        ax.set_yscale("log")
    ax.set_title("training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (log scale)" if min(loss) > 0 else "loss")
    _mark_phases(ax, phases)
    ax.legend(fontsize=8)
    _save(fig, path)


def _panels_plot(path: Path, title: str, steps: list, metrics: dict[str, list], phases) -> None:
    """One panel per named score of a benchmark (their scales differ), side by side."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 1.2, 3.4), squeeze=False)
    for ax, (name, values) in zip(axes[0], metrics.items()):
        _draw(ax, name, {name: (steps, values)}, name, phases, marker=".-")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def seen_chunks(n_checkpoints: int, n_chunks: int) -> list[list[bool]]:
    """[i][j]: checkpoint i had trained on chunk j (chunk j is what was seen after checkpoint j − 1 and up
    to checkpoint j, so checkpoint i has seen chunks 0..i)."""
    return [[j <= i for j in range(n_chunks)] for i in range(n_checkpoints)]


def _heatmap(path: Path, grid: dict[str, Any], key: str = "token_match") -> None:
    import numpy as np

    data = np.asarray(grid[key])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    top = float(data.max()) if float(data.max()) > 0 else 1.0  # nothing matched: the full scale
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=top, aspect="auto")
    # the staircase between seen (on and left of the diagonal) and unseen chunks
    n, m = data.shape
    xs, ys = [], []
    for i in range(n):
        edge = min(i, m - 1) + 0.5
        xs += [edge, edge]
        ys += [i - 0.5, i + 0.5]
    ax.plot(xs, ys, color="white", linewidth=1.5, linestyle="--")
    ax.text(0.01, 0.99, "left of the line: chunks already trained on", transform=ax.transAxes, va="top",
            fontsize=7, color="white")
    ax.set_xlabel("data chunk")
    ax.set_ylabel("checkpoint (step)")
    ax.set_yticks(range(len(grid["steps"])), [str(s) for s in grid["steps"]], fontsize=7)
    label = "token match" if key == "token_match" else "full match"
    ax.set_title(f"memorization: {label} (k={grid['k']}, l={grid['l']}, {grid['samples']} samples)", fontsize=9)
    fig.colorbar(im, ax=ax)
    _save(fig, path)


def _distribution_plot(path: Path, grid: dict[str, Any]) -> list[list[Any]]:
    """Share of samples matching m of l tokens at the final checkpoint, one line per chunk; its rows."""
    hist = grid["match_histogram"][-1]  # chunks × (l + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    rows = []
    for j, counts in enumerate(hist):
        total = max(sum(counts), 1)
        share = [c / total for c in counts]
        ax.plot(range(len(counts)), share, linewidth=1.0, label=f"chunk {j}")
        rows.append([j] + [round(s, 4) for s in share])
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel(f"tokens matched of l = {grid['l']}")
    ax.set_ylabel("share of samples")
    ax.set_title(f"memorization per sample at step {grid['steps'][-1]}", fontsize=9)
    if len(hist) <= 12:
        ax.legend(fontsize=6, ncol=2)
    _save(fig, path)
    return rows


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


def _columns(steps: list, series: dict[str, list]) -> tuple[list[str], list[list[Any]]]:
    names = list(series)
    return ["step"] + names, [[s] + [series[n][i] for n in names] for i, s in enumerate(steps)]


def _safetensors_parameters(folder: Path) -> int | None:
    """Parameters counted from the weight files' headers (no tensor is read); ties counted once."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total, seen = 0, set()
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                if key not in seen:
                    seen.add(key)
                    total += math.prod(handle.get_slice(key).get_shape())
    return total


def _name(folder: Path) -> str:
    for path, key in ((folder / "run.json", "config"), (folder / "recipe.json", None)):
        if path.is_file():
            data = read_json(path)
            data = data.get(key, {}) if key else data
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                return data["name"]
    return folder.name


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def _checkpoints(folder: Path) -> list:
    """The folder's checkpoints (``checkpoints_of``), none where it has none."""
    try:
        return checkpoints_of(folder)
    except LuminaryError:
        return []


def model_facts(folder: Path, records: list[dict[str, Any]], phases, refs: list,
                name: str) -> tuple[str, list[tuple[str, str]]]:
    """The report's summary paragraph and its facts table, from the final checkpoint and the log."""
    final = refs[-1].path if refs else None
    config = read_json(final / "config.json") if final and (final / "config.json").is_file() else {}
    get = lambda *keys: next((config[k] for k in keys if k in config), None)  # noqa: E731
    params = _safetensors_parameters(final) if final else None
    last = records[-1]
    kind = "release" if (folder / "index.json").is_file() else "run"
    facts: list[tuple[str, str]] = [("kind", kind)]
    arch = get("model_type")
    if arch:
        facts.append(("architecture", f"{arch} ({', '.join(config.get('architectures') or [])})"))
    for label, keys in (("layers", ("num_hidden_layers", "n_layer")), ("width", ("hidden_size", "n_embd", "d_model")),
                        ("attention heads", ("num_attention_heads", "n_head")), ("vocabulary", ("vocab_size",)),
                        ("context", ("max_position_embeddings", "n_positions"))):
        if get(*keys) is not None:
            facts.append((label, f"{get(*keys):,}"))
    if params:
        facts.append(("parameters", f"{params:,} ({_count(params)})"))
    facts.append(("steps", f"{last['step'] + 1:,}"))
    targets = sum(r.get("target_tokens", 0) for r in records)
    if targets:
        facts.append(("target tokens seen", f"{targets:,} ({_count(targets)})"))
    if "source_tokens" in last:
        facts.append(("tokens per source", ", ".join(f"{s} {_count(v)}" for s, v in last["source_tokens"].items())))
    if phases:
        facts.append(("phases", ", ".join(f"{p['name']} ({p['steps']} steps)" for p in phases)))
    facts.append(("final loss (smoothed)", f"{smooth([r['loss'] for r in records])[-1]:.4f}"))
    val = next((r["val_loss"] for r in reversed(records) if "val_loss" in r), None)
    if val:
        facts.append(("final validation loss", ", ".join(f"{s} {v:.4f}" for s, v in val.items())))
    facts.append(("checkpoints", str(len(refs))))
    size = f"a {_count(params)}-parameter " if params else "a "
    what = f"{arch} model" if arch else "model"
    summary = (f"{name}: {size}{what} trained for {last['step'] + 1:,} steps"
               + (f" on {_count(targets)} target tokens" if targets else "")
               + (f" in {len(phases)} phases" if phases else "")
               + f", {len(refs)} checkpoints; this page is its {kind}'s report.")
    return summary, facts


def _files(folder: Path, refs: list) -> list[tuple[str, str, str]]:
    """(label, link relative to report/, detail) for every checkpoint and data chunk."""
    out = []
    if (folder / "index.json").is_file():
        for e in read_json(folder / "index.json")["checkpoints"]:
            out.append((f"checkpoint step {e['step']}", f"../{e['checkpoint']}/",
                        f"{_count(e.get('tokens', 0))} tokens, loss {e.get('loss', float('nan')):.4f}"))
            if e.get("chunk"):
                steps = e.get("chunk_steps") or []
                out.append((f"chunk {Path(e['chunk']).stem}", f"../{e['chunk']}",
                            f"steps {steps[0]}..{steps[1] - 1}" if len(steps) == 2 else ""))
        return out
    for ref in refs:
        rel = os.path.relpath(ref.path, folder / "report")
        out.append((f"checkpoint step {ref.step}", f"{rel}/", ""))
    return out


def _table(columns: list[str], rows: list[list[Any]], limit: int | None = TABLE_ROWS) -> str:
    if limit is not None and len(rows) > limit:
        keep = sorted({round(i * (len(rows) - 1) / (limit - 1)) for i in range(limit)})
        rows = [rows[i] for i in keep]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _write_csv(path: Path, columns: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows(rows)
    path.write_text(buf.getvalue())


def write_report(folder: str | Path) -> Path:
    folder = Path(folder)
    records = read_metrics(folder / "metrics.jsonl")
    if not records:
        raise LuminaryError(f"{folder}: no metrics.jsonl to report on")
    phases = _phases(folder)
    steps = [r["step"] for r in records]
    training, evaluation = Section("Training"), Section("Validation and evaluation")
    memorization, knowledge = Section("Memorization"), Section("Knowledge over training")
    with locked(folder / "report", "report"), atomic_dir(folder / "report", overwrite=True) as out:
        def add(section: Section, name: str, caption: str, columns: list[str], rows: list[list[Any]]) -> Path:
            section.figures.append(Figure(name, caption, columns, rows, wide=len(columns) > 3 and
                                          name.startswith(("benchmark_", "harvest_"))))
            _write_csv(out / f"{Path(name).stem}.csv", columns, rows)
            return out / name

        loss = [r["loss"] for r in records]
        _loss_plot(add(training, "loss.png", "Training loss: smoothed, the raw curve faint behind it",
                       ["step", "loss", "smoothed"], [[s, l, m] for s, l, m in zip(steps, loss, smooth(loss))]),
                   steps, loss, phases)
        for key, caption, ylabel in (("lr", "Learning rate", "lr"),
                                     ("grad_norm", "Gradient norm (global L2, before clipping)", "norm")):
            values = [r[key] for r in records]
            _line_plot(add(training, f"{key}.png", caption, *_columns(steps, {key: values})),
                       caption.split(" (")[0].lower(), {key: (steps, values)}, ylabel, phases)
        if "source_tokens" in records[0]:
            series = {s: [r["source_tokens"][s] for r in records] for s in records[0]["source_tokens"]}
            if "target_tokens" in records[0]:
                series["target tokens (step)"] = [r.get("target_tokens") for r in records]
            columns, rows = _columns(steps, series)
            _line_plot(add(training, "tokens.png", "Tokens seen per source, counted from each batch", columns, rows),
                       "tokens seen per source", {s: (steps, v) for s, v in series.items() if "target" not in s},
                       "tokens", phases)
        try:
            curves = validation_curves(folder)
            _line_plot(add(evaluation, "val_loss.png", "Validation loss per source at each checkpoint",
                           *_columns(curves["steps"], curves["val_loss"])),
                       "validation loss per source",
                       {s: (curves["steps"], v) for s, v in curves["val_loss"].items()}, "loss", phases)
        except LuminaryError:
            pass
        analysis = folder / "analysis"
        for bench in sorted(analysis.glob("benchmark_*.json")) if analysis.is_dir() else []:
            b = read_json(bench)
            metrics = b.get("metrics") or {"score": b["scores"]}
            source = f" ({b['source']})" if b.get("source") else ""
            _panels_plot(add(evaluation, f"{bench.stem}.png", f"Benchmark over checkpoints: {b['task']}{source}",
                             *_columns(b["steps"], metrics)), b["task"], b["steps"], metrics, phases)
        if (analysis / "memorization.json").is_file():
            grid = read_json(analysis / "memorization.json")
            chunks = [f"chunk {j}" for j in range(len(grid["token_match"][0]))]
            for key, label in (("token_match", "token match"), ("full_match", "full match")):
                if key in grid:
                    rows = [[s] + list(v) for s, v in zip(grid["steps"], grid[key])]
                    _heatmap(add(memorization, f"memorization_{key}.png",
                                 f"Memorization ({label}) across checkpoints and data chunks; the dashed line "
                                 "separates the chunks each checkpoint had trained on", ["step"] + chunks, rows),
                             grid, key)
            if grid.get("match_histogram"):
                name = "memorization_distribution.png"
                rows = _distribution_plot(out / name, grid)
                add(memorization, name, f"Tokens matched per sample at step {grid['steps'][-1]}, by chunk",
                    ["chunk"] + [f"{m} of {grid['l']}" for m in range(grid["l"] + 1)], rows)
        harvest = harvest_summary(folder)
        for name in harvest["relations"] if harvest else []:
            rel = harvest["relations"][name]
            caption = f"Harvested knowledge over checkpoints: {name}"
            series = {"tuples": rel["tuples"]}
            if rel.get("precision") is not None:
                caption += f" (tuples and precision@{harvest['precision_at']})"
                series[f"precision@{harvest['precision_at']}"] = rel["precision"]
            _harvest_plot(add(knowledge, f"harvest_{name}.png", caption,
                              *_columns([c["step"] for c in harvest["checkpoints"]], series)), name, harvest, phases)
        name, refs = _name(folder), _checkpoints(folder)
        summary, facts = model_facts(folder, records, phases, refs, name)
        sections = [s for s in (training, evaluation, memorization, knowledge) if s.figures]
        (out / "index.html").write_text(_page(name, summary, facts, phases, sections, _files(folder, refs)))
    return folder / "report" / "index.html"


def _page(name: str, summary: str, facts, phases, sections: list[Section], files) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(p['name'])}</td><td>{p['start_step']}</td><td>{p['steps']}</td>"
        f"<td>{html.escape(', '.join(f'{k} {v:.2f}' for k, v in p['weights'].items()))}</td>"
        f"<td>{html.escape(describe_fim(p['fim']))}</td></tr>" for p in phases)
    phase_table = (f"<h2>Phases</h2><table><tr><th>phase</th><th>first step</th><th>steps</th><th>weights</th>"
                   f"<th>FIM rate</th></tr>{rows}</table>") if phases else ""
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    body = ""
    for section in sections:
        # a figure left alone on the last row takes the whole row, its numbers open beside it
        narrow = [f for f in section.figures if not f.wide]
        alone = narrow[-1] if len(narrow) % 2 and not section.figures[-1].wide else None
        figs = "".join(
            f'<figure id="{html.escape(Path(f.name).stem)}" class="{"alone" if f is alone else "wide" if f.wide else ""}">'
            f'<img src="{html.escape(f.name)}" alt="{html.escape(f.caption)}"><div>'
            f"<figcaption>{html.escape(f.caption)}</figcaption>"
            f"<details{' open' if f is alone else ''}><summary>numbers ({len(f.rows)} rows; all in "
            f'<a href="{html.escape(Path(f.name).stem)}.csv">{html.escape(Path(f.name).stem)}.csv</a>)</summary>'
            f"{_table(f.columns, f.rows)}</details></div></figure>" for f in section.figures)
        body += f'<h2>{html.escape(section.title)}</h2><div class="grid">{figs}</div>\n'
    links = "".join(f'<li><a href="{html.escape(href)}">{html.escape(label)}</a>'
                    f"{(' · ' + html.escape(detail)) if detail else ''}</li>" for label, href, detail in files)
    files_html = f'<h2>Files</h2><ul class="files">{links}</ul>' if files else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>luminary report: {html.escape(name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1240px; margin: 1.5em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
.facts th {{ background: #f4f4f4; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(min(520px, 100%), 1fr)); gap: 1em; }}
figure {{ margin: 0; min-width: 0; }} img {{ width: 100%; height: auto; display: block; }}
figure.wide {{ grid-column: 1 / -1; }}
figure.alone {{ grid-column: 1 / -1; display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1em; }}
figcaption {{ font-size: 0.85em; color: #555; margin: 0.3em 0; }}
details {{ font-size: 0.85em; }} details table {{ display: block; overflow-x: auto; max-height: 22em; }}
.files {{ columns: 3; font-size: 0.9em; }}
</style></head><body>
<h1>{html.escape(name)}</h1>
<p class="summary">{html.escape(summary)}</p>
<table class="facts">{fact_rows}</table>
{phase_table}
{body}{files_html}
</body></html>
"""
