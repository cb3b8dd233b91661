"""SIGTERM and SIGINT: the step in flight finishes, a checkpoint is written, resume is bit-exact."""

from __future__ import annotations

import signal
import subprocess
import time

from luminary.core.runs import list_checkpoints

from tests.train.test_kill import CONFIG, env, lines, rows, train_cmd

STEPS = 40


def stop_after_rows(config, out, n_rows, signum, resume):
    """Start training, send ``signum`` once ``metrics.jsonl`` has ``n_rows`` rows; (exit status, stderr)."""
    proc = subprocess.Popen(train_cmd(config, out, resume=resume), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and lines(metrics) < n_rows:
        time.sleep(0.002)
    assert proc.poll() is None, f"training ended before the signal: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signum)
    code = proc.wait(timeout=120)
    return code, proc.stderr.read()


def test_sigterm_then_sigint_save_the_step_reached_and_resume_bit_exact(tmp_path, tokenizer_dir, stdlib_texts):
    data = tmp_path / "corpus"
    data.mkdir()
    for i, text in enumerate(stdlib_texts[:6]):
        (data / f"{i}.py").write_text(text)
    config = tmp_path / "train.yaml"
    # checkpoints every 1000 steps: any checkpoint before the end is the signal's
    config.write_text(CONFIG.format(tokenizer=tokenizer_dir, data=data, steps=STEPS)
                      .replace("every: 4, keep_last: 2", "every: 1000"))
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(config, ref), check=True, env=env(), capture_output=True)

    out = tmp_path / "stopped"
    for n_rows, signum, resume in [(3, signal.SIGTERM, False), (15, signal.SIGINT, True)]:
        code, err = stop_after_rows(config, out, n_rows, signum, resume)
        assert code == 128 + signum, err
        step = lines(out / "metrics.jsonl")  # every row is a finished step; the last one is saved
        assert step < STEPS
        said = [line for line in err.splitlines() if line.strip()]
        assert said[-1].startswith(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint "), err
        assert "--resume" in said[-1] and "Traceback" not in err, err
        assert list_checkpoints(out / "checkpoints")[-1][0] == step
    subprocess.run(train_cmd(config, out, resume=True), check=True, env=env(), capture_output=True)
    assert rows(out / "metrics.jsonl") == rows(ref / "metrics.jsonl")
    name = f"step_{STEPS:06d}"
    assert (out / "checkpoints" / name / "model.safetensors").read_bytes() == \
        (ref / "checkpoints" / name / "model.safetensors").read_bytes()
