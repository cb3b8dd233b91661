"""Every capability that trains takes the same deploy section, and means the same by it.

Pretraining, ``luminary train``, the scorer, a CTC aligner and SQL each run
three steps under ``torchrun --nproc-per-node 4`` with ``deploy: {dp: 2,
tp: 2}`` (the model built on the meta device and sharded before any process
fills its part) and in one process: the same batches, losses within 1e-5.
Each also runs compiled (``deploy.compile: true``) in one process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from luminary.core.io import write_jsonl
from luminary.core.runs import read_metrics
from tests.parallel.test_distributed import torchrun_env
from tests.train import capability_jobs

JOBS = Path(capability_jobs.__file__)
TOL = 1e-5


def tiny_bert(folder: Path, tokenizer_dir: Path, seed: int) -> str:
    """A 2-layer BERT encoder (hidden 32, 4 heads) with the given tokenizer, at random init.

    Dropout off: its masks are drawn per process, so with it no two meshes compute the same numbers.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id or 0,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def spec(tmp_path_factory, tokenizer_dir, stdlib_texts) -> Path:
    from luminary.ctc.encoder import default_encoder

    root = tmp_path_factory.mktemp("capability_inputs")
    code = root / "code"
    code.mkdir()
    for i, text in enumerate(stdlib_texts[:4]):
        (code / f"m{i}.py").write_text(text[:6000])
    pairs = [{"instruction": f"say something about item {i}", "response": r, "label": float(i % 2 == 0)}
             for i, r in enumerate(["return value", "zzz", "raise error", "qqq"] * 6)]
    write_jsonl(root / "pairs.jsonl", pairs)
    words = "the cat sat on the mat and looked at the dog".split()
    rows = [{"context": " ".join(words), "input_text": " ".join(words[i:i + 6]),
             "labels": [int((i + j) % 3 == 0) for j in range(6)]} for i in range(5)] * 4
    write_jsonl(root / "rows.jsonl", rows)
    data = {
        "tokenizer": str(tokenizer_dir), "code": str(code), "pairs": str(root / "pairs.jsonl"),
        "encoder": tiny_bert(root / "encoder", default_encoder(), 0),
        "aligner_encoder": tiny_bert(root / "aligner_encoder", default_encoder(), 1),
        "aligner_rows": str(root / "rows.jsonl"),
        "sql_examples": [["def add(a, b):", "return a + b"], ["import os", "import sys"], ["class A:", "pass"],
                         ["x = 1", "y = 2"], ["for i in x:", "print(i)"], ["while True:", "break"]],
    }
    path = root / "spec.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def one_process(spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one")
    capability_jobs.run(json.loads(spec.read_text()), list(capability_jobs.JOBS), "one", out)
    return out


@pytest.fixture(scope="module")
def four_processes(spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dp2tp2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", str(JOBS),
           str(spec), str(out), "dp2tp2"]
    result = subprocess.run(cmd, env=torchrun_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return out


@pytest.mark.parametrize("job", list(capability_jobs.JOBS))
def test_dp2_tp2_under_torchrun_logs_what_one_process_logs(job, one_process, four_processes):
    want, got = read_metrics(one_process / job / "metrics.jsonl"), read_metrics(four_processes / job / "metrics.jsonl")
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(capability_jobs.STEPS))
    for g, w in zip(got, want):
        assert g["batch_sha256"] == w["batch_sha256"] and g["lr"] == w["lr"]
        assert g["loss"] == pytest.approx(w["loss"], rel=TOL, abs=TOL), (job, g["step"])
        assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-4)
    run = json.loads((four_processes / job / "run.json").read_text())
    assert run["config"]["deploy"]["tp"] == 2


@pytest.mark.parametrize("job", list(capability_jobs.JOBS))
def test_each_capability_trains_compiled(job, spec, one_process, tmp_path):
    capability_jobs.run(json.loads(spec.read_text()), [job], "compiled", tmp_path)
    want, got = read_metrics(one_process / job / "metrics.jsonl"), read_metrics(tmp_path / job / "metrics.jsonl")
    assert [g["batch_sha256"] for g in got] == [w["batch_sha256"] for w in want]
    assert [g["loss"] for g in got] == pytest.approx([w["loss"] for w in want], rel=1e-3)
