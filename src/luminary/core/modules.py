"""Small facts about ``torch.nn.Module`` objects that every layer needs."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from luminary.core.errors import LuminaryError


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


def subclass_blocks(model: nn.Module, derive: Callable[[type], type], made: dict[type, type], lever: str) -> list[str]:
    """Give every block of ``model`` the subclass ``derive(its class)``, in place; returns the blocks.

    How a lever is applied from outside without renaming anything: parameter
    names, ``state_dict``, ``save_pretrained`` and ``copy.deepcopy`` are the
    block's own. ``made`` caches one subclass per class (so levers compose and
    applying one twice is applying it once); ``lever`` names it in errors.
    """
    blocks = list_blocks(model)
    if not blocks:
        raise LuminaryError(f"{lever}: {type(model).__name__} has no list of blocks to apply it to")
    for name in blocks:
        block = model.get_submodule(name)
        if not isinstance(block, tuple(made.values())):
            cls = type(block)
            if cls not in made:
                made[cls] = derive(cls)
            block.__class__ = made[cls]
    return blocks
