"""``luminary release RUN --out DIR``: a pretraining run as an LLM360-style release.

    DIR/checkpoints/ckpt_NNN/   each checkpoint as a Hugging Face folder
    DIR/chunks/train_NNN.jsonl  the samples seen after checkpoint N−1 and up to N
    DIR/index.json              per checkpoint: step, phase, lr, loss, tokens per source, files, sha256s
    DIR/metrics.jsonl           the run's log;  DIR/recipe.json, recipe.lock.json, tokenizer/
    DIR/README.md               a model card (Hugging Face front matter)
    DIR/MANIFEST.sha256         sha256 of every file

Unlike Amber, whose chunk order depended on where the run was restarted (a
shuffle seeded per launch), the order here is a pure function of the recipe:
a run killed and resumed releases byte-identical chunks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, read_json, remote_code_files, sha256_file, write_manifest
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


def make_release(run_dir: str | Path, out: str | Path, fmt: str = "jsonl", overwrite: bool = False) -> Path:
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
    if any(s not in metrics for s in range(last)):
        raise LuminaryError(f"{run_dir}/metrics.jsonl: steps before {last} are missing")
    entries: list[dict[str, Any]] = []
    with locked(out, "release"), atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "chunks").mkdir()
        (tmp / "checkpoints").mkdir()
        previous = 0
        with progress_bar("release", len(checkpoints)) as bar:
            for i, (step, folder) in enumerate(checkpoints):
                name = f"ckpt_{i:03d}"
                _copy_checkpoint(folder, tmp / "checkpoints" / name)
                chunk = tmp / "chunks" / chunk_name(i, fmt)
                write_chunk(chunk, chunk_samples(mixture, previous, step), fmt)
                record = metrics[step - 1]
                entries.append({
                    "checkpoint": f"checkpoints/{name}",
                    "step": step,
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
        shutil.copytree(data.tokenizer_dir, tmp / "tokenizer",
                        ignore=shutil.ignore_patterns(".tmp-*"))
        shutil.copy2(run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        shutil.copy2(run_dir / "recipe.lock.json", tmp / "recipe.lock.json")
        (tmp / "recipe.json").write_text(json.dumps(read_json(run_dir / "run.json")["config"], indent=2))
        index = {"format": fmt, "global_batch": mixture.global_batch, "seq_len": recipe.train.seq_len,
                 "checkpoints": entries}
        (tmp / "index.json").write_text(json.dumps(index, indent=2))
        (tmp / "README.md").write_text(model_card(recipe, data.lock, entries))
        write_manifest(tmp)
    return out
