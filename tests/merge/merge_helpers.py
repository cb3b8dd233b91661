"""Helpers shared by the merge tests: fine-tune-like variants of a model, and reading a folder's tensors."""

from __future__ import annotations

from pathlib import Path

import torch


def save_variant(base, folder: Path, tokenizer, seed: int, scale: float = 0.02):
    """Save ``base`` plus N(0, scale²) noise (seeded) as a model folder with ``tokenizer``."""
    model = type(base)(base.config)
    model.load_state_dict(base.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def state(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(f))
    return out
