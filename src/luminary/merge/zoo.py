"""A model folder seen by the merger: its config, its tensors (lazily), its layer naming."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from luminary.core.errors import LuminaryError
from luminary.merge.tensorio import ModelTensors

if TYPE_CHECKING:
    import torch

# "model.layers.3.mlp.up_proj.weight" -> ("model.layers.", 3, "mlp.up_proj.weight"); GPT-2 style "h.3." too.
LAYER = re.compile(r"^((?:.*\.)?(?:layers|h|blocks|block|layer)\.)(\d+)\.(.+)$")


@dataclass
class ModelFolder:
    path: Path
    config: dict
    tensors: ModelTensors
    layers: dict[int, list[str]] = field(default_factory=dict)  # layer index -> suffixes in file order
    prefix: str = ""
    outside: list[str] = field(default_factory=list)  # tensors outside the numbered layers

    @classmethod
    def open(cls, path: str | Path) -> "ModelFolder":
        path = Path(path)
        if not path.is_dir():
            raise LuminaryError(f"{path}: model folder not found (luminary reads local folders only)")
        if not (path / "config.json").is_file():
            raise LuminaryError(f"{path}: no config.json (expected a folder written by save_pretrained)")
        try:
            config = json.loads((path / "config.json").read_text())
        except json.JSONDecodeError as exc:
            raise LuminaryError(f"{path}/config.json: line {exc.lineno}: not valid JSON") from None
        folder = cls(path, config, ModelTensors(path))
        for name in folder.tensors.names():
            match = LAYER.match(name)
            if match:
                folder.prefix = match.group(1)
                folder.layers.setdefault(int(match.group(2)), []).append(match.group(3))
            else:
                folder.outside.append(name)
        return folder

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def vocab_size(self) -> int | None:
        return self.config.get("vocab_size") or self.config.get("text_config", {}).get("vocab_size")

    @property
    def architecture(self) -> tuple:
        return tuple(self.config.get("architectures") or [self.config.get("model_type", "?")])

    def layer_tensor(self, layer: int, suffix: str) -> str:
        return f"{self.prefix}{layer}.{suffix}"

    def is_vocab_tensor(self, name: str) -> bool:
        """A tensor with one row per token (embeddings, output head) outside the layers."""
        info = self.tensors.infos[name]
        return name in self.outside and bool(info.shape) and info.shape[0] == self.vocab_size

    def close(self) -> None:
        self.tensors.close()


class Computed:
    """Tensors made before a merge runs (a mixture's router gates), read by the executor as a folder's are."""

    def __init__(self, tensors: dict[str, "torch.Tensor"]):
        self.path = Path("<computed>")
        self.tensors = self
        self._tensors = tensors

    def get(self, name: str) -> "torch.Tensor":
        return self._tensors[name].clone()  # the executor owns (and may change) what it reads

    def close(self) -> None:
        pass


def open_models(paths: list[str]) -> dict[str, ModelFolder]:
    return {p: ModelFolder.open(p) for p in paths}
