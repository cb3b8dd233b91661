"""Nothing outside a folder is read or certified: verify names every escaping entry; loaders refuse them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from luminary.core.errors import LuminaryError
from luminary.core.io import MANIFEST, sha256_file, write_manifest
from luminary.release import verify_release


@pytest.fixture
def copy(tmp_path, release_dir) -> Path:
    """A release copied beside an ``outside`` folder that holds a copy of its first chunk."""
    folder = tmp_path / "rel"
    shutil.copytree(release_dir, folder)
    (tmp_path / "outside").mkdir()
    shutil.copy2(folder / "chunks" / "train_000.jsonl", tmp_path / "outside" / "train_000.jsonl")
    return folder


def add_manifest_line(folder: Path, rel: str, digest: str) -> None:
    with open(folder / MANIFEST, "a") as f:
        f.write(f"{digest}  {rel}\n")


def test_dotdot_and_absolute_manifest_entries_are_refused_unread(copy):
    outside = copy.parent / "outside" / "train_000.jsonl"
    digest = sha256_file(outside)
    add_manifest_line(copy, "../outside/train_000.jsonl", digest)
    add_manifest_line(copy, str(outside), digest)
    problems = verify_release(copy, rebuild=False)
    assert "../outside/train_000.jsonl: names a path outside the folder (refused, not read)" in problems
    assert f"{outside}: names a path outside the folder (refused, not read)" in problems


def test_a_file_replaced_by_a_symlink_fails_even_with_the_same_bytes(copy):
    chunk = copy / "chunks" / "train_000.jsonl"
    chunk.unlink()
    chunk.symlink_to(copy.parent / "outside" / "train_000.jsonl")
    problems = verify_release(copy, rebuild=False)
    assert any(p.startswith("chunks/train_000.jsonl: a symbolic link leading outside the folder") for p in problems)
    # a link that stays inside is refused too, unless asked for
    chunk.unlink()
    shutil.copy2(copy.parent / "outside" / "train_000.jsonl", copy / "train_000.jsonl")
    add_manifest_line(copy, "train_000.jsonl", sha256_file(copy / "train_000.jsonl"))
    chunk.symlink_to(Path("..") / "train_000.jsonl")
    problems = verify_release(copy, rebuild=False)
    assert any("chunks/train_000.jsonl: a symbolic link (pass --allow-symlinks" in p for p in problems)
    assert verify_release(copy, rebuild=False, allow_symlinks=True) == []


def test_a_symlinked_folder_is_listed(copy):
    (copy / "extra").symlink_to(copy.parent / "outside", target_is_directory=True)
    problems = verify_release(copy, rebuild=False)
    assert any(p.startswith("extra: a symbolic link leading outside the folder") for p in problems)


def test_weights_changed_and_the_manifest_rewritten_still_fail(copy):
    name = json.loads((copy / "index.json").read_text())["checkpoints"][2]["checkpoint"]
    weights = copy / name / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    write_manifest(copy)  # the tamperer rewrites the manifest to match
    problems = verify_release(copy, rebuild=False)
    assert problems == [f"{name}/model.safetensors: sha256 differs from what index.json records"]


def test_an_index_pointing_outside_is_named(copy):
    index = json.loads((copy / "index.json").read_text())
    index["checkpoints"][0]["chunk"] = "../outside/train_000.jsonl"
    (copy / "index.json").write_text(json.dumps(index))
    write_manifest(copy)
    problems = verify_release(copy, rebuild=False)
    assert any("index.json chunk '../outside/train_000.jsonl' lies outside the folder" in p for p in problems)


def test_a_checkpoint_shard_index_leaving_the_release_is_named(copy):
    ckpt = copy / json.loads((copy / "index.json").read_text())["checkpoints"][0]["checkpoint"]
    shutil.copy2(ckpt / "model.safetensors", copy.parent / "outside" / "model.safetensors")
    keys = json.loads(Path(ckpt / "config.json").read_text())  # any JSON: only the weight map matters
    assert keys
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"lm_head.weight": "../../../outside/model.safetensors"}}))
    write_manifest(copy)
    problems = verify_release(copy, rebuild=False)
    assert any("shard '../../../outside/model.safetensors' lies outside the folder" in p for p in problems)


@pytest.fixture
def escaping_model(tmp_path, tiny_llama, tokenizer) -> Path:
    """A model folder whose shard index names a file outside it (a real copy of its weights)."""
    folder = tmp_path / "model"
    tiny_llama.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (tmp_path / "elsewhere").mkdir()
    os.replace(folder / "model.safetensors", tmp_path / "elsewhere" / "x.safetensors")
    (folder / "model-00001-of-00001.safetensors").symlink_to(tmp_path / "elsewhere" / "x.safetensors")
    names = list(tiny_llama.state_dict())
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: "../elsewhere/x.safetensors" for n in names}}))
    return folder


def test_generate_and_merge_refuse_an_escaping_index(tmp_path, cli, escaping_model):
    import yaml

    cli("generate", escaping_model, "--prompt", "def ", "--max-new-tokens", "2").one_line_error(
        "shard '../elsewhere/x.safetensors' lies outside the folder; refused")
    config = tmp_path / "merge.yaml"
    config.write_text(yaml.safe_dump({"merge_method": "linear", "dtype": "float32",
                                      "models": [{"model": str(escaping_model), "parameters": {"weight": 1.0}}]}))
    cli("merge", config, "--out", tmp_path / "out").one_line_error("lies outside the folder; refused")
    assert not (tmp_path / "out").exists()


def test_a_hugging_face_cache_snapshot_is_inside_its_repo(tmp_path):
    from luminary.core.io import contained

    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_bytes(b"x")
    snapshot = repo / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("../../blobs/abc"))
    assert contained(snapshot, "model.safetensors") == (repo / "blobs" / "abc").resolve()
    with pytest.raises(LuminaryError, match="outside the folder"):
        contained(snapshot, "../../../elsewhere")
