"""Safe IO: atomic files and folders, sha256 manifests, pickle-free state.

Atomic means: write under a temporary name in the same folder, fsync, then
``os.replace`` onto the final name. A process killed at any moment leaves
either the old content or the new, never a half-written file; temporary
leftovers start with ``.tmp-`` and are ignored (and swept) by readers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from luminary.core.errors import LuminaryError, is_no_space, no_space

TMP_PREFIX = ".tmp-"
MANIFEST = "MANIFEST.sha256"


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename is durable only after this)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    if path.is_dir():
        raise LuminaryError(f"{path}: is a folder, not a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_no_space(exc):
            raise no_space(path) from None
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name; it appears at ``path`` only whole.

    On an exception the temporary folder is removed and ``path`` is untouched.
    With ``overwrite``, an existing ``path`` is replaced only after the new
    content is complete.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LuminaryError(f"{path}: is a file, not a folder to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise LuminaryError(f"{path}: already exists (choose another output or remove it)")
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = path.parent / f"{TMP_PREFIX}old-{path.name}-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_no_space(exc):
            raise no_space(path) from None
        raise


def sweep_temporaries(folder: str | Path, prefixes: tuple[str, ...] = (TMP_PREFIX,)) -> list[Path]:
    """Remove leftovers of interrupted atomic writes in ``folder``: entries whose name starts with one
    of ``prefixes`` (default: every ``.tmp-`` entry)."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.name.startswith(prefixes):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(TMP_PREFIX))
        for name in sorted(filenames):
            if name == MANIFEST or name.startswith(TMP_PREFIX):
                continue
            files.append(Path(dirpath) / name)
    return files


def write_manifest(root: str | Path) -> Path:
    """Write ``MANIFEST.sha256`` (``sha256  relative/path`` lines, sorted) over a folder."""
    root = Path(root)
    lines = [f"{sha256_file(p)}  {p.relative_to(root).as_posix()}" for p in _manifest_files(root)]
    out = root / MANIFEST
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def read_manifest(root: str | Path) -> dict[str, str]:
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise LuminaryError(f"{path}: manifest not found")
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise LuminaryError(f"{path}: line {number} is not 'sha256  path'")
        entries[rel] = digest
    return entries


