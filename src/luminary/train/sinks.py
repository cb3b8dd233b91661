"""Where a step's record goes: ``metrics.jsonl`` always, TensorBoard and Weights & Biases on request.

``deploy.log: [tensorboard, wandb]`` adds sinks beside the JSONL file, which
stays the run's own record (resume truncates it, ``luminary report`` reads
it). Every sink gets the same fields: each number of the record, nested
ones flattened with ``/`` (``source_tokens/code``, ``val_loss/prose``), at
the step the record is for; text fields (the batch hash, the phase) are in
the JSONL file only.

- TensorBoard: event files under ``RUN/tensorboard`` through torch's
  ``SummaryWriter`` (the ``tensorboard`` package); on resume the steps after
  the restored checkpoint are purged, as they are from ``metrics.jsonl``.
- Weights & Biases: ``wandb.init(project, dir=RUN, mode=offline|online)``,
  the run's id kept in ``RUN/wandb_id`` so a resumed run continues the same
  W&B run. Offline runs are synced later with ``wandb sync RUN/wandb``.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_write_text
from luminary.core.runs import MetricsLog


def scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a record, nested dicts flattened as ``outer/inner``; step and text left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
            if math.isfinite(value):
                out[name] = float(value)
    return out


class TensorBoardSink:
    def __init__(self, folder: Path, start_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LuminaryError("deploy.log: tensorboard needs the tensorboard package "
                                "(pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"), purge_step=start_step or None)

    def write(self, record: dict[str, Any]) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, global_step=record["step"])

    def sync(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, folder: Path, project: str, mode: str, config: dict[str, Any] | None):
        try:
            import wandb
        except ImportError:
            raise LuminaryError("deploy.log: wandb needs the wandb package (pip install wandb)") from None
        id_file = folder / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        if not id_file.is_file():
            atomic_write_text(id_file, run_id + "\n")
        self.run = wandb.init(project=project, dir=str(folder), mode=mode, id=run_id, resume="allow",
                              config=config, name=folder.name, reinit="create_new")

    def write(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=record["step"])

    def sync(self) -> None:
        pass

    def close(self) -> None:
        self.run.finish()


class Sinks:
    """Every sink of a run; only the main process writes."""

    def __init__(self, jsonl: MetricsLog, names: list[str], start_step: int = 0, wandb_project: str = "luminary",
                 wandb_mode: str = "offline", config: dict[str, Any] | None = None):
        self.jsonl = jsonl
        self.others: list[Any] = []
        folder = jsonl.path.parent
        if jsonl.enabled:
            if "tensorboard" in names:
                self.others.append(TensorBoardSink(folder, start_step))
            if "wandb" in names:
                self.others.append(WandbSink(folder, wandb_project, wandb_mode, config))

    def write(self, record: dict[str, Any]) -> None:
        self.jsonl.write(record)
        for sink in self.others:
            sink.write(record)

    def sync(self) -> None:
        self.jsonl.sync()
        for sink in self.others:
            sink.sync()

    def close(self) -> None:
        self.jsonl.close()
        for sink in self.others:
            sink.close()
