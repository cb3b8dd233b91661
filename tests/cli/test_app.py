"""The command line: groups listed, bad input gives one line and exit 2."""

import pkgutil
import subprocess
import sys

import pytest
import torch

import luminary.cli as cli_pkg
from luminary.cli.app import MODULES
from luminary.models import build_model


def run(*args):
    return subprocess.run([sys.executable, "-m", "luminary", *map(str, args)], capture_output=True, text=True)


def test_every_cli_module_is_registered():
    modules = {f"luminary.cli.{m.name}" for m in pkgutil.iter_modules(cli_pkg.__path__)} - {"luminary.cli.app"}
    assert modules == set(MODULES)


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for name in ("train", "generate"):
        assert name in out.stdout



def test_bare_group_shows_its_help():
    out = run("merge")
    assert out.returncode == 0 and "Usage: luminary merge" in out.stdout and "search" in out.stdout, out.stderr


@pytest.mark.parametrize(
    "args, needles",
    [
        (["merge", "run", "cfg.yaml"], ["luminary merge run", "--out", "--help"]),
        (["train", "--bogus", "cfg.yaml"], ["luminary train", "No such option: --bogus"]),
        (["generate"], ["luminary generate", "Missing argument", "MODEL"]),
        (["nosuch"], ["No such command", "nosuch"]),
    ],
)
def test_usage_errors_one_line_exit_2(cli, args, needles):
    cli(*args).one_line_error(*needles)


@pytest.fixture
def good_config(tmp_path, tokenizer_dir):
    (tmp_path / "data.txt").write_text("def f(x):\n    return x\n" * 200)
    return (
        "model: llama-debug\n"
        f"tokenizer: {tokenizer_dir}\n"
        f"data: {{path: {tmp_path / 'data.txt'}, seq_len: 32}}\n"
        "train: {per_device_batch_size: 2, max_steps: 2}\n"
    )


@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda c: c + "optimiser: {lr: 0.1}\n", ["optimiser", "unknown key"]),
        (lambda c: c.replace("max_steps: 2", "max_steps: two"), ["train.max_steps"]),
        (lambda c: c.replace("max_steps: 2", "max_steps: -5"), ["train.max_steps", "greater than or equal to 0"]),
        (lambda c: c.replace("data.txt", "missing.txt"), ["data.path", "does not exist"]),
    ],
)
def test_bad_config_one_line_exit_2(tmp_path, cli, good_config, edit, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(edit(good_config))
    result = cli("train", path, "--out", tmp_path / "run")
    result.one_line_error(*needles)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_config_file(tmp_path, cli):
    cli("train", tmp_path / "nope.yaml").one_line_error("nope.yaml", "not found")


def test_debug_shows_the_traceback(tmp_path):
    result = run("train", tmp_path / "nope.yaml", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_train_then_generate(tmp_path, cli, good_config, tokenizer_dir):
    path = tmp_path / "ok.yaml"
    path.write_text(good_config)
    result = cli("train", path, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    ckpt = tmp_path / "run" / "checkpoints" / "step_000002"
    assert (ckpt / "tokenizer.json").is_file()
    out = cli("generate", ckpt, "--prompt", "def ", "--max-new-tokens", "5", "--greedy")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("def ")
    # an existing run folder is not overwritten without --resume
    again = cli("train", path, "--out", tmp_path / "run")
    again.one_line_error("--resume")


def test_pickle_model_refused_by_generate(tmp_path, cli, tokenizer):
    model = build_model("llama-debug", len(tokenizer), seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    cli("generate", tmp_path, "--prompt", "x").one_line_error("pytorch_model.bin", "refused")
    ok = cli("generate", tmp_path, "--prompt", "x", "--allow-pickle", "--max-new-tokens", "3")
    assert ok.returncode == 0, ok.stderr


def test_version_and_whole_help_lines():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("luminary 0.")
    listing = run("ctc", "--help").stdout
    commands = listing.split("Commands:")[1]
    assert "(no download)" in commands and "per example" in commands  # each first line whole, not cut at 45
    assert "CONFIG" in run("train", "--help").stdout
