"""``luminary release RUN --out DIR``: a pretraining run as an LLM360-style release.

    DIR/config.json, model.safetensors, tokenizer files, ...
                                the final model, at the root (``from_pretrained(DIR)``)
    DIR/checkpoints/stepNNNNNN-tokensX/
                                each checkpoint as a Hugging Face folder, named by its step and the
                                target tokens seen, as OLMo's revisions are (``subfolder=``)
    DIR/chunks/train_NNN.jsonl  the samples seen after checkpoint N−1 and up to N
    DIR/index.json              per checkpoint: step, phase, lr, loss, tokens per source, files, sha256s
    DIR/metrics.jsonl           the run's log;  DIR/recipe.json, recipe.lock.json, tokenizer/
    DIR/README.md               a model card (Hugging Face front matter)
    DIR/MANIFEST.sha256         sha256 of every file
    DIR/.git                    with --git: branch main, and one branch per checkpoint holding its files
                                at the root, as the Hub's revisions (``luminary.release.git``)

Unlike Amber, whose chunk order depended on where the run was restarted (a
shuffle seeded per launch), the order here is a pure function of the recipe:
a run killed and resumed releases byte-identical chunks.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, contained, read_json, remote_code_files, sha256_file, write_manifest
from luminary.core.locks import locked
from luminary.core.progress import progress_bar
from luminary.core.runs import read_metrics
from luminary.release.card import model_card
from luminary.release.chunks import chunk_name, chunk_samples, write_chunk
from luminary.core.runs import list_checkpoints

HF_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json")


def _copy_checkpoint(src: Path, dst: Path) -> None:
    """Weights, configs, tokenizer and the modeling code the config's ``auto_map`` names."""
    dst.mkdir(parents=True)
    code = {p.name for p in remote_code_files(src)}
    for path in sorted(src.iterdir()):
        if path.is_file() and (path.suffix == ".safetensors" or path.name in HF_FILES or path.name in code
                               or path.name == "model.safetensors.index.json"):
            shutil.copy2(path, dst / path.name)


def checkpoint_name(step: int, tokens: int | None) -> str:
    """``step000480-tokens1.97M``: the step and the target tokens seen (3 significant digits)."""
    if tokens is None:
        return f"step{step:06d}"
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if tokens >= size:
            return f"step{step:06d}-tokens{tokens / size:.3g}{unit}"
    return f"step{step:06d}-tokens{tokens}"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Weights hard-linked (the final model at the root costs no second copy; nobody edits a
    safetensors file in place), every other file copied, so editing one never edits both."""
    if src.suffix == ".safetensors":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _is_lm_eval_summary(summary: Any) -> bool:
    """Shaped as ``luminary evaluate`` writes a step: ``{"tasks": {TASK: {"metrics": {...}, ...}}, ...}``."""
    tasks = summary.get("tasks") if isinstance(summary, dict) else None
    return isinstance(tasks, dict) and all(isinstance(t, dict) and isinstance(t.get("metrics", {}), dict)
                                           for t in tasks.values())


def final_lm_eval(run_dir: Path, step: int) -> dict[str, Any] | None:
    """The lm-eval summary ``luminary evaluate`` saved for the checkpoint at ``step``
    (``analysis/lm_eval/step_STEP.json``), or None when that checkpoint was not evaluated."""
    path = contained(run_dir, f"analysis/lm_eval/step_{step:06d}.json", "lm-eval results")
    if not path.is_file():
        return None
    summary = read_json(path, "lm-eval results")
    if not _is_lm_eval_summary(summary):
        raise LuminaryError(f"{path}: not lm-eval results as luminary evaluate writes them "
                            "(a 'tasks' mapping of each task to its 'metrics')")
    if summary.get("step", step) != step:
        raise LuminaryError(f"{path}: holds the results of step {summary['step']}, not {step}")
    return summary


def make_release(run_dir: str | Path, out: str | Path, fmt: str = "jsonl", overwrite: bool = False,
                 git: bool = False) -> Path:
    """Write the release (see the module docstring); ``git``: also a git repository with one branch per
    checkpoint (``luminary.release.git``)."""
    from luminary.pretrain.runner import open_run

    run_dir, out = Path(run_dir), Path(out)
    if fmt not in ("jsonl", "parquet"):
        raise LuminaryError(f"--format: '{fmt}' is not jsonl or parquet")
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    if not checkpoints:
        raise LuminaryError(f"{run_dir}: no checkpoints to release")
    recipe, data = open_run(run_dir)
    mixture = data.mixture
    metrics = {r["step"]: r for r in read_metrics(run_dir / "metrics.jsonl")}
    last = checkpoints[-1][0]
    lm_eval = final_lm_eval(run_dir, last)
    if any(s not in metrics for s in range(last)):
        raise LuminaryError(f"{run_dir}/metrics.jsonl: steps before {last} are missing")
    entries: list[dict[str, Any]] = []
    with locked(out, "release"), atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "chunks").mkdir()
        (tmp / "checkpoints").mkdir()
        previous = 0
        with progress_bar("release", len(checkpoints)) as bar:
            for i, (step, folder) in enumerate(checkpoints):
                record = metrics[step - 1]
                tokens = sum(record["source_tokens"].values()) if record.get("source_tokens") else None
                name = checkpoint_name(step, tokens)
                _copy_checkpoint(folder, tmp / "checkpoints" / name)
                chunk = tmp / "chunks" / chunk_name(i, fmt)
                write_chunk(chunk, chunk_samples(mixture, previous, step), fmt)
                entries.append({
                    "checkpoint": f"checkpoints/{name}",
                    "step": step,
                    "tokens": tokens,
                    "phase": record.get("phase"),
                    "lr": record["lr"],
                    "loss": record["loss"],
                    "val_loss": record.get("val_loss"),
                    "tokens_per_source": record.get("source_tokens"),
                    "chunk": f"chunks/{chunk.name}",
                    "chunk_steps": [previous, step],
                    "chunk_samples": [previous * mixture.global_batch, step * mixture.global_batch],
                    "chunk_sha256": sha256_file(chunk),
                    "weights_sha256": {p.name: sha256_file(p)
                                       for p in sorted((tmp / "checkpoints" / name).glob("*.safetensors"))},
                })
                previous = step
                bar.advance()
        final = tmp / entries[-1]["checkpoint"]
        for path in sorted(final.iterdir()):
            _link_or_copy(path, tmp / path.name)
        shutil.copytree(data.tokenizer_dir, tmp / "tokenizer",
                        ignore=shutil.ignore_patterns(".tmp-*"))
        shutil.copy2(run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        shutil.copy2(run_dir / "recipe.lock.json", tmp / "recipe.lock.json")
        (tmp / "recipe.json").write_text(json.dumps(read_json(run_dir / "run.json")["config"], indent=2))
        index = {"format": fmt, "global_batch": mixture.global_batch, "seq_len": recipe.train.seq_len,
                 "final": entries[-1]["checkpoint"], "checkpoints": entries}
        (tmp / "index.json").write_text(json.dumps(index, indent=2))
        (tmp / "README.md").write_text(model_card(recipe, data.lock, entries, lm_eval))
        write_manifest(tmp)
        if git:
            from luminary.release.git import write_git

            write_git(tmp, entries, date=f"{int((run_dir / 'metrics.jsonl').stat().st_mtime)} +0000")
    return out
