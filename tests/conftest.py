"""Shared fixtures: a tokenizer trained on the fly, tiny models. Nothing is downloaded."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

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
