"""Fused (chunked) linear + cross-entropy against transformers' own loss, on the CPU.

The same Llama (hidden 256, 4 layers, vocabulary 32,000: a real tokenizer's
size), the same batches (8 × 1024 tokens), AdamW. The peer is
``model(input_ids, labels=input_ids).loss``, which forms the whole float32
logits tensor (8 × 1024 × 32,000 × 4 bytes = 1 GiB) and its gradient; ours is
the Trainer's ``causal_lm_loss(..., fused=True)``. Each side runs in its own
subprocess so that its peak RSS is its own. Prints one JSON object:
``ours_peak_mb``, ``hf_peak_mb``, ``memory_ratio`` (goal ≤ 0.6), the
tokens/s of each and ``speed_ratio``, and the largest difference of the
logged losses.

    python benchmarks/fused_ce_cpu.py [--steps 3] [--batch 8] [--seq 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("LUMINARY_QUIET", "1")

VOCAB = 32000


def worker(side: str, steps: int, batch: int, seq: int) -> dict:
    import numpy as np
    import torch

    from luminary.models import build_model
    from luminary.train.losses import causal_lm_loss

    model = build_model("llama-tiny", VOCAB, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    data = [torch.as_tensor(rng.integers(0, VOCAB, (batch, seq))) for _ in range(steps + 1)]
    losses, start = [], None
    for i, ids in enumerate(data):
        if i == 1:  # the first step warms up the allocator and the kernels
            start = time.perf_counter()
        if side == "hf":
            loss = model(input_ids=ids, labels=ids).loss
        else:
            loss = causal_lm_loss(model, {"input_ids": ids, "labels": ids}, True, fused=True)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"tokens_per_s": steps * batch * seq / elapsed, "peak_bytes": peak, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch, args.seq)))
        return
    runs = {}
    for side in ("hf", "ours"):
        cmd = [sys.executable, __file__, "--worker", side, "--steps", str(args.steps),
               "--batch", str(args.batch), "--seq", str(args.seq)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{side} failed:\n{proc.stderr[-2000:]}")
        runs[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, hf = runs["ours"], runs["hf"]
    print(json.dumps({
        "vocab": VOCAB, "tokens_per_step": args.batch * args.seq,
        "ours_peak_mb": round(ours["peak_bytes"] / 2**20), "hf_peak_mb": round(hf["peak_bytes"] / 2**20),
        "memory_ratio": round(ours["peak_bytes"] / hf["peak_bytes"], 3),
        "ours_tokens_per_s": round(ours["tokens_per_s"]), "hf_tokens_per_s": round(hf["tokens_per_s"]),
        "speed_ratio": round(ours["tokens_per_s"] / hf["tokens_per_s"], 3),
        "max_loss_diff": max(abs(a - b) for a, b in zip(ours["losses"], hf["losses"])),
    }))


if __name__ == "__main__":
    main()
