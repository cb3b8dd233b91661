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


# --- fixtures written by mergekit (tests/merge/make_mergekit_*.py): tiny models and expected tensors ---


def fixture_tensors(fixture: dict) -> dict[str, torch.Tensor]:
    """A fixture's tensors by key (``input/MODEL/NAME``, ``output/CASE/NAME``), float32."""
    return {k: torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"]) for k, v in fixture["tensors"].items()}


def write_fixture_models(fixture: dict, tensors: dict[str, torch.Tensor], root: Path) -> dict[str, Path]:
    """Each input model of ``fixture`` as a folder under ``root`` (its small files and ``model.safetensors``)."""
    from safetensors.torch import save_file

    out = {}
    for name, files in fixture["files"].items():
        folder = root / name
        folder.mkdir()
        for fname, text in files.items():
            (folder / fname).write_text(text)
        prefix = f"input/{name}/"
        save_file({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                  folder / "model.safetensors", metadata={"format": "pt"})
        out[name] = folder
    return out


def rename(config: dict, folders: dict) -> dict:
    """A fixture's config with each model name replaced by its folder."""
    import json

    text = json.dumps(config)
    for name, folder in folders.items():
        text = text.replace(f'"{name}"', json.dumps(str(folder)))
    return json.loads(text)
