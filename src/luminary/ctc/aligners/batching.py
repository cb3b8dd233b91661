"""Batches for inference: sort by length, fill each batch up to a token budget.

A batch of B sequences padded to length T costs about B·T token positions;
sorting by length and cutting a batch when B·T would pass the budget keeps the
padding small (bert-score sorts by whitespace word count and cuts every 64
sentences, which pads much more when words and subword tokens disagree).
"""

from __future__ import annotations

from typing import Sequence

import torch


def length_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length with B·max(T) <= max_tokens (at least one each)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and lengths[i] * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad(rows: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists: (ids (B, T), attention mask (B, T))."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), value, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[b, : len(row)] = 1
    return ids, mask


def default_device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
