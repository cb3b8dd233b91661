"""A release holds exactly what each checkpoint saw, and verify proves it."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import torch
import yaml

from luminary.core.runs import read_metrics
from luminary.release import make_release, verify_release
from luminary.release.chunks import read_chunk, step_hashes


def test_release_layout_index_and_card(release_dir, run_dir):
    index = json.loads((release_dir / "index.json").read_text())
    steps = [e["step"] for e in index["checkpoints"]]
    assert steps == [3, 5, 6, 9, 10]  # every 3, the phase end, the end
    previous = 0
    for i, entry in enumerate(index["checkpoints"]):
        assert entry["chunk"] == f"chunks/train_{i:03d}.jsonl"
        assert entry["chunk_steps"] == [previous, entry["step"]]
        samples = read_chunk(release_dir / entry["chunk"])
        assert len(samples) == (entry["step"] - previous) * 4
        assert all(len(s["input_ids"]) == 49 for s in samples)
        assert (release_dir / entry["checkpoint"] / "model.safetensors").is_file()
        previous = entry["step"]
    assert index["checkpoints"][-1]["tokens_per_source"] == read_metrics(run_dir / "metrics.jsonl")[-1]["source_tokens"]
    card = (release_dir / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] and "luminary" in front["tags"]
    assert "datasets" not in front  # no source names a Hub dataset: none is made up
    # shaped like OLMo's revisions: named by step and tokens, the final model at the root
    names = [e["checkpoint"] for e in index["checkpoints"]]
    assert names[0] == f"checkpoints/step{index['checkpoints'][0]['step']:06d}-tokens576"  # 3 steps × 4 × 48
    assert names[-1] == f"checkpoints/step{index['checkpoints'][-1]['step']:06d}-tokens1.92K"  # 10 × 4 × 48
    assert index["final"] == names[-1]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = AutoModelForCausalLM.from_pretrained(release_dir)
    final = AutoModelForCausalLM.from_pretrained(release_dir, subfolder=names[-1])
    assert all(torch.equal(a, b) for a, b in zip(root.state_dict().values(), final.state_dict().values()))
    assert AutoTokenizer.from_pretrained(release_dir)("def f").input_ids


def test_every_step_rebuilt_from_the_release_hashes_to_the_log(release_dir):
    logged = [r["batch_sha256"] for r in read_metrics(release_dir / "metrics.jsonl")]
    index = json.loads((release_dir / "index.json").read_text())
    rebuilt = []
    for entry in index["checkpoints"]:
        rebuilt += step_hashes(read_chunk(release_dir / entry["chunk"]), index["global_batch"])
    assert rebuilt == logged


def test_verify_passes_then_names_any_changed_byte(tmp_path, release_dir):
    assert verify_release(release_dir) == []
    copy = tmp_path / "rel"
    shutil.copytree(release_dir, copy)
    files = sorted(p for p in copy.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256")
    for path in files:
        data = bytearray(path.read_bytes())
        position = len(data) // 2
        data[position] ^= 0x01
        path.write_bytes(bytes(data))
        problems = verify_release(copy, rebuild=False)
        rel = path.relative_to(copy).as_posix()
        assert any(p.startswith(rel + ":") for p in problems), (rel, problems)
        data[position] ^= 0x01
        path.write_bytes(bytes(data))
    assert verify_release(copy, rebuild=False) == []


def test_verify_rebuilds_chunks_from_the_recipe(tmp_path, release_dir, cli):
    copy = tmp_path / "rel"
    shutil.copytree(release_dir, copy)
    chunk = copy / "chunks" / "train_002.jsonl"
    lines = chunk.read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]  # same samples, another order
    chunk.write_text("\n".join(lines) + "\n")
    (copy / "MANIFEST.sha256").write_text((copy / "MANIFEST.sha256").read_text())  # manifest still old
    result = cli("verify", copy)
    assert result.returncode == 1
    assert "chunks/train_002.jsonl: differs from the chunk rebuilt from recipe.json" in result.stderr
    (copy / "index.json").unlink()
    missing = cli("verify", copy)
    assert missing.returncode == 2 and "index.json" in missing.stderr


def test_parquet_chunks_hold_the_same_samples(tmp_path, run_dir, release_dir):
    rel = make_release(run_dir, tmp_path / "pq", fmt="parquet")
    for i in range(5):
        a = read_chunk(rel / "chunks" / f"train_{i:03d}.parquet")
        b = read_chunk(release_dir / "chunks" / f"train_{i:03d}.jsonl")
        assert [(x["source"], x["input_ids"].tolist()) for x in a] == [(x["source"], x["input_ids"].tolist()) for x in b]
    assert verify_release(rel) == []


def test_bad_input(tmp_path, cli, run_dir, release_dir):
    empty = tmp_path / "norun"
    shutil.copytree(run_dir, empty, ignore=shutil.ignore_patterns("checkpoints"))
    result = cli("release", empty, "--out", tmp_path / "out")
    assert result.returncode == 2 and "no checkpoints" in result.stderr
    assert not (tmp_path / "out").exists()
    beyond = cli("analyze", "memorization", release_dir, "--ckpt", 7, "--chunk", 0)
    assert beyond.returncode == 2 and "--ckpt" in beyond.stderr
    beyond = cli("analyze", "memorization", release_dir, "--ckpt", 0, "--chunk", 5)
    assert beyond.returncode == 2 and "--chunk" in beyond.stderr
    exists = cli("release", run_dir, "--out", release_dir)
    assert exists.returncode == 2 and "already exists" in exists.stderr


def _env():
    return dict(os.environ, LUMINARY_QUIET="1", OMP_NUM_THREADS="1")


def test_killed_twice_and_resumed_releases_identical_chunks(tmp_path, release_recipe, release_dir):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "luminary", "pretrain", str(release_recipe), "--out", str(out)]
    logged = read_metrics(release_dir / "metrics.jsonl")
    step_s = sorted(r["tokens"] / r["tokens_per_s"] for r in logged)[len(logged) // 2]
    metrics = out / "metrics.jsonl"
    lines = lambda: metrics.read_text().count("\n") if metrics.exists() else 0  # noqa: E731
    rng = random.Random(3)
    kills = 0
    for attempt in range(2):  # kill at a random step's row plus a random part of a step, by progress not clock
        proc = subprocess.Popen(cmd + (["--resume"] if attempt else []), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        done = lines()  # a loaded machine may have let the last kill land a row late: never a bound below it
        target = rng.randint(done + 1, min(done + 3, 9))  # of the recipe's 10 steps
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and lines() < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, step_s))
        assert proc.poll() is None, f"pretraining ended before the kill: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
    assert kills == 2
    subprocess.run(cmd + ["--resume"], env=_env(), check=True, capture_output=True)
    rel = make_release(out, tmp_path / "rel")
    for i in range(5):
        name = f"chunks/train_{i:03d}.jsonl"
        assert (rel / name).read_bytes() == (release_dir / name).read_bytes()
    # (weights are bit-exact too under equal thread counts: tests/train/test_kill.py)
    steps = lambda folder: [e["step"] for e in json.loads((folder / "index.json").read_text())["checkpoints"]]  # noqa: E731
    assert steps(rel) == steps(release_dir)
