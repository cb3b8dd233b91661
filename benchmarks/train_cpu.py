"""luminary's Trainer against a plain transformers training loop, on the CPU.

Same tiny Llama (same initial weights), same batches, same AdamW settings,
same clipping; ours also hashes each batch and writes ``metrics.jsonl``.
Prints one JSON object: ``ours_tokens_per_s``, ``hf_tokens_per_s``, ``ratio``
(goal: >= 0.95, the trainer adds no overhead). Runs alternate, median of 3.

    python benchmarks/train_cpu.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("LUMINARY_QUIET", "1")

import numpy as np
import torch

from luminary.models import build_model
from luminary.train import CheckpointPolicy, Deployer, OptimizerConfig, Trainer
from luminary.train.losses import causal_lm_collate, causal_lm_loss

VOCAB, SEQ, BATCH = 2048, 128, 8


def batches(steps: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.integers(0, VOCAB, SEQ) for _ in range(BATCH)] for _ in range(steps)]


def run_hf(data, fused: bool) -> float:
    model = build_model("llama-tiny", VOCAB, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), fused=fused)
    model.train()
    tokens, start = 0, None
    for i, examples in enumerate(data):
        if i == 2:
            start, tokens = time.perf_counter(), 0
        ids = torch.as_tensor(np.stack(examples))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += ids.numel()
    return tokens / (time.perf_counter() - start)


def run_ours(data, fused: bool) -> float:
    flat = [ex for batch in data for ex in batch]
    model = build_model("llama-tiny", VOCAB, seed=0)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(Deployer(workdir, seed=0, precision="fp32"), causal_lm_collate, causal_lm_loss, model,
                          OptimizerConfig(lr=1e-3, fused=fused), max_grad_norm=1.0)
        stamps = []

        class Clock:
            def on_fit_start(self, t): ...
            def on_step_start(self, t, step):
                if step == 2:
                    stamps.append(time.perf_counter())
            def on_step_end(self, t, record): ...
            def on_checkpoint(self, t, folder): ...

        trainer.callbacks.append(Clock())
        records = trainer.fit(flat, BATCH, max_steps=len(data), shuffle=False,
                              checkpoint=CheckpointPolicy(at_end=False))
        elapsed = time.perf_counter() - stamps[0]
    return sum(r["tokens"] for r in records[2:]) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = batches(args.steps)
    fused = hasattr(torch, "_fused_adamw_")
    ours, hf = [], []
    for _ in range(args.repeats):
        hf.append(run_hf(data, fused))
        ours.append(run_ours(data, fused))
    o, h = statistics.median(ours), statistics.median(hf)
    print(json.dumps({
        "benchmark": "train_cpu", "model": "llama-tiny", "seq_len": SEQ, "batch": BATCH, "steps": args.steps,
        "threads": torch.get_num_threads(), "fused_adamw": fused,
        "ours_tokens_per_s": round(o, 1), "hf_tokens_per_s": round(h, 1), "ratio": round(o / h, 4),
    }))


if __name__ == "__main__":
    main()
