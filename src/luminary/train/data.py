"""What the trainer reads: samples addressed by a global index.

The batch of optimizer step N is the samples [N·B, (N+1)·B) of a source, B the
global batch. A source maps a global sample index to an example by a pure
function, so any step's batch can be rebuilt without replaying the run and is
the same whatever the number of data-parallel ranks: rank r of R takes the
contiguous slice [r·B/R, (r+1)·B/R) of the global batch.

- A list of examples becomes :class:`ShuffledEpochs`: index i is item
  perm_e[i mod n] of epoch e = i div n, with a permutation seeded by (seed, e).
- Any object with ``samples(start, stop)`` (and optionally ``samples_per_epoch``)
  is used as it is: the pretraining mixture is one.
- A stream (an iterator with ``state_dict``/``load_state_dict``) is read in
  order; its position is saved with each checkpoint.

Each example gets a sha256 digest; the hash of a batch is the sha256 of its
examples' digests in global order, so it does not depend on the world size.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from luminary.core.seed import derive_seed


@runtime_checkable
class SampleSource(Protocol):
    def samples(self, start: int, stop: int) -> list[Any]: ...


class ShuffledEpochs:
    """A list of examples read epoch after epoch, each epoch in a seeded order."""

    def __init__(self, examples: Sequence[Any], seed: int, shuffle: bool = True):
        if len(examples) == 0:
            raise ValueError("no training examples")
        self.examples = examples
        self.seed = seed
        self.shuffle = shuffle
        self.samples_per_epoch = len(examples)
        self._perm_cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            n = self.samples_per_epoch
            if self.shuffle:
                rng = np.random.Generator(np.random.PCG64(derive_seed("epoch", self.seed, epoch)))
                self._perm_cache = {epoch: rng.permutation(n)}
            else:
                self._perm_cache = {epoch: np.arange(n)}
        return self._perm_cache[epoch]

    def index(self, i: int) -> int:
        epoch, pos = divmod(i, self.samples_per_epoch)
        return int(self.permutation(epoch)[pos])

    def samples(self, start: int, stop: int) -> list[Any]:
        return [self.examples[self.index(i)] for i in range(start, stop)]


class StreamSource:
    """An iterator read in order; restoring its ``state_dict`` restores the position."""

    def __init__(self, stream: Any):
        self.stream = stream
        self._iter: Iterator | None = None
        self.position = 0

    def samples(self, start: int, stop: int) -> list[Any]:
        if start != self.position:
            raise RuntimeError(f"a stream is read in order: asked for sample {start} at position {self.position}")
        if self._iter is None:
            self._iter = iter(self.stream)
        out = []
        for _ in range(stop - start):
            try:
                out.append(next(self._iter))
            except StopIteration:
                break
        self.position += len(out)
        return out

    def state_dict(self) -> dict:
        return {"position": self.position, "stream": self.stream.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self.position = int(state["position"])
        self._iter = None


def as_source(data: Any, seed: int, shuffle: bool = True) -> Any:
    if isinstance(data, SampleSource):
        return data
    if hasattr(data, "state_dict") and hasattr(data, "load_state_dict") and hasattr(data, "__iter__"):
        return StreamSource(data)
    if isinstance(data, Sequence) or hasattr(data, "__getitem__"):
        return ShuffledEpochs(data, seed, shuffle)
    raise TypeError(f"cannot train on a {type(data).__name__}: give a list, a sample source or a resumable stream")


def _update(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        h.update(f"nd:{obj.dtype.str}:{obj.shape}:".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=str):
            h.update(json.dumps(str(key)).encode() + b":")
            _update(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _update(h, item)
            h.update(b",")
        h.update(b"]")
    else:
        h.update(json.dumps(obj, default=str).encode())


def example_digest(example: Any) -> bytes:
    h = hashlib.sha256()
    _update(h, example)
    return h.digest()


def batch_hash(digests: list[bytes]) -> str:
    """sha256 over example digests in global order (what ``metrics.jsonl`` logs)."""
    return hashlib.sha256(b"".join(digests)).hexdigest()
