"""Run folders: ``run.json``, ``metrics.jsonl``, ``checkpoints/step_NNNNNN/``.

``run.json`` records what is needed to redo a run: the resolved config, the
seed, package versions and the git revision of the code. ``metrics.jsonl``
gets one line a step; on resume the
lines after the restored checkpoint are dropped so that the file reads as if
the run had never stopped. Lines are flushed at once and fsynced before each
checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from luminary.core.errors import no_space
from luminary.core.io import MANIFEST, atomic_write_json, atomic_write_text

STEP_DIR = re.compile(r"^step_(\d+)$")
TRAINER_STATE = "trainer_state"  # a checkpoint's optimizer, RNG and extra state, beside the model

PACKAGES = ("luminary", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pydantic")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            mod = sys.modules.get(name)
            versions[name] = getattr(mod, "__version__", "unknown")
    return versions


def git_revision(path: Path | None = None) -> str | None:
    here = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_json(folder: Path, config: dict[str, Any], seed: int, extra: dict[str, Any] | None = None) -> None:
    record = {
        "config": config,
        "seed": seed,
        "versions": package_versions(),
        "git_revision": git_revision(),
        "command": sys.argv,
        "host": platform.node(),
    }
    record.update(extra or {})
    atomic_write_json(folder / "run.json", record)


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line.

    Lines are flushed as written (a killed process loses none) and fsynced by
    :meth:`sync`, which the trainer calls before each checkpoint: every line up
    to a checkpoint is durable before the checkpoint exists.
    """

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._file = None

    def truncate_after(self, step: int) -> None:
        """Keep only complete records with ``step <= step`` (resume after a kill)."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill: nothing after it is trusted
            if record.get("step", 0) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise no_space(self.path) from None
            raise

    def sync(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checkpoint_name(step: int) -> str:
    """A checkpoint's folder name: the number of optimizer updates done."""
    return f"step_{step:06d}"


def list_checkpoints(checkpoints_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a manifest) under ``checkpoints_dir``, by step."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = STEP_DIR.match(entry.name)
        if match and (entry / MANIFEST).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)
