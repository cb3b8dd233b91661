"""Small facts about ``torch.nn.Module`` objects that every layer needs."""

from __future__ import annotations

import torch
from torch import nn


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under a ``torch.compile`` wrapper (``OptimizedModule._orig_mod``)."""
    return getattr(model, "_orig_mod", model)


def list_blocks(model: nn.Module) -> list[str]:
    """Elements of the outermost ModuleLists that hold parameters: a model's blocks.

    They are the units that FSDP2 shards, activation checkpointing recomputes,
    compilation compiles and a fresh model initialises one at a time.
    """
    blocks: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and not any(name.startswith(b + ".") for b in blocks):
            blocks.extend(f"{name}.{i}" for i, child in enumerate(module)
                          if any(True for _ in child.parameters()))
    return blocks
