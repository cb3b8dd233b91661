"""The small recipe shared by the pretraining tests."""

import pytest

from tests.conftest import fill_recipe

RECIPE = {
    "name": "small",
    "sources": {"prose": {"type": "stdlib-prose", "docstrings": False}, "code": {"type": "files", "path": None, "kind": "code"}},
    "tokenizer": {"path": None},
    "model": {"preset": "crystal-debug"},
    "train": {"global_batch": 8, "micro_batch": 4, "seq_len": 64},
    "phases": [
        {"name": "p1", "steps": 6, "weights": {"prose": 0.9, "code": 0.1},
         "schedule": {"kind": "linear", "peak_lr": 0.003, "warmup_steps": 2, "decay_steps": 20}},
        {"name": "p2", "steps": 6, "weights": {"prose": 0.3, "code": 0.7}, "fim": {"rate": 0.9},
         "schedule": {"kind": "linear", "peak_lr": "continue", "warmup_steps": 1}},
    ],
    "deploy": {"seed": 5, "precision": "fp32", "checkpoints": {"count": 3}},
    "validation": {"samples_per_source": 4, "batch_size": 4},
    "completion_prompt": "def ",
}


@pytest.fixture
def recipe(tmp_path, tokenizer_dir, stdlib_texts):
    return fill_recipe(RECIPE, tmp_path, tokenizer_dir, stdlib_texts[:12])
