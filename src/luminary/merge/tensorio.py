"""Tensor-by-tensor IO on safetensors shards, with no memory map and no shard buffer.

Reading: the safetensors header (8-byte little-endian length, then a JSON map
``name -> {dtype, shape, data_offsets}``) is parsed once per shard; a tensor is
read with one positioned read into a fresh buffer. A memory map (what
``safe_open`` uses) would leave every touched page of every input counted in the
process's resident memory until the file is closed, so a merge of three 4 GB
models would show 12 GB of RSS; positioned reads keep it to the tensors in use.

Writing: the output header is known before any tensor is computed (names,
shapes and dtypes come from the plan), so each shard's header is written first
and each tensor's bytes are appended as soon as it is computed. No shard is
buffered in memory (mergekit keeps up to 5 GB of tensors before it writes a
shard, and safetensors' ``save_file`` copies them once more into bytes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from luminary.core.io import weight_index_files
from luminary.core.errors import LuminaryError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
CODES = {v: k for k, v in DTYPES.items()}
INDEX_FILE = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int


def read_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse one safetensors file's header: tensor infos and the ``__metadata__`` map."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise LuminaryError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", head)
        if length > 100_000_000:
            raise LuminaryError(f"{path}: not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise LuminaryError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise LuminaryError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_bytes = path.stat().st_size - 8 - length
    infos = {}
    for name, entry in header.items():
        infos[name] = _tensor_info(path, name, entry, 8 + length, data_bytes)
    return infos, metadata


def _tensor_info(path: Path, name: str, entry: object, data_start: int, data_bytes: int) -> TensorInfo:
    """One header entry, checked: a known dtype, a shape of whole numbers, offsets inside the file
    that hold exactly prod(shape) elements (a damaged header is named, never read past)."""
    def bad(why: str) -> LuminaryError:
        return LuminaryError(f"{path}: not a safetensors file (tensor {name}: {why})")

    if not isinstance(entry, dict):
        raise bad("its entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPES:
        raise LuminaryError(f"{path}: tensor {name}: dtype {dtype} is not supported")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise bad(f"shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes):
        raise bad(f"data_offsets {offsets!r} outside its {data_bytes} bytes of data")
    begin, end = offsets
    if end - begin != math.prod(shape) * DTYPES[dtype].itemsize:
        raise bad(f"{end - begin} bytes for shape {shape} of {dtype}")
    return TensorInfo(path, DTYPES[dtype], tuple(shape), data_start + begin, end - begin)


def read_tensor(info: TensorInfo, fd: int | None = None) -> torch.Tensor:
    """One tensor by a positioned read into a fresh (writable, owned) buffer."""
    buf = torch.empty(info.nbytes, dtype=torch.uint8)
    if info.nbytes:
        own = fd is None
        fd = os.open(info.file, os.O_RDONLY) if own else fd
        try:
            view, done = memoryview(buf.numpy()), 0
            while done < info.nbytes:
                n = os.preadv(fd, [view[done:]], info.start + done)
                if n <= 0:
                    raise LuminaryError(f"{info.file}: file ends inside a tensor (truncated download?)")
                done += n
        finally:
            if own:
                os.close(fd)
    return buf.view(info.dtype).reshape(info.shape)


class ModelTensors:
    """The tensors of one model folder (single file or sharded with an index), read lazily."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            raise LuminaryError(f"{self.folder}: no *.safetensors weights (luminary merges safetensors only)")
        files = weight_index_files(self.folder) or files  # an index's shards, each inside the folder
        self.infos: dict[str, TensorInfo] = {}
        for file in files:
            self.infos.update(read_header(file)[0])
        self._fds: dict[Path, int] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.infos

    def names(self) -> list[str]:
        return list(self.infos)

    def get(self, name: str) -> torch.Tensor:
        info = self.infos[name]
        if info.file not in self._fds:
            self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        return read_tensor(info, self._fds[info.file])

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def shard_layout(entries: list[tuple[str, torch.dtype, tuple[int, ...]]], max_shard_bytes: int) -> list[list[int]]:
    """Split entries (in write order) into shards of at most ``max_shard_bytes`` (one tensor at least)."""
    shards: list[list[int]] = [[]]
    size = 0
    for i, (_, dtype, shape) in enumerate(entries):
        nbytes = _nbytes(dtype, shape)
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += nbytes
    return shards


