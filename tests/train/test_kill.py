"""Resume after a real SIGKILL, and a kill while a checkpoint is being written."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from luminary.core.runs import list_checkpoints

DETERMINISTIC = ("step", "loss", "lr", "grad_norm", "tokens", "batch_sha256")

CONFIG = """\
model: llama-debug
tokenizer: {tokenizer}
data: {{path: {data}, seq_len: 64}}
train: {{per_device_batch_size: 4, accumulate_grad_batches: 2, max_steps: {steps}}}
optimizer: {{lr: 0.003, weight_decay: 0.1}}
schedule: {{kind: cosine, peak_lr: 0.003, warmup_steps: 3}}
deploy: {{seed: 7, precision: fp32, checkpoints: {{every: 4, keep_last: 2}}}}
"""


def env():
    e = dict(os.environ, LUMINARY_QUIET="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return e


SCORER_CONFIG = """\
model: {model}
data: {data}
max_length: 32
lr: 0.001
per_device_batch_size: 4
accumulate_grad_batches: 2
max_steps: {steps}
max_grad_norm: 1.0
deploy: {{seed: 7, precision: fp32, checkpoints: {{every: 4, keep_last: 2}}}}
"""


def train_cmd(config, out, resume=False):
    command = ["scorer", "train"] if config.name.startswith("scorer") else ["train"]
    cmd = [sys.executable, "-m", "luminary", *command, str(config), "--out", str(out)]
    return cmd + (["--resume"] if resume else [])


def rows(path):
    return [[r[k] for k in DETERMINISTIC] for r in map(json.loads, Path(path).read_text().splitlines())]


@pytest.fixture
def config(tmp_path, tokenizer_dir, stdlib_texts):
    data = tmp_path / "corpus"
    data.mkdir()
    for i, text in enumerate(stdlib_texts[:6]):
        (data / f"{i}.py").write_text(text)
    path = tmp_path / "train.yaml"
    path.write_text(CONFIG.format(tokenizer=tokenizer_dir, data=data, steps=24))
    return path


@pytest.fixture
def scorer_config(tmp_path):
    """A scorer trained from a tiny BERT on labelled pairs (``luminary scorer train``)."""
    from luminary.core.io import write_jsonl
    from luminary.ctc.encoder import default_encoder
    from tests.train.test_every_capability import tiny_bert

    pairs = [{"instruction": f"item {i}", "response": r, "label": float(i % 2 == 0)}
             for i, r in enumerate(["return value", "zzz", "raise error", "qqq"] * 10)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    model = tiny_bert(tmp_path / "encoder", default_encoder(), 0)
    path = tmp_path / "scorer.yaml"
    path.write_text(SCORER_CONFIG.format(model=model, data=tmp_path / "pairs.jsonl", steps=24))
    return path


def lines(path):
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.parametrize("which", ["train", "scorer"])
def test_sigkill_at_random_moments_then_resume_is_bit_exact(tmp_path, request, which):
    config = request.getfixturevalue("config" if which == "train" else "scorer_config")
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(config, ref), check=True, env=env(), capture_output=True)
    expected = rows(ref / "metrics.jsonl")
    assert len(expected) == 24
    # one optimizer step's wall time in the reference run, to place kills inside a step
    logged = [json.loads(r) for r in (ref / "metrics.jsonl").read_text().splitlines()]
    step_s = sorted(r["tokens"] / r["tokens_per_s"] for r in logged)[len(logged) // 2]

    # Kill at a random point of steps 1..20: wait for that step's metrics row, then a random
    # fraction of a step more, so kills land mid-step and mid-checkpoint. Waiting on rows rather
    # than on the clock keeps the test meaningful on a machine that trains 24 steps in a second.
    out = tmp_path / "killed"
    metrics = out / "metrics.jsonl"
    rng = random.Random(0)
    kills = 0
    for attempt in range(3):
        proc = subprocess.Popen(train_cmd(config, out, resume=attempt > 0), env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        target = rng.randint(lines(metrics) + 1, 20)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and lines(metrics) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 2 * step_s))
        if proc.poll() is not None:
            err = proc.stderr.read()
            pytest.fail(f"training ended before the kill (exit {proc.returncode}): {err[-2000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
        if lines(metrics) >= 18:
            break
    assert kills >= 1
    subprocess.run(train_cmd(config, out, resume=True), check=True, env=env(), capture_output=True)
    assert rows(out / "metrics.jsonl") == expected
    # the final weights are identical too
    a = (ref / "checkpoints" / "step_000024" / "model.safetensors").read_bytes()
    b = (out / "checkpoints" / "step_000024" / "model.safetensors").read_bytes()
    assert a == b


KILL_DURING_SAVE = textwrap.dedent("""
    import sys, time
    import luminary.core.io as io
    import luminary.train.checkpoint as ckpt
    calls = {"n": 0}
    real = io.write_manifest
    def slow_manifest(root):
        calls["n"] += 1
        if calls["n"] == 2:          # the second checkpoint: stop half-way
            print("WRITING", flush=True)
            time.sleep(60)
        return real(root)
    ckpt.write_manifest = slow_manifest
    from luminary.cli.app import main
    main(sys.argv[1:])
""")


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, config):
    out = tmp_path / "run"
    script = tmp_path / "slow.py"
    script.write_text(KILL_DURING_SAVE)
    proc = subprocess.Popen([sys.executable, str(script), "train", str(config), "--out", str(out)],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "WRITING"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the partial checkpoint should be on disk under its temporary name"
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [4]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "step_000004")
    subprocess.run(train_cmd(config, out, resume=True), check=True, env=env(), capture_output=True)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [20, 24]
