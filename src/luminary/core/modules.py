"""Small facts about ``torch.nn.Module`` objects that every layer needs."""

from __future__ import annotations

import torch


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under a ``torch.compile`` wrapper (``OptimizedModule._orig_mod``)."""
    return getattr(model, "_orig_mod", model)