def _nbytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n * torch.empty((), dtype=dtype).element_size()


class StreamingWriter:
    """Write tensors in a known order into pre-headed safetensors shards.

    ``entries`` are ``(name, dtype, shape)`` in the order :meth:`write` will be
    called. Each file's sha256 is computed while it is written (for the
    manifest), on a thread of its own: hashing a tensor's bytes runs beside
    writing them instead of after (hashlib and the write both release the GIL),
    with at most one buffer in flight.
    """

    def __init__(self, folder: Path, entries: list[tuple[str, torch.dtype, tuple[int, ...]]],
                 max_shard_bytes: int = 5 * 10**9, metadata: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.entries = entries
        layout = shard_layout(entries, max_shard_bytes)
        n = len(layout)
        self.files = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self._shard_of = {i: s for s, idx in enumerate(layout) for i in idx}
        self._last_of_shard = {idx[-1]: s for s, idx in enumerate(layout)}
        self._headers = [self._header([entries[i] for i in idx], metadata) for idx in layout]
        self._next = 0
        self._file = None
        self._hash = None
        self._hasher = ThreadPoolExecutor(1)
        self._hashing: Future | None = None
        self.sha256: dict[str, str] = {}
        self.total_bytes = sum(_nbytes(d, s) for _, d, s in entries)

    @staticmethod
    def _header(entries, metadata) -> bytes:
        header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        for name, dtype, shape in entries:
            nbytes = _nbytes(dtype, shape)
            header[name] = {"dtype": CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # tensor data starts 8-byte aligned
        return struct.pack("<Q", len(raw)) + raw

    def _emit(self, data) -> None:
        self._hashed()
        self._hashing = self._hasher.submit(self._hash.update, data)
        self._file.write(data)

    def _hashed(self) -> None:
        """Wait until every byte handed to the hash so far is in it."""
        if self._hashing is not None:
            self._hashing.result()
            self._hashing = None

    def _start_writeback(self) -> None:
        """Hand written bytes to the disk now (asynchronously) and drop them from the page cache.

        The final fsync (atomic folder) then finds little left to write, and the
        output does not push the inputs out of the page cache.
        """
        if hasattr(os, "posix_fadvise"):
            self._file.flush()
            os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        i = self._next
        want, dtype, shape = self.entries[i]
        if name != want or tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
            raise RuntimeError(f"writer expected {want} {dtype} {shape}, got {name} {tensor.dtype} {tuple(tensor.shape)}")
        shard = self._shard_of[i]
        if self._file is None:
            self._file = open(self.folder / self.files[shard], "wb")
            self._hash = hashlib.sha256()
            self._emit(self._headers[shard])
        if tensor.numel():
            self._emit(memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()))
            self._start_writeback()
        self._next += 1
        if i in self._last_of_shard:
            self._file.close()
            self._hashed()
            self.sha256[self.files[shard]] = self._hash.hexdigest()
            self._file = None

    def finish(self) -> None:
        """Check that every tensor came, and write the index of a sharded output."""
        if self._next != len(self.entries):
            raise RuntimeError(f"writer got {self._next} of {len(self.entries)} tensors")
        self._hasher.shutdown(wait=True)
        if len(self.files) > 1:
            weight_map = {name: self.files[self._shard_of[i]] for i, (name, _, _) in enumerate(self.entries)}
            (self.folder / INDEX_FILE).write_text(json.dumps(
                {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}, indent=2))

    def abort(self) -> None:
        """Close what is open (after finish, or on an error); the writer cannot be used again."""
        self._hasher.shutdown(wait=True)
        self._hashing = None
        if self._file is not None:
            self._file.close()
            self._file = None
