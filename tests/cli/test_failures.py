"""Every failure is one line and exit 2: a full disk, bytes that are not UTF-8, JSON that is not JSON,
an --out that is a file, a typo, a sequence longer than the model's positions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from luminary.core.io import verify_manifest
from luminary.core.runs import list_checkpoints

from tests.train.test_kill import env, rows


@pytest.fixture
def train_yaml(tmp_path, tokenizer_dir, stdlib_texts):
    data = tmp_path / "corpus"
    data.mkdir()
    for i, text in enumerate(stdlib_texts[:3]):
        (data / f"{i}.py").write_text(text)

    def write(name="train.yaml", **changes):
        config = {"model": "llama-debug", "tokenizer": str(tokenizer_dir), "data": {"path": str(data), "seq_len": 32},
                  "train": {"per_device_batch_size": 2, "max_steps": 6},
                  "deploy": {"seed": 1, "precision": "fp32", "checkpoints": {"every": 2, "keep_last": 10}}}
        for key, value in changes.items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write


def test_a_config_that_is_not_utf8_names_the_byte(tmp_path, cli):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"model: llama-debug\n\xff\xfe: 1\n")
    cli("train", path, "--out", tmp_path / "out").one_line_error(f"{path}: not UTF-8 text (byte 19")


def test_a_config_json_that_is_not_json_names_line_and_column(tmp_path, cli):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "llama",\n  oops}')
    cli("generate", tmp_path / "m", "--prompt", "x").one_line_error("config.json: line 2, column 3: not valid JSON")


def test_a_data_file_that_is_not_utf8_or_not_json_is_named(tmp_path, cli, train_yaml):
    bad = tmp_path / "rows.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": "\xff"}\n')
    config = train_yaml(data={"path": str(bad)})
    cli("train", config, "--out", tmp_path / "out").one_line_error(f"{bad}: not UTF-8 text (byte 27")
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    cli("train", config, "--out", tmp_path / "out").one_line_error(f"{bad}: line 2, column 10: not valid JSON")
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_refused_and_kept(tmp_path, cli, train_yaml):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    cli("train", train_yaml(), "--out", target).one_line_error(f"{target} is a file")
    assert target.read_text() == "mine"


def test_a_top_level_typo_is_named_with_a_suggestion(tmp_path, cli, release_recipe):
    recipe = yaml.safe_load(release_recipe.read_text())
    recipe["phasess"] = recipe.pop("phases")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cli("pretrain", path, "--out", tmp_path / "out").one_line_error("phasess: unknown key; did you mean 'phases'?")


def test_seq_len_above_the_position_limit_is_refused_before_any_data(tmp_path, cli, train_yaml, release_recipe):
    cli("train", train_yaml(data={"seq_len": 4096}), "--out", tmp_path / "a").one_line_error(
        "data.seq_len: 4096 is above the model's max_position_embeddings (256)")
    recipe = yaml.safe_load(release_recipe.read_text())
    recipe["train"]["seq_len"] = 4096
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cli("pretrain", path, "--out", tmp_path / "b").one_line_error(
        "train.seq_len: 4096 is above the model's max_position_embeddings (256)")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_missing_model_names_the_model_path(tmp_path, cli, train_yaml):
    cli("train", train_yaml(model=str(tmp_path / "nowhere")), "--out", tmp_path / "o").one_line_error(
        f"{tmp_path / 'nowhere'}: model folder not found")


def test_resume_refuses_another_runs_folder_and_touches_nothing(tmp_path, cli, train_yaml):
    out = tmp_path / "run"
    assert cli("train", train_yaml(), "--out", out).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = train_yaml("other.yaml", optimizer={"lr": 0.01})
    cli("train", other, "--out", out, "--resume").one_line_error("run.json: optimizer.lr is", "same run only")
    # a resume may change where it runs, not what it computes
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "metrics.jsonl").write_text('{"step": 0}\n' * 50)
    cli("train", train_yaml(), "--out", foreign, "--resume").one_line_error("holds files but no run.json")
    assert (foreign / "metrics.jsonl").read_text() == '{"step": 0}\n' * 50


TMPFS_MB = 8


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few MiB (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_resume_is_bitwise(tmp_path, train_yaml, small_disk):
    """Training fills the disk at a checkpoint: one line, exit 2, the earlier checkpoints intact,
    and (with space again) the resumed run equals an uninterrupted one."""
    config = train_yaml(train={"max_steps": 12})
    cmd = [sys.executable, "-m", "luminary", "train", str(config)]
    ref = tmp_path / "ref"
    subprocess.run([*cmd, "--out", str(ref)], check=True, env=env(), capture_output=True)
    per_checkpoint = sum(p.stat().st_size for p in (ref / "checkpoints" / "step_000002").rglob("*") if p.is_file())
    assert 2.5 * per_checkpoint < TMPFS_MB * 2**20 < 6 * per_checkpoint  # a few fit, not all six
    out = small_disk / "run"
    done = subprocess.run([*cmd, "--out", str(out)], env=env(), capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no space left on the device" in lines[0] and "MiB free" in lines[0], lines[0]
    saved = list_checkpoints(out / "checkpoints")
    assert saved and all(verify_manifest(folder) == [] for _, folder in saved)
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    subprocess.run([*cmd, "--out", str(out), "--resume"], check=True, env=env(), capture_output=True)
    assert rows(out / "metrics.jsonl") == rows(ref / "metrics.jsonl")
    assert (out / "checkpoints" / "step_000012" / "model.safetensors").read_bytes() == \
        (ref / "checkpoints" / "step_000012" / "model.safetensors").read_bytes()


def test_no_command_suggests_a_flag_that_does_not_exist(tmp_path, cli):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "made-up", "auto_map": {"AutoConfig": "x.Y"}}))
    res = cli("generate", tmp_path / "m", "--prompt", "x")
    res.one_line_error("remote code")
    assert "--trust-remote-code" not in res.stderr
