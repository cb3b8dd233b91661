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

    from luminary.merge.architectures import ModuleLayout

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
    template: str | None = None  # a module's layer names, "{i}" for the index (see module_view)
    pre: frozenset[str] | None = None  # a module's tensors before its layers (None: judged by name)

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
        if self.template is not None:
            return self.template.format(i=layer) + suffix
        return f"{self.prefix}{layer}.{suffix}"

    def is_pre(self, name: str) -> bool:
        """Whether a tensor outside the layers comes before them (embeddings) or after (norm, head)."""
        if self.pre is not None:
            return name in self.pre
        return "embed" in name or name.split(".")[-2:-1] in (["wte"], ["wpe"])

    def module_view(self, layout: "ModuleLayout") -> "ModelFolder":
        """This folder seen as one module of a multi-module model (``luminary.merge.architectures``):
        only the module's tensors, its layers numbered from 0 as the layout names them."""
        names = self.tensors.names()
        layers: dict[int, list[str]] = {}
        if layout.layer is not None and "{i}" in layout.layer:
            head, tail = layout.layer.split("{i}")
            pattern = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "(.+)$")
            for name in names:
                if match := pattern.match(name):
                    layers.setdefault(int(match.group(1)), []).append(match.group(2))
            if sorted(layers) != list(range(len(layers))):
                raise LuminaryError(f"{self.path}: layers {sorted(layers)} under '{head}': not numbered 0 to n-1")
        elif layout.layer is not None:
            suffixes = [name[len(layout.layer):] for name in names if name.startswith(layout.layer)]
            layers = {i: suffixes for i in range(layout.count or 0)} if suffixes else {}
        pre = [n for n in layout.pre if n in self.tensors]
        post = [n for n in layout.post if n in self.tensors]
        return ModelFolder(self.path, self.config, self.tensors, layers, outside=pre + post,
                           template=layout.layer, pre=frozenset(pre))

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
