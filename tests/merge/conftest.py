"""Zoo fixtures for the merge tests: a base model and "fine-tuned" variants (base + seeded noise)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from luminary.models import build_model


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


@pytest.fixture
def zoo(tmp_path, tokenizer):
    """{'base', 'a', 'b', 'c'}: llama-debug folders; a, b, c are the base plus different noise."""
    base = build_model("llama-debug", len(tokenizer), seed=0)
    folders = {"base": tmp_path / "base"}
    base.save_pretrained(folders["base"])
    tokenizer.save_pretrained(folders["base"])
    for i, name in enumerate("abc"):
        folders[name] = save_variant(base, tmp_path / name, tokenizer, seed=i + 1)
    return folders


@pytest.fixture
def odd_models(tmp_path, tokenizer):
    crystal = build_model("crystal-debug", len(tokenizer), seed=0)
    crystal.save_pretrained(tmp_path / "crystal")
    wide = build_model("llama-debug", len(tokenizer), seed=0, intermediate_size=96)
    wide.save_pretrained(tmp_path / "wide")
    return tmp_path / "crystal", tmp_path / "wide"



def state(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(f))
    return out
