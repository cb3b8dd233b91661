"""Memorization scoring (Analysis360): luminary's batched greedy decoding against one prompt at a time.

The same model (``crystal-tiny``, seeded; ``--model`` takes a folder, e.g. a
checkpoint of ``make demo``'s run), the same prompts and true continuations
(random token rows of one chunk, seed 42, k = l = 32) and the same rule:
greedy, end-of-sequence allowed. Ours: :func:`luminary.analysis.memorization.memorization`,
which decodes ``--batch-size`` prompts at once with a KV cache through the
Predictor. The peer: the loop Analysis360's notebook runs, ``model.generate``
on one prompt at a time (KV cache too). Prints ONE JSON object: samples/s of
each, their ratio (goal >= 10), and whether the scores agree sample by sample.

    PYTHONPATH=src python benchmarks/memorization.py [--samples 128] [--batch-size 64] [--model FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch

from luminary.analysis.memorization import fill_token, memorization
from luminary.models import build_model, load_model


def one_at_a_time(model, prompts: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Analysis360's loop: one ``generate`` call a prompt, greedy, end-of-sequence allowed; per-sample scores."""
    pad, length = fill_token(model), truth.shape[1]
    scores = []
    with torch.no_grad():
        for prompt, want in zip(prompts, truth):
            ids = torch.as_tensor(prompt[None], dtype=torch.long)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=length,
                                 do_sample=False, pad_token_id=pad)[0, ids.shape[1]:].tolist()
            out += [pad] * (length - len(out))
            scores.append(float(np.mean(np.asarray(out) == want)))
    return np.asarray(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default=None, help="a causal-LM folder (default: crystal-tiny, random weights)")
    parser.add_argument("--vocab", type=int, default=2048)
    args = parser.parse_args()

    model = (load_model(args.model) if args.model else build_model("crystal-tiny", args.vocab, seed=0)).eval()
    vocab = model.config.vocab_size
    rng = np.random.default_rng(0)
    chunk = [rng.integers(3, vocab, 64) for _ in range(args.samples)]
    k = l = 32
    torch.manual_seed(0)

    start = time.perf_counter()
    ours = memorization(model, chunk, k=k, l=l, n=args.samples, batch_size=args.batch_size)
    ours_s = time.perf_counter() - start

    order = ours.indices
    prompts = np.stack([chunk[i][:k] for i in order])
    truth = np.stack([chunk[i][k:k + l] for i in order])
    start = time.perf_counter()
    peer = one_at_a_time(model, prompts, truth)
    peer_s = time.perf_counter() - start

    print(json.dumps({
        "benchmark": "memorization", "model": args.model or "crystal-tiny (random, seed 0)",
        "samples": len(order), "k": k, "l": l, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "ours_samples_per_s": len(order) / ours_s, "one_at_a_time_samples_per_s": len(order) / peer_s,
        "ratio": peer_s / ours_s, "goal": 10.0,
        "same_scores": bool(np.array_equal(ours.scores, peer)),
        "samples_with_other_scores": int((ours.scores != peer).sum()),
        "token_match": ours.token_match, "one_at_a_time_token_match": float(peer.mean()),
    }))


if __name__ == "__main__":
    main()
