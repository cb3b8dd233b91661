"""``luminary release --git``: branch main and one branch per checkpoint, as the Hub's revisions; the card's
front matter (datasets as given, model-index) as huggingface_hub reads it."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from luminary.release import make_release
from luminary.release.verify import verify_release


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def git_release(tmp_path_factory, run_dir):
    return make_release(run_dir, tmp_path_factory.mktemp("gitrel") / "rel", git=True)


def test_each_checkpoint_is_a_branch_with_its_files_at_the_root(git_release, tmp_path):
    from transformers import AutoModelForCausalLM

    index = json.loads((git_release / "index.json").read_text())
    names = [e["checkpoint"].split("/")[-1] for e in index["checkpoints"]]
    branches = git(git_release, "branch", "--format=%(refname:short)").split()
    assert sorted(branches) == sorted(["main", *names])
    assert git(git_release, "status", "--porcelain").strip() == ""  # main is the release as written
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--branch", names[1], str(git_release), str(clone)], check=True)
    files = sorted(p.name for p in clone.iterdir() if p.name != ".git")
    assert files == sorted(p.name for p in (git_release / index["checkpoints"][1]["checkpoint"]).iterdir())
    got = AutoModelForCausalLM.from_pretrained(clone)  # what revision= would give on the Hub
    want = AutoModelForCausalLM.from_pretrained(git_release, subfolder=index["checkpoints"][1]["checkpoint"])
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), want.state_dict().values()))
    assert verify_release(git_release, rebuild=False) == []


def test_the_same_release_gives_the_same_commits(git_release, run_dir, tmp_path):
    again = make_release(run_dir, tmp_path / "again", git=True)
    assert git(again, "rev-parse", "main") == git(git_release, "rev-parse", "main")


def test_verify_names_a_branch_that_is_not_its_checkpoint(git_release, tmp_path):
    import shutil

    copy = tmp_path / "rel"
    shutil.copytree(git_release, copy)
    index = json.loads((copy / "index.json").read_text())
    first, second = (e["checkpoint"].split("/")[-1] for e in index["checkpoints"][:2])
    git(copy, "update-ref", f"refs/heads/{first}", git(copy, "rev-parse", second).strip())
    problems = verify_release(copy, rebuild=False)
    assert any(p.startswith(f".git: branch {first}: model.safetensors differs") for p in problems), problems


def test_card_front_matter_lists_given_datasets_and_results():
    from huggingface_hub import ModelCard

    from luminary.release.card import model_card

    from tests.release.card_inputs import card_inputs

    recipe, lock, entries = card_inputs(hub_dataset="cerebras/SlimPajama-627B")
    card = ModelCard(model_card(recipe, lock, entries))
    assert card.data.datasets == ["cerebras/SlimPajama-627B"]
    results = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results == {("web (held out)", "loss"): 3.25, ("code (held out)", "loss"): 2.5}
