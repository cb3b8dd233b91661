"""Batches for inference: sort by length, cut by a token budget and a length spread.

A batch of B sequences padded to length T costs B·T token positions. Texts
are sorted by token count; a batch is cut when B·T would pass the budget or
when the next text is longer than the batch's shortest by more than
``spread`` (10 %, at least 2 tokens), so padding stays under about 10 % of
what is encoded. (bert-score sorts by whitespace word count and cuts every
64 texts, which pads much more when words and subword tokens disagree.)

On the CPU the budget also bounds the largest activation, the feed-forward
block's B·T × intermediate_size floats: glibc serves blocks above 32 MiB
with a fresh ``mmap`` every time, and first-touching those pages cost
luminary 15-20 % of the encoder's time at 8192 tokens on MiniLM (0.5M page
faults per 1000 pairs; none at 4096). :func:`token_budget` keeps that block
at 24 MiB.
"""

from __future__ import annotations

from typing import Sequence

import torch

from luminary.core.errors import LuminaryError


def length_batches(lengths: Sequence[int], max_tokens: int, spread: float = 0.1) -> list[list[int]]:
    """Indices grouped into batches of similar length with B·max(T) <= max_tokens (at least one each)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        too_long = current and lengths[i] > lengths[current[0]] + max(2, spread * lengths[current[0]])
        if current and (too_long or lengths[i] * (len(current) + 1) > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


ACTIVATION_BYTES = 24 * 2**20


def token_budget(config, device: torch.device, requested: int | None = None) -> int:
    """Tokens per encoder batch: ``requested``, else 16384 on an accelerator and, on the CPU,
    as many as keep the widest activation (B·T × intermediate_size float32) within 24 MiB (at least 256)."""
    if requested is not None:
        if requested < 1:
            raise LuminaryError(f"max_tokens must be positive, got {requested}")
        return requested
    if device.type != "cpu":
        return 16384
    width = max(getattr(config, "intermediate_size", 0) or 0, getattr(config, "hidden_size", 0) or 0, 1)
    return max(256, ACTIVATION_BYTES // (4 * width))


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
