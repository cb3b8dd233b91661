"""The Trainer's memory levers against transformers' own, on the CPU.

One Llama (hidden 256, 4 layers, vocabulary 32,000: a real tokenizer's size),
the same batches (8 × 1024 tokens), AdamW, clipping; each variant in its own
subprocess so that its peak RSS is its own:

- ``hf``: ``model(input_ids, labels=input_ids).loss``, which forms the whole
  float32 logits tensor (1 GiB here) and its gradient;
- ``hf_gc``: the same after ``model.gradient_checkpointing_enable()``;
- ``ours_fused``: ``causal_lm_loss(..., fused=True)`` (``fused_cross_entropy``);
- ``ours_ac``: luminary's ``activation_checkpointing`` with the plain loss;
- ``ours_fused_ac``: both.

Prints one JSON object: each variant's peak MB and tokens/s, and the ratios
``fused_memory_ratio`` (ours_fused / hf, goal ≤ 0.6), ``ac_memory_ratio``
(ours_ac / hf_gc, goal ≤ 1.0: no worse than transformers' checkpointing),
``both_memory_ratio`` (ours_fused_ac / hf_gc), the matching speed ratios, and
the largest difference of any variant's losses from ``hf``'s.

    python benchmarks/train_memory_cpu.py [--steps 3] [--batch 8] [--seq 1024]
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
VARIANTS = ("hf", "hf_gc", "ours_fused", "ours_ac", "ours_fused_ac")


def worker(variant: str, steps: int, batch: int, seq: int) -> dict:
    import numpy as np
    import torch

    from luminary.models import build_model
    from luminary.train.losses import causal_lm_loss
    from luminary.parallel.recompute import apply_activation_checkpointing

    model = build_model("llama-tiny", VOCAB, seed=0)
    model.train()
    if variant == "hf_gc":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if variant.endswith("_ac"):
        apply_activation_checkpointing(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    data = [torch.as_tensor(rng.integers(0, VOCAB, (batch, seq))) for _ in range(steps + 1)]
    losses, start = [], None
    for i, ids in enumerate(data):
        if i == 1:  # the first step warms up the allocator and the kernels
            start = time.perf_counter()
        if variant.startswith("hf"):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        else:
            loss = causal_lm_loss(model, {"input_ids": ids, "labels": ids}, True, fused="fused" in variant)["loss"]
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
    parser.add_argument("--order", default=",".join(VARIANTS), help="the order to run the variants in")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = ["--steps", str(args.steps), "--batch", str(args.batch), "--seq", str(args.seq)]
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch, args.seq)))
        return
    runs = {}
    order = args.order.split(",")
    if sorted(order) != sorted(VARIANTS):
        raise SystemExit(f"--order: give each of {', '.join(VARIANTS)} once")
    for variant in order:
        proc = subprocess.run([sys.executable, __file__, "--worker", variant, *shape], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{proc.stderr[-2000:]}")
        runs[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {"vocab": VOCAB, "tokens_per_step": args.batch * args.seq}
    for variant, run in sorted(runs.items(), key=lambda item: VARIANTS.index(item[0])):
        result[f"{variant}_peak_mb"] = round(run["peak_bytes"] / 2**20)
        result[f"{variant}_tokens_per_s"] = round(run["tokens_per_s"])
    for name, ours, peer in [("fused", "ours_fused", "hf"), ("ac", "ours_ac", "hf_gc"),
                             ("both", "ours_fused_ac", "hf_gc")]:
        result[f"{name}_memory_ratio"] = round(runs[ours]["peak_bytes"] / runs[peer]["peak_bytes"], 3)
        result[f"{name}_speed_ratio"] = round(runs[ours]["tokens_per_s"] / runs[peer]["tokens_per_s"], 3)
    result["max_loss_diff"] = max(abs(a - b) for run in runs.values()
                                  for a, b in zip(run["losses"], runs["hf"]["losses"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
