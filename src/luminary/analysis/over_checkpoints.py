"""Analyses repeated over a run's or a release's checkpoints, saved under ``analysis/``.

A release keeps its analyses in ``RELEASE/analysis/`` (outside the manifest:
they are derived, not released); a run keeps them in ``RUN/analysis/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_write_json, contained, read_json
from luminary.core.progress import progress_bar
from luminary.core.runs import list_checkpoints


@dataclass(frozen=True)
class CheckpointRef:
    index: int
    step: int
    path: Path


def is_release(folder: Path) -> bool:
    return (folder / "index.json").is_file()


def checkpoints_of(folder: str | Path) -> list[CheckpointRef]:
    folder = Path(folder)
    if is_release(folder):
        entries = read_json(folder / "index.json")["checkpoints"]
        refs = [CheckpointRef(i, e["step"], contained(folder, e["checkpoint"], "index.json checkpoint"))
                for i, e in enumerate(entries)]
    elif (folder / "checkpoints").is_dir() or (folder / "run.json").is_file():
        refs = [CheckpointRef(i, s, p) for i, (s, p) in enumerate(list_checkpoints(folder / "checkpoints"))]
    else:
        raise LuminaryError(f"{folder}: neither a run folder nor a release")
    if not refs:
        raise LuminaryError(f"{folder}: no checkpoints")
    return refs


def chunk_paths(release: Path) -> list[Path]:
    if not is_release(release):
        raise LuminaryError(f"{release}: not a release (memorization needs its data chunks; run `luminary release`)")
    return [contained(release, e["chunk"], "index.json chunk")
            for e in read_json(release / "index.json")["checkpoints"]]


def pick(items: list, i: int, flag: str) -> Any:
    if not 0 <= i < len(items):
        raise LuminaryError(f"{flag}: {i} is beyond the release's {len(items)} (0..{len(items) - 1})")
    return items[i]


def load_checkpoint(ref: CheckpointRef):
    from luminary.models import load_model, load_tokenizer

    model = load_model(ref.path).eval()
    tokenizer_dir = ref.path if (ref.path / "tokenizer.json").is_file() else ref.path.parent.parent / "tokenizer"
    return model, load_tokenizer(tokenizer_dir)


def memorization_of(release: str | Path, ckpt: int, chunk: int, k: int = 32, l: int = 32, samples: int = 1000):
    from luminary.analysis.memorization import memorization
    from luminary.release.chunks import read_chunk

    release = Path(release)
    ref = pick(checkpoints_of(release), ckpt, "--ckpt")
    path = pick(chunk_paths(release), chunk, "--chunk")
    model, _ = load_checkpoint(ref)
    return memorization(model, [s["input_ids"] for s in read_chunk(path)], k=k, l=l, n=samples)


def memorization_grid(release: str | Path, k: int = 32, l: int = 32, samples: int = 1000) -> dict[str, Any]:
    """Token-match scores for every checkpoint × chunk; saved to analysis/memorization.json."""
    from luminary.analysis.memorization import memorization
    from luminary.release.chunks import read_chunk

    release = Path(release)
    refs, chunks = checkpoints_of(release), chunk_paths(release)
    data = [[s["input_ids"] for s in read_chunk(p)] for p in chunks]
    token = np.zeros((len(refs), len(chunks)))
    full = np.zeros_like(token)
    per_sample: list[list[list[float]]] = [[[] for _ in chunks] for _ in refs]
    histogram = np.zeros((len(refs), len(chunks), l + 1), dtype=np.int64)  # samples matching m of l tokens
    with progress_bar("memorization", len(refs) * len(chunks)) as bar:
        for i, ref in enumerate(refs):
            model, _ = load_checkpoint(ref)
            for j, samples_j in enumerate(data):
                result = memorization(model, samples_j, k=k, l=l, n=samples)
                token[i, j], full[i, j] = result.token_match, result.full_match
                per_sample[i][j] = result.scores.tolist()
                histogram[i, j] = np.bincount(result.matches.sum(axis=1), minlength=l + 1)
                bar.advance()
    out = {"k": k, "l": l, "samples": samples, "steps": [r.step for r in refs],
           "token_match": token.tolist(), "full_match": full.tolist(),
           "scores": per_sample, "match_histogram": histogram.tolist()}
    atomic_write_json(release / "analysis" / "memorization.json", out)
    return out


def benchmark_over_checkpoints(folder: str | Path, name: str, task: Callable) -> dict[str, Any]:
    """``task(model, tokenizer)`` at every checkpoint; saved to analysis/benchmark_NAME.json.

    ``metrics`` holds one list per named score the task returns (a bare float is
    named ``score``); ``scores`` repeats the first, the headline.
    """
    folder = Path(folder)
    metrics: dict[str, list[float]] = {}
    refs = checkpoints_of(folder)
    with progress_bar(f"benchmark {name}", len(refs)) as bar:
        for i, ref in enumerate(refs):
            model, tokenizer = load_checkpoint(ref)
            result = task(model, tokenizer)
            values = dict(result) if isinstance(result, dict) else {"score": result}
            if not values or (i and values.keys() != metrics.keys()):
                raise LuminaryError(f"task {name}: returned {sorted(values)} at step {ref.step}; "
                                    f"every checkpoint must give the same named scores")
            for key, value in values.items():
                try:
                    metrics.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    raise LuminaryError(f"task {name}: score {key!r} at step {ref.step} is not a number: "
                                        f"{value!r}") from None
            bar.advance()
    out = {"task": name, "steps": [r.step for r in refs], "scores": next(iter(metrics.values()), []),
           "metrics": metrics}
    atomic_write_json(folder / "analysis" / f"benchmark_{name}.json", out)
    return out


def validation_curves(folder: str | Path) -> dict[str, Any]:
    """Per-source validation loss at each checkpoint step (logged by the pretraining run)."""
    from luminary.core.runs import read_metrics

    folder = Path(folder)
    records = [r for r in read_metrics(folder / "metrics.jsonl") if "val_loss" in r]
    if not records:
        raise LuminaryError(f"{folder}/metrics.jsonl: no validation losses logged")
    sources = sorted({s for r in records for s in r["val_loss"]})
    return {"steps": [r["step"] + 1 for r in records],
            "val_loss": {s: [r["val_loss"].get(s) for r in records] for s in sources}}
