"""One writer per output folder: train, pretrain, release and merge refuse a folder another process writes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from luminary.core.errors import LuminaryError
from luminary.core.io import verify_manifest
from luminary.core.locks import acquire, lock_path, locked, release
from luminary.core.runs import read_metrics

HOLD = "import sys; from luminary.core.locks import acquire; acquire(sys.argv[1]); print('held', flush=True); " \
       "sys.stdin.read()"


@contextlib.contextmanager
def held_by_another_process(folder: Path):
    """``folder``'s lock, held by a child process until the block ends (then the child exits)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_second_holder_is_named_and_a_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    with held_by_another_process(out) as pid:
        with pytest.raises(LuminaryError, match=f"being written by pid {pid} on "):
            acquire(out)
        assert json.loads(lock_path(out).read_text())["pid"] == pid
    # the holder is gone: its lock file stays, the OS lock does not
    assert lock_path(out).is_file()
    with locked(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
        with locked(out):  # the same process again: still held, not refused
            pass
        child = subprocess.run([sys.executable, "-c", HOLD, str(out)], input="", capture_output=True, text=True)
        assert child.returncode != 0 and f"being written by pid {os.getpid()}" in child.stderr, child.stderr
    release(out)


def test_the_next_writer_sweeps_an_interrupted_writers_leftovers(tmp_path):
    out = tmp_path / "rel"
    stale = [tmp_path / ".tmp-rel.abc123", tmp_path / ".tmp-old-rel-xyz"]
    for folder in stale:
        (folder / "chunks").mkdir(parents=True)
    other = tmp_path / ".tmp-release2.abc"  # another folder's: left alone
    other.mkdir()
    with locked(out):
        pass
    assert not any(p.exists() for p in stale) and other.exists()


def test_two_trainings_at_once_exactly_one_wins(tmp_path, train_config):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "luminary", "train", str(train_config), "--out", str(out)]
    env = dict(os.environ, LUMINARY_QUIET="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert len(loser.strip().splitlines()) == 1 and "Traceback" not in loser, loser
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(8))


def test_train_and_pretrain_refuse_a_folder_being_written(tmp_path, cli, train_config, release_recipe):
    for args in (["train", train_config], ["pretrain", release_recipe]):
        out = tmp_path / args[0]
        with held_by_another_process(out) as pid:
            cli(*args, "--out", out).one_line_error(f"being written by pid {pid}")
            cli(*args, "--out", out, "--resume").one_line_error(f"being written by pid {pid}")
            assert not out.exists()


def test_release_refuses_a_folder_being_written_then_wins_and_verifies(tmp_path, cli, run_dir):
    out = tmp_path / "rel"
    with held_by_another_process(out) as pid:
        cli("release", run_dir, "--out", out).one_line_error(f"being written by pid {pid}")
        assert not out.exists()
    assert cli("release", run_dir, "--out", out).returncode == 0
    assert verify_manifest(out) == []


def test_merge_refuses_a_folder_being_written(tmp_path, cli, tiny_llama, tokenizer):
    model = tmp_path / "m"
    tiny_llama.save_pretrained(model)
    tokenizer.save_pretrained(model)
    config = tmp_path / "merge.yaml"
    config.write_text(yaml.safe_dump({"merge_method": "linear", "dtype": "float32",
                                      "models": [{"model": str(model), "parameters": {"weight": 1.0}}]}))
    out = tmp_path / "merged"
    with held_by_another_process(out) as pid:
        cli("merge", config, "--out", out).one_line_error(f"being written by pid {pid}")
        assert not out.exists()
    assert cli("merge", config, "--out", out).returncode == 0
    assert verify_manifest(out) == []


@pytest.fixture
def train_config(tmp_path, tokenizer_dir, stdlib_texts):
    data = tmp_path / "corpus"
    data.mkdir()
    for i, text in enumerate(stdlib_texts[:3]):
        (data / f"{i}.py").write_text(text)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({
        "model": "llama-debug", "tokenizer": str(tokenizer_dir), "data": {"path": str(data), "seq_len": 32},
        "train": {"per_device_batch_size": 2, "max_steps": 8},
        "deploy": {"seed": 1, "precision": "fp32", "checkpoints": {"every": 4}},
    }))
    return path


def test_a_finished_run_frees_its_folder_for_other_processes(tmp_path, cli, train_config):
    out = tmp_path / "run"
    assert cli("train", train_config, "--out", out).returncode == 0  # in this process
    child = subprocess.run([sys.executable, "-c", HOLD, str(out)], input="", capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    cli("train", train_config.with_name("missing.yaml"), "--out", out)  # a refused start leaves it free too
    bad = tmp_path / "other.yaml"
    bad.write_text(train_config.read_text().replace("seed: 1", "seed: 2"))
    cli("train", bad, "--out", out, "--resume").one_line_error("deploy.seed is 1 there and 2 here")
    child = subprocess.run([sys.executable, "-c", HOLD, str(out)], input="", capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
