"""Token shards: one memory-mapped token file per source.

    DATA_DIR/NAME/tokens.bin     all documents' tokens, each followed by EOS
    DATA_DIR/NAME/doc_index.npy  int64 start of each document (length n_docs + 1)
    DATA_DIR/NAME/meta.json      dtype, counts, source hash, tokenizer hash

uint16 when the vocabulary fits (< 65,536), else uint32. Tokenization runs in
several processes with a progress bar; a shard whose source hash and tokenizer
hash are unchanged is reused as it is. Each shard is written with
``atomic_dir``: a killed preparation leaves no half shard behind.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from luminary.core.io import atomic_dir, sha256_file
from luminary.core.progress import progress_bar

_worker_tokenizer = None


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def tokenizer_hash(tokenizer_dir: Path) -> str:
    return sha256_file(Path(tokenizer_dir) / "tokenizer.json")


def _init_worker(tokenizer_file: str, eos_id: int, dtype: str) -> None:
    global _worker_tokenizer
    from tokenizers import Tokenizer

    _worker_tokenizer = (Tokenizer.from_file(tokenizer_file), eos_id, np.dtype(dtype))


def _encode(texts: list[str]) -> tuple[bytes, list[int]]:
    """Token bytes of a chunk of documents (each + EOS) and each document's length."""
    tok, eos, dtype = _worker_tokenizer
    arrays = [np.asarray(e.ids + [eos], dtype=dtype) for e in tok.encode_batch(texts, add_special_tokens=False)]
    return np.concatenate(arrays).tobytes(), [len(a) for a in arrays]


@dataclass
class Shard:
    """A source's tokens, memory-mapped."""

    name: str
    tokens: np.ndarray  # (n_tokens,) uint16/uint32 memmap
    doc_index: np.ndarray  # (n_docs + 1,) int64
    meta: dict

    @classmethod
    def open(cls, folder: Path) -> "Shard":
        meta = json.loads((folder / "meta.json").read_text())
        tokens = np.memmap(folder / "tokens.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["n_tokens"],))
        doc_index = np.load(folder / "doc_index.npy")
        return cls(meta["name"], tokens, doc_index, meta)

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    def document(self, i: int) -> np.ndarray:
        return np.asarray(self.tokens[self.doc_index[i] : self.doc_index[i + 1]])


def build_shard(
    folder: Path,
    name: str,
    texts: list[str],
    source_hash: str,
    tokenizer_dir: Path,
    eos_id: int,
    vocab_size: int,
    workers: int | None = None,
    chunk: int = 64,
) -> Shard:
    """Tokenize ``texts`` into ``folder`` unless an identical shard is already there."""
    folder = Path(folder)
    tok_hash = tokenizer_hash(tokenizer_dir)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("source_sha256") == source_hash and meta.get("tokenizer_sha256") == tok_hash:
            return Shard.open(folder)
    dtype = token_dtype(vocab_size)
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    chunks = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
    with atomic_dir(folder, overwrite=True) as tmp:
        lengths: list[int] = []
        with open(tmp / "tokens.bin", "wb") as out, progress_bar(f"tokenize {name}", len(texts)) as bar:
            with ProcessPoolExecutor(workers, initializer=_init_worker,
                                     initargs=(str(Path(tokenizer_dir) / "tokenizer.json"), eos_id, dtype.name)) as pool:
                for data, sizes in pool.map(_encode, chunks):
                    out.write(data)
                    lengths.extend(sizes)
                    bar.advance(len(sizes))
        doc_index = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
        np.save(tmp / "doc_index.npy", doc_index)
        meta = {
            "name": name,
            "dtype": dtype.name,
            "n_docs": len(texts),
            "n_tokens": int(doc_index[-1]),
            "source_sha256": source_hash,
            "tokenizer_sha256": tok_hash,
            "tokens_sha256": sha256_file(tmp / "tokens.bin"),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return Shard.open(folder)
