"""Every shipped merge example runs as it is, on a toy zoo laid where the examples expect it."""

import shutil
from pathlib import Path

import pytest

from luminary.models import build_model

from tests.merge.merge_helpers import save_variant

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMMANDS = {"merge-ties": ["merge"], "merge-slerp": ["merge"], "merge-dare": ["merge"], "merge-search": ["merge", "search"],
            "merge-moe": ["moe"], "merge-glue": ["glue"]}


@pytest.fixture
def laid_zoo(tmp_path, tokenizer, stdlib_texts):
    zoo = tmp_path / "runs" / "zoo"
    base = build_model("llama-debug", len(tokenizer), seed=0)
    base.save_pretrained(zoo / "base")
    tokenizer.save_pretrained(zoo / "base")
    for i, name in enumerate(("math", "code", "chat")):
        save_variant(base, zoo / name, tokenizer, seed=i + 1, scale=0.001)
    (zoo / "heldout.txt").write_text(stdlib_texts[1][:2000])
    return tmp_path


def test_every_example_is_covered():
    assert {p.stem for p in EXAMPLES.glob("merge-*.yaml")} == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_example_runs(laid_zoo, cli, name):
    config = laid_zoo / f"{name}.yaml"
    shutil.copy(EXAMPLES / f"{name}.yaml", config)
    res = cli(*COMMANDS[name], config, "--out", laid_zoo / "out")
    assert res.returncode == 0, res.stderr
    assert (laid_zoo / "out" / "config.json").is_file() or (laid_zoo / "out" / "report.md").is_file()
