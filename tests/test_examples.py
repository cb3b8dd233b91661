"""Every shipped example config loads (and is exercised by some test)."""

from pathlib import Path

import pytest

from luminary.core.config import load_config
from luminary.pretrain.recipe import Recipe, check_recipe, phase_steps
from luminary.train.finetune import FinetuneConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_crystal_tiny_mirrors_crystal():
    recipe = load_config(EXAMPLES / "crystal-tiny.yaml", Recipe)
    check_recipe(recipe)
    code = [p.weights["code"] / sum(p.weights.values()) for p in recipe.phases]
    assert code == pytest.approx([0.05, 0.65, 0.83], abs=0.01)
    assert [p.fim.rate for p in recipe.phases] == [0.0, 0.9, 0.3]
    assert recipe.phases[1].schedule.peak_lr == "continue"
    # the examples that start from the demo's model name its last checkpoint
    last = f"step_{sum(phase_steps(recipe)):06d}"
    for name in ("finetune-tiny.yaml", "rl-return-lines.yaml", "rl-keyword.yaml"):
        assert f"runs/crystal-tiny/checkpoints/{last}" in (EXAMPLES / name).read_text()


def test_finetune_example_loads():
    config = load_config(EXAMPLES / "finetune-tiny.yaml", FinetuneConfig)
    assert (ROOT / config.data.path).is_file()


def test_every_example_is_used_by_a_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    for example in EXAMPLES.glob("*.yaml"):
        assert example.name in tests or example.stem in tests, f"{example.name} is not tested"


def test_scorer_examples_load():
    from luminary.scorer.experiment import DemoConfig
    from luminary.scorer.train import ScorerTrainConfig

    assert load_config(EXAMPLES / "scorer-demo.yaml", DemoConfig).n_candidates == 17
    train = load_config(EXAMPLES / "scorer-train.yaml", ScorerTrainConfig)
    assert (train.lr, train.warmup_ratio, train.weight_decay) == (2e-5, 0.1, 0.0)  # Cappy's defaults
