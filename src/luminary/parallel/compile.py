"""Compiling each block for training, from outside (torchtitan's ``apply_compile``).

Each block (an element of the model's outermost ModuleLists) gets a subclass
of its own class whose ``forward`` runs ``torch.compile`` of the class's own
forward while training with gradients, and the plain forward otherwise:
generation and evaluation (varying lengths, a KV cache) never trigger a
compilation. One compiled function serves every block of a class (dynamo
takes their parameters as inputs), so a 32-block model compiles once.
Parameter names, ``state_dict`` and ``copy.deepcopy`` are unchanged.

Applied after tensor parallelism and activation checkpointing and before
FSDP2, so FSDP2's hooks stay outside the compiled region (torchtitan's order).
"""

from __future__ import annotations

import torch
from torch import nn

from luminary.core.modules import subclass_blocks

_SUBCLASSES: dict[type, type] = {}


def _compiled(cls: type) -> type:
    compiled_forward = torch.compile(cls.forward)

    def forward(self, *args, **kwargs):
        if self.training and torch.is_grad_enabled():
            return compiled_forward(self, *args, **kwargs)
        return cls.forward(self, *args, **kwargs)

    return type(f"Compiled{cls.__name__}", (cls,), {"forward": forward, "__module__": cls.__module__})


def apply_compile(model: nn.Module) -> list[str]:
    """Compile every block of ``model`` for training, in place; returns the blocks' names."""
    return subclass_blocks(model, _compiled, _SUBCLASSES, "deploy.compile")


def is_compiled(block: nn.Module) -> bool:
    return isinstance(block, tuple(_SUBCLASSES.values()))
