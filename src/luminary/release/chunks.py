"""Data chunks: the samples each checkpoint saw since the previous one.

Chunk i of a release holds the global samples [s_{i−1}·B, s_i·B), s_i the step
of checkpoint i (s_{−1} = 0), one line each in the order the trainer read them:
``{"token_ids": [...], "source": "..."}`` as in Amber's release (2049-token
samples there; seq_len + 1 here). Checkpoint i has seen exactly chunks 0..i.
The lines are rebuilt from the recipe, so writing and verifying share this code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from luminary.data.mixture import Mixture
from luminary.train.data import batch_hash, example_digest


def chunk_name(i: int, fmt: str = "jsonl") -> str:
    return f"train_{i:03d}.{fmt}"


def chunk_samples(mixture: Mixture, start_step: int, stop_step: int) -> Iterator[dict[str, Any]]:
    for i in range(start_step * mixture.global_batch, stop_step * mixture.global_batch):
        yield mixture.sample(i)


def jsonl_line(sample: dict[str, Any]) -> str:
    return json.dumps({"token_ids": sample["input_ids"].tolist(), "source": sample["source"]}) + "\n"


def write_chunk(path: Path, samples: Iterator[dict[str, Any]], fmt: str) -> None:
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for sample in samples:
                f.write(jsonl_line(sample))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(samples)
    table = pa.table({"token_ids": [r["input_ids"].tolist() for r in rows], "source": [r["source"] for r in rows]})
    pq.write_table(table, path)


def read_chunk(path: Path) -> list[dict[str, Any]]:
    """Released samples as trainer examples (``input_ids`` int64, ``source``)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
        pairs = zip(table["token_ids"], table["source"])
    else:
        pairs = ((row["token_ids"], row["source"]) for row in map(json.loads, path.read_text().splitlines()))
    return [{"input_ids": np.asarray(ids, dtype=np.int64), "source": src} for ids, src in pairs]


def step_hashes(samples: list[dict[str, Any]], global_batch: int) -> list[str]:
    """The batch hash of each step in a chunk, computed as the Trainer logs it."""
    digests = [example_digest(s) for s in samples]
    return [batch_hash(digests[i : i + global_batch]) for i in range(0, len(digests), global_batch)]
