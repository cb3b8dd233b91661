"""Labels for token-level losses: the ignore index and the next-token shift.

Its own module so that every loss (plain, fused, a capability's own) and every
collate function agree on both without importing each other.
"""

from __future__ import annotations

import torch

IGNORE = -100  # a label position with no target (PyTorch's cross_entropy default ignore_index)


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Position t's target is label t+1; the last position has none (``IGNORE``).

    labels: (B, T) -> (B, T). Shifting the labels rather than the logits keeps
    the (B·T, V) logits as they lie, with no copy of ``logits[:, :-1]``.
    """
    return torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE)], dim=1)
