"""Reward shaping: rewards on [0, 100] mapped linearly onto [min, max].

    r' = min + (max − min) · r / 100

(Guo et al. 2022, ``sql`` reward shaping; the config default of the authors'
code is [−10, 10], every published command uses [−50, 50].) With γ = 1 and
π = softmax(Q), the width of the range acts as an inverse temperature: a wider
range makes the learned policy sharper. Rewards outside [0, 100] (a negative
log-likelihood term, say) are mapped by the same line.
"""

from __future__ import annotations

import torch

from luminary.core.errors import LuminaryError


def check_range(low: float, high: float, field: str = "shaping") -> None:
    if not low < high:
        raise LuminaryError(f"{field}: min ({low}) must be smaller than max ({high})")


def shape_rewards(rewards: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """r' = low + (high − low) · r / 100."""
    check_range(low, high)
    return low + (high - low) * rewards / 100.0
