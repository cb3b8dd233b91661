"""Checkpoints: the model as ``save_pretrained``, the trainer state beside it.

    checkpoints/step_000120/
        config.json, model.safetensors, tokenizer files   (loads with transformers)
        trainer_state/trainer.json                         step, data position, ...
        trainer_state/optimizer.{json,safetensors}         AdamW moments (no pickle)
        trainer_state/rng.{json,safetensors}               Python, NumPy, torch RNGs
        trainer_state/extra_NAME.{json,safetensors}        e.g. a target network
        MANIFEST.sha256                                    written last

A checkpoint is built under a temporary name and renamed into place whole, so
a kill during writing leaves the previous checkpoint as the latest complete
one; the leftover is swept on the next start.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import (atomic_dir, load_state, read_json, read_safetensors_folder, save_state, sweep_temporaries,
                              write_manifest)
from luminary.core.runs import TRAINER_STATE, list_checkpoints
from luminary.data.tokenizer import save_tokenizer


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None,
    rng: dict[str, Any],
    extra: dict[str, Any],
    tokenizer: Any = None,
    card: str | None = None,
) -> None:
    """Write one checkpoint folder atomically (call on the main process only); ``card``: its README.md."""
    with atomic_dir(folder, overwrite=True) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp, getattr(model.config, "max_position_embeddings", None))
        state_dir = tmp / TRAINER_STATE
        state_dir.mkdir()
        (state_dir / "trainer.json").write_text(json.dumps(trainer_state, indent=2))
        if optimizer_state is not None:
            save_state(state_dir, "optimizer", optimizer_state)
        save_state(state_dir, "rng", rng)
        for name, value in extra.items():
            save_state(state_dir, f"extra_{name}", value)
        write_manifest(tmp)


def prune_checkpoints(checkpoints_dir: Path, keep_last: int | None, protected: set[int]) -> None:
    """Delete the oldest checkpoints beyond ``keep_last`` (never a protected step)."""
    if not keep_last:
        return
    found = list_checkpoints(checkpoints_dir)
    for step, path in found[:-keep_last]:
        if step not in protected:
            shutil.rmtree(path, ignore_errors=True)


def load_model_weights(model: torch.nn.Module, folder: Path) -> None:
    state = read_safetensors_folder(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise LuminaryError(
            f"{folder}: checkpoint does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def read_trainer_state(folder: Path) -> dict[str, Any]:
    path = folder / TRAINER_STATE / "trainer.json"
    if not path.is_file():
        raise LuminaryError(f"{path}: not found (not a luminary checkpoint?)")
    return read_json(path)


def load_named_state(folder: Path, name: str) -> Any:
    return load_state(folder / TRAINER_STATE, name)


def sweep(checkpoints_dir: Path) -> None:
    sweep_temporaries(checkpoints_dir)
