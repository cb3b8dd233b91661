"""Shared fixtures: a tokenizer trained on the fly, tiny models. Nothing is downloaded."""

from __future__ import annotations

import json
import os
import sysconfig
from pathlib import Path

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import yaml  # noqa: E402

from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="session")
def stdlib_texts() -> list[str]:
    """A few dozen standard-library modules as text (real code, offline)."""
    files = sorted(STDLIB.glob("*.py"))[:40]
    return [f.read_text(encoding="utf-8", errors="ignore") for f in files]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, stdlib_texts) -> Path:
    """A 512-token byte-level BPE with luminary's special tokens, saved as a folder."""
    from luminary.data.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("tokenizer")
    train_bpe(stdlib_texts, vocab_size=512).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture
def tiny_crystal(tokenizer):
    from luminary.models import build_model

    return build_model("crystal-debug", len(tokenizer), seed=0)


@pytest.fixture
def tiny_llama(tokenizer):
    from luminary.models import build_model

    return build_model("llama-debug", len(tokenizer), seed=0)


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr

    def one_line_error(self, *needles: str) -> None:
        """Bad input: exit status 2 and one line on stderr (no traceback) holding every needle."""
        assert self.returncode == 2, (self.stdout, self.stderr)
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in self.stderr, self.stderr
        for needle in needles:
            assert needle in lines[0], lines[0]


@pytest.fixture
def cli(capsys):
    """Run ``luminary ARGS`` in this process; returns code, stdout and stderr."""
    from luminary.cli.app import main

    def invoke(*args) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return invoke


# --- a small pretraining run and its release, shared by the release and analysis tests ---

RELEASE_RECIPE = {
    "name": "tiny-release",
    "sources": {"prose": {"type": "stdlib-prose", "docstrings": False}, "code": {"type": "files", "path": None, "kind": "code"}},
    "tokenizer": {"path": None},
    "model": {"preset": "crystal-debug"},
    "train": {"global_batch": 4, "micro_batch": 4, "seq_len": 48},
    "phases": [
        {"name": "p1", "steps": 5, "weights": {"prose": 0.8, "code": 0.2},
         "schedule": {"kind": "linear", "peak_lr": 0.003, "warmup_steps": 1, "decay_steps": 30}},
        {"name": "p2", "steps": 5, "weights": {"prose": 0.3, "code": 0.7}, "fim": {"rate": 0.5},
         "schedule": {"kind": "linear", "peak_lr": "continue", "warmup_steps": 1}},
    ],
    "deploy": {"seed": 11, "precision": "fp32", "checkpoints": {"every": 3}},
    "validation": {"samples_per_source": 4, "batch_size": 4},
}


def fill_recipe(template: dict, root: Path, tokenizer_dir: Path, texts: list[str]) -> dict:
    """A copy of ``template`` whose ``code`` source is ``texts`` written under ``root/code``
    and whose tokenizer is the folder ``tokenizer_dir``."""
    code = root / "code"
    code.mkdir()
    for i, text in enumerate(texts):
        (code / f"m{i}.py").write_text(text)
    data = json.loads(json.dumps(template))
    data["sources"]["code"]["path"] = str(code)
    data["tokenizer"]["path"] = str(tokenizer_dir)
    return data


@pytest.fixture(scope="session")
def release_recipe(tmp_path_factory, tokenizer_dir, stdlib_texts):
    root = tmp_path_factory.mktemp("release_recipe")
    data = fill_recipe(RELEASE_RECIPE, root, tokenizer_dir, stdlib_texts[:10])
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, release_recipe):
    from luminary.pretrain.runner import pretrain

    out = tmp_path_factory.mktemp("runs") / "run"
    pretrain(release_recipe, out)
    return out


@pytest.fixture(scope="session")
def release_dir(tmp_path_factory, run_dir):
    from luminary.release import make_release

    return make_release(run_dir, tmp_path_factory.mktemp("releases") / "rel")
