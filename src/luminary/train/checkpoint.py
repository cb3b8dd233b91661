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
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from luminary.core.errors import LuminaryError
from luminary.core.io import MANIFEST, atomic_dir, load_state, save_state, sweep_temporaries, write_manifest

STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def list_checkpoints(checkpoints_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a manifest), by step."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = STEP_DIR.match(entry.name)
        if match and (entry / MANIFEST).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None,
    rng: dict[str, Any],
    extra: dict[str, Any],
    tokenizer: Any = None,
) -> None:
    """Write one checkpoint folder atomically (call on the main process only)."""
    with atomic_dir(folder, overwrite=True) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        state_dir = tmp / "trainer_state"
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


def read_model_weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise LuminaryError(f"{folder}: no safetensors weights in checkpoint")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def load_model_weights(model: torch.nn.Module, folder: Path) -> None:
    state = read_model_weights(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise LuminaryError(
            f"{folder}: checkpoint does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def read_trainer_state(folder: Path) -> dict[str, Any]:
    path = folder / "trainer_state" / "trainer.json"
    if not path.is_file():
        raise LuminaryError(f"{path}: not found (not a luminary checkpoint?)")
    return json.loads(path.read_text())


def load_named_state(folder: Path, name: str) -> Any:
    return load_state(folder / "trainer_state", name)


def sweep(checkpoints_dir: Path) -> None:
    sweep_temporaries(checkpoints_dir)
