"""Corpus preparation: tokens/s of building a token shard, beside a naive loop.

The standard library's code (the real ``stdlib-code`` source) with a 4096-token
byte-level BPE trained on a sample of it. Ours: ``build_shard`` (several
processes, batched encoding, one memory-mapped uint16 file). Baseline: the
transformers tokenizer called document by document in one process, ids kept in
a Python list and saved with ``np.save``. Prints one JSON object with
``tokens_per_s``, ``baseline_tokens_per_s`` and ``ratio``.

    python benchmarks/tokenize_corpus.py [--workers 2]

(Not ``tokenize.py``: in this folder that name would shadow the standard
library's ``tokenize`` for every other benchmark, which imports it through torch.)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from transformers import AutoTokenizer

from luminary.data.shards import build_shard
from luminary.data.sources import StdlibCode, load_documents
from luminary.data.tokenizer import train_bpe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    texts, digest = load_documents("code", StdlibCode(type="stdlib-code"))
    with tempfile.TemporaryDirectory() as folder:
        tok_dir = Path(folder) / "tok"
        train_bpe(texts[::10], 4096).save_pretrained(str(tok_dir))
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        t0 = time.perf_counter()
        shard = build_shard(Path(folder) / "shard", "code", texts, digest, tok_dir, tok.eos_token_id, len(tok),
                            workers=args.workers)
        ours = shard.n_tokens / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        ids: list[int] = []
        for text in texts:
            ids.extend(tok(text, add_special_tokens=False)["input_ids"])
            ids.append(tok.eos_token_id)
        np.save(Path(folder) / "naive.npy", np.asarray(ids, dtype=np.uint16))
        naive = len(ids) / (time.perf_counter() - t0)
        assert len(ids) == shard.n_tokens
    print(json.dumps({
        "benchmark": "tokenize", "corpus": "stdlib-code", "documents": len(texts), "tokens": shard.n_tokens,
        "workers": args.workers, "tokens_per_s": round(ours), "baseline_tokens_per_s": round(naive),
        "ratio": round(ours / naive, 2),
    }))


if __name__ == "__main__":
    main()