def symlinks(root: str | Path) -> list[Path]:
    """Every symbolic link under ``root`` (files and folders; a linked folder is not entered)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            if (Path(dirpath) / name).is_symlink():
                found.append(Path(dirpath) / name)
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
    return sorted(found)


def verify_manifest(root: str | Path, ignore: tuple[str, ...] = (), allow_symlinks: bool = False) -> list[str]:
    """Problems found against the manifest: changed, missing or unlisted files, paths that leave the folder.

    ``ignore``: top-level folders holding derived files (analyses, reports) that
    were added after the manifest and are not part of what it certifies. Every
    entry must name a path inside ``root`` (:func:`contained`); a symbolic link
    anywhere in the folder is a problem unless ``allow_symlinks``, and even then
    one that leads outside the folder is.
    """
    root = Path(root)
    expected = read_manifest(root)
    problems = []
    for rel, digest in expected.items():
        try:
            path = contained(root, rel, "manifest entry")
        except LuminaryError:
            problems.append(f"{rel}: names a path outside the folder (refused, not read)")
            continue
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel}: sha256 differs from the manifest")
    for link in symlinks(root):
        rel = link.relative_to(root).as_posix()
        if rel.split("/")[0] in ignore:
            continue
        target = link.resolve()
        inside = target == root.resolve() or root.resolve() in target.parents
        if not inside:
            problems.append(f"{rel}: a symbolic link leading outside the folder (to {target})")
        elif not allow_symlinks:
            problems.append(f"{rel}: a symbolic link (pass --allow-symlinks to accept links inside the folder)")
    for path in _manifest_files(root):
        rel = path.relative_to(root).as_posix()
        if rel not in expected and rel.split("/")[0] not in ignore and not path.is_symlink():
            problems.append(f"{rel}: not in the manifest")
    return problems


# --- pickle-free state -------------------------------------------------------
# Nested dicts/lists/tuples of tensors, numpy arrays and JSON scalars are split
# into a safetensors file (the arrays) and a JSON skeleton (everything else).


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, tensors) for k, v in obj.items()}}
        return {"__items__": [[_flatten(k, tensors), _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in a state file")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"].items()}
        if "__items__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
    return obj


WEIGHT_INDEX = "model.safetensors.index.json"


def contained(root: str | Path, rel: str, what: str = "entry") -> Path:
    """``root / rel``, refused unless it lies inside ``root`` once resolved.

    A path read from a manifest, an index or a config may not name an absolute
    path, climb out with ``..`` or pass through a symbolic link that leaves the
    folder: any of these reads a file the folder's owner never shipped. (A
    Hugging Face cache snapshot ``models--X/snapshots/REV`` counts as its repo
    folder ``models--X``, whose ``blobs/`` its files link into.)
    """
    root = Path(root)
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or "\\" in rel:
        raise LuminaryError(f"{root}: {what} '{rel}' is not a relative path inside the folder; refused")
    path = (root / rel).resolve()
    base = root.resolve()
    if root.parent.name == "snapshots":  # a Hugging Face cache snapshot: its files link into the repo's blobs/
        base = root.parent.parent.resolve()
    if path != base and base not in path.parents:
        raise LuminaryError(f"{root}: {what} '{rel}' lies outside the folder; refused")
    return path


def weight_index_files(folder: str | Path, index_name: str = WEIGHT_INDEX) -> list[Path] | None:
    """The shards a folder's weight index (``model.safetensors.index.json``, or another such as
    ``pytorch_model.bin.index.json``) names, each inside the folder and present; None when the folder
    has no index."""
    folder = Path(folder)
    index = folder / index_name
    if not index.is_file():
        return None
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise LuminaryError(f"{index}: not a weight index (no weight_map)")
    files = []
    for name in sorted(set(map(str, weight_map.values()))):
        path = contained(folder, name, f"{index_name} shard")
        if not path.is_file():
            raise LuminaryError(f"{index}: shard '{name}' is missing")
        files.append(path)
    return files


def remote_code_files(folder: str | Path) -> list[Path]:
    """The Python files a folder's ``config.json`` ``auto_map`` names (``modeling_crystal.Crystal…``
    -> ``modeling_crystal.py``), each inside the folder and present; the files that go with the
    weights so the folder loads with ``trust_remote_code=True``. Only files, never run here."""
    folder = Path(folder)
    config = folder / "config.json"
    data = read_json(config) if config.is_file() else {}
    auto_map = data.get("auto_map") if isinstance(data, dict) else None
    if not isinstance(auto_map, dict):
        return []
    names = set()
    for ref in auto_map.values():
        for one in ref if isinstance(ref, list) else [ref]:
            if isinstance(one, str) and "--" not in one:  # "repo--module.Class" points at another repository
                names.add(one.rsplit(".", 1)[0] + ".py")
    files = [contained(folder, name, "config.json auto_map module") for name in sorted(names)]
    return [f for f in files if f.is_file()]


def read_safetensors_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the ``*.safetensors`` files directly in ``folder`` (a model or checkpoint folder)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise LuminaryError(f"{folder}: no safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def save_state(folder: str | Path, name: str, state: Any) -> None:
    """Store a nested state as ``name.safetensors`` + ``name.json`` (no pickle)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(skeleton))


def load_state(folder: str | Path, name: str) -> Any:
    folder = Path(folder)
    skeleton_path = folder / f"{name}.json"
    if not skeleton_path.is_file():
        raise LuminaryError(f"{skeleton_path}: state file not found")
    tensors = load_file(str(folder / f"{name}.safetensors"))
    return _unflatten(json.loads(skeleton_path.read_text()), tensors)


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file; one line naming the file (and the byte offset) when it is missing, a folder
    or not UTF-8."""
    path = Path(path)
    if not path.exists():
        raise LuminaryError(f"{path}: {what} not found")
    if not path.is_file():
        raise LuminaryError(f"{path}: is a folder, not a {what}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LuminaryError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A JSON file; one line naming the file, line and column when it is not valid JSON."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise LuminaryError(f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Read JSONL; a bad line or a missing field names the file and line number."""
    path = Path(path)
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LuminaryError(f"{path}: line {number}, column {exc.colno}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise LuminaryError(f"{path}: line {number}: expected a JSON object")
        for key in required:
            if key not in row:
                raise LuminaryError(f"{path}: line {number}: missing field '{key}'")
        rows.append(row)
    return rows


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write JSONL atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
