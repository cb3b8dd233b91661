"""``luminary verify DIR``: recheck a release, file by file and sample by sample.

1. Every file's sha256 against ``MANIFEST.sha256`` (changed, missing, unlisted),
   every path inside the release (no ``..``, absolute path or symbolic link
   leading out), and what ``index.json`` records (each chunk's and weight
   file's sha256, each shard a checkpoint's index names) against the files.
2. Every chunk rebuilt from ``recipe.json`` (the sources re-read and
   re-tokenized with the released tokenizer) equals the released one.
3. The batch of every step, hashed from the released chunk, equals the hash the
   trainer logged in ``metrics.jsonl``: the chunks are what training saw.

Returns the list of problems, each naming its file; the CLI exits 1 if any.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from luminary.core.config import validate
from luminary.core.errors import LuminaryError
from luminary.core.io import contained, read_json, read_manifest, sha256_file, verify_manifest, weight_index_files
from luminary.core.progress import progress_bar
from luminary.core.runs import read_metrics
from luminary.pretrain.recipe import Recipe
from luminary.release.chunks import chunk_samples, jsonl_line, read_chunk, step_hashes
from luminary.release.git import check_git

DERIVED = ("analysis", "report", ".git")  # written after the release or beside it, outside the manifest


def _rebuild_mixture(release: Path, data_dir: Path):
    from luminary.pretrain.prepare import prepare

    recipe = validate(Recipe, read_json(release / "recipe.json"), str(release / "recipe.json"))
    recipe = recipe.model_copy(update={
        "tokenizer": recipe.tokenizer.model_copy(update={"path": str(release / "tokenizer")}),
        "data_dir": str(data_dir),
    })
    return prepare(recipe, data_dir)


def verify_release(release: str | Path, data_dir: str | Path | None = None, rebuild: bool = True,
                   allow_symlinks: bool = False) -> list[str]:
    release = Path(release)
    if not (release / "index.json").is_file():
        raise LuminaryError(f"{release}: not a release folder (no index.json)")
    read_manifest(release)  # a missing manifest is bad input
    problems = verify_manifest(release, ignore=DERIVED, allow_symlinks=allow_symlinks)
    try:
        index = read_json(release / "index.json")
        logged = {r["step"]: r.get("batch_sha256") for r in read_metrics(release / "metrics.jsonl")}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, LuminaryError) as exc:
        # a damaged index or log is already named by the manifest check; nothing more can be rebuilt
        return problems or [f"index.json or metrics.jsonl: unreadable ({exc})"]
    batch = index["global_batch"]
    problems += _index_claims(release, index)
    problems += check_git(release, index["checkpoints"])  # --git: each branch is its checkpoint
    for entry in index["checkpoints"]:
        try:
            chunk = contained(release, entry["chunk"], "index.json chunk")
        except LuminaryError as exc:
            problems.append(str(exc))
            continue
        if not chunk.is_file():
            continue  # already reported by the manifest check
        try:
            samples = read_chunk(chunk)
        except (ValueError, KeyError, OSError) as exc:
            problems.append(f"{entry['chunk']}: unreadable ({exc})")
            continue
        first = entry["chunk_steps"][0]
        for k, digest in enumerate(step_hashes(samples, batch)):
            if logged.get(first + k) != digest:
                problems.append(f"{entry['chunk']}: step {first + k} does not hash to what metrics.jsonl logged")
                break
    if rebuild and not any(p.startswith("recipe.json") or p.startswith("tokenizer/") for p in problems):
        with tempfile.TemporaryDirectory() as tmp:
            data = _rebuild_mixture(release, Path(data_dir) if data_dir else Path(tmp))
            problems += _compare_chunks(release, index, data.mixture)
    return problems


def _index_claims(release: Path, index: dict) -> list[str]:
    """What ``index.json`` records, checked against the files: each checkpoint and chunk inside the release,
    each chunk's and each weight file's sha256, each shard a checkpoint's own index names.

    A file changed and the manifest rewritten to match still fails here, unless
    ``index.json`` was rewritten as well (which the manifest covers): the
    manifest's own digest, printed by ``release verify``, is what to publish.
    """
    problems = []
    for entry in index["checkpoints"]:
        try:
            folder = contained(release, entry["checkpoint"], "index.json checkpoint")
            chunk = contained(release, entry["chunk"], "index.json chunk")
            if folder.is_dir():
                weight_index_files(folder)  # a shard named outside the checkpoint is refused here
        except LuminaryError as exc:
            problems.append(str(exc))
            continue
        if chunk.is_file() and entry.get("chunk_sha256") not in (None, sha256_file(chunk)):
            problems.append(f"{entry['chunk']}: sha256 differs from what index.json records")
        for name, digest in (entry.get("weights_sha256") or {}).items():
            path = folder / name
            if "/" in name or not path.is_file():
                problems.append(f"{entry['checkpoint']}/{name}: named by index.json, missing")
            elif sha256_file(path) != digest:
                problems.append(f"{entry['checkpoint']}/{name}: sha256 differs from what index.json records")
    return problems


def _compare_chunks(release: Path, index: dict, mixture) -> list[str]:
    problems = []
    with progress_bar("verify chunks", len(index["checkpoints"])) as bar:
        for entry in index["checkpoints"]:
            chunk = release / entry["chunk"]
            start, stop = entry["chunk_steps"]
            if chunk.suffix == ".jsonl" and chunk.is_file():
                expected = "".join(jsonl_line(s) for s in chunk_samples(mixture, start, stop))
                if chunk.read_text() != expected:
                    problems.append(f"{entry['chunk']}: differs from the chunk rebuilt from recipe.json")
            elif chunk.is_file():
                rebuilt = list(chunk_samples(mixture, start, stop))
                released = read_chunk(chunk)
                same = len(rebuilt) == len(released) and all(
                    a["source"] == b["source"] and a["input_ids"].tolist() == b["input_ids"].tolist()
                    for a, b in zip(rebuilt, released))
                if not same:
                    problems.append(f"{entry['chunk']}: differs from the chunk rebuilt from recipe.json")
            bar.advance()
    return problems
