"""Zoo fixtures for the merge tests: a base model and "fine-tuned" variants (base + seeded noise)."""

from __future__ import annotations

import pytest

from luminary.models import build_model

from tests.merge.merge_helpers import save_variant


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
