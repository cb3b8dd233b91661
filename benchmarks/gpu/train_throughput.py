"""Training throughput on one GPU: luminary's Trainer against plain transformers.

Two Llama-shaped configs (vocab 32000, sequence 2048): 124M (hidden 768,
12 layers, 12 heads, FFN 2048) and ~1B (hidden 2048, 16 layers, 16 heads,
FFN 5504). For each, four variants in one process: plain transformers eager
and compiled (model(..., labels).loss under bf16 autocast, backward, clip 1.0,
fused AdamW), and luminary's Trainer eager and compiled (the same model,
optimizer and batches; it also hashes every batch and logs every step).
Prints a table and one JSON object: tokens/s and MFU of each, and the ratios.

    PYTHONPATH=src python benchmarks/gpu/train_throughput.py [--steps 10] [--only 124m]
        [--variants hf_compiled,ours_compiled,ours_compiled_fused] [--micro-batch 16]

``--dry-run`` runs the selected variants on a debug-sized Llama (sequence 64)
on whatever device there is, the CPU included: it checks the script and every
lever before a lent GPU's minutes are spent on it (its numbers mean nothing).

The ``*_fused`` variants train through ``fused_cross_entropy`` (the output
projection and the loss in token chunks, no whole logits tensor), ``*_fp8``
also with the blocks' linear layers in float8 (``luminary.train.float8``);
ratios compare each with transformers in the same mode (bf16 for fp8).

MFU = (6·N + 12·L·d·T) · tokens/s / peak, N the parameters that take part in
matrix products (all but the input embedding), peak 989 TFLOP/s (H100/H200
dense bf16).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import time

os.environ.setdefault("LUMINARY_QUIET", "1")

import numpy as np
import torch

from dataclasses import dataclass

from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.losses import causal_lm_loss

PEAK = 989e12
CONFIGS = {"124m": ("llama-124m", 16), "1b": ("llama-1b", 8)}


@dataclass(frozen=True)
class Shape:
    """Where and at what size the variants run: the real benchmark, or ``--dry-run``'s check."""

    device: str = "cuda"
    vocab: int = 32000
    seq: int = 2048

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


REAL = Shape()


def flops_per_token(model, shape: Shape = REAL) -> float:
    cfg = model.config
    n = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    return 6 * n + 12 * cfg.num_hidden_layers * cfg.hidden_size * shape.seq


def data(batch: int, steps: int, shape: Shape = REAL) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, shape.vocab, shape.seq + 1, dtype=np.int64) for _ in range(batch * steps)]


def run_hf(preset: str, batch: int, steps: int, warmup: int, compiled: bool, shape: Shape = REAL) -> float:
    with torch.device(shape.device):
        model = build_model(preset, shape.vocab, seed=0)
    fwd = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    examples = data(batch, warmup + steps, shape)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            shape.sync()
            start = time.perf_counter()
        ids = torch.as_tensor(np.stack(examples[step * batch : (step + 1) * batch])).to(shape.device)
        with torch.autocast(shape.device, dtype=torch.bfloat16):
            loss = fwd(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    shape.sync()
    return steps * batch * (shape.seq + 1) / (time.perf_counter() - start)


def collate(examples):
    ids = torch.as_tensor(np.stack(examples))
    return {"input_ids": ids, "labels": ids}


def run_ours(preset: str, batch: int, steps: int, warmup: int, compiled: bool, fused: bool = False,
             float8: bool = False, shape: Shape = REAL) -> float:
    with torch.device(shape.device):
        model = build_model(preset, shape.vocab, seed=0)
    if float8 and torch.device(shape.device).type != "cuda":
        float8 = "emulated"  # a dry run's check of the recipe on the CPU: the same numbers, no speed
    deployer = Deployer(seed=0, device=shape.device, precision="bf16", compile=compiled, float8=float8)
    trainer = Trainer(deployer, collate, functools.partial(causal_lm_loss, fused=fused), model,
                      OptimizerConfig(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1), max_grad_norm=1.0)
    stamps = {}

    class Clock:
        def on_fit_start(self, t): ...
        def on_step_start(self, t, step):
            if step == warmup:
                shape.sync()
                stamps["start"] = time.perf_counter()
        def on_step_end(self, t, record): ...
        def on_checkpoint(self, t, folder): ...

    trainer.callbacks.append(Clock())
    trainer.fit(data(batch, warmup + steps, shape), batch, max_steps=warmup + steps, shuffle=False)
    shape.sync()
    return steps * batch * (shape.seq + 1) / (time.perf_counter() - stamps["start"])


VARIANTS = {
    "hf_eager": functools.partial(run_hf, compiled=False),
    "ours_eager": functools.partial(run_ours, compiled=False),
    "hf_compiled": functools.partial(run_hf, compiled=True),
    "ours_compiled": functools.partial(run_ours, compiled=True),
    "ours_eager_fused": functools.partial(run_ours, compiled=False, fused=True),
    "ours_compiled_fused": functools.partial(run_ours, compiled=True, fused=True),
    "ours_compiled_fused_fp8": functools.partial(run_ours, compiled=True, fused=True, float8=True),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", choices=list(CONFIGS), default=None)
    parser.add_argument("--variants", default="hf_eager,ours_eager,hf_compiled,ours_compiled",
                        help=f"comma-separated, of: {','.join(VARIANTS)}")
    parser.add_argument("--micro-batch", type=int, default=None, help="override both configs' micro-batch")
    parser.add_argument("--dry-run", action="store_true",
                        help="a debug-sized model on any device: checks the variants, measures nothing")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    configs, shape = CONFIGS, REAL
    if args.dry_run:
        configs = {"debug": ("llama-debug", 2)}
        shape = Shape(device="cuda" if torch.cuda.is_available() else "cpu", vocab=512, seq=64)
        args.only, args.steps, args.warmup = None, 1, 1
    device_name = torch.cuda.get_device_name() if shape.device == "cuda" else "cpu"
    results = {"device": device_name, "torch": torch.__version__, "seq_len": shape.seq, "dry_run": args.dry_run,
               "configs": {}}
    for name, (preset, batch) in configs.items():
        if args.only and name != args.only:
            continue
        with torch.device("meta"):
            probe = build_model(preset, shape.vocab)
        fpt = flops_per_token(probe, shape)
        params = sum(p.numel() for p in probe.parameters())
        del probe
        batch = args.micro_batch or batch
        row = {"params": params, "micro_batch": batch}
        for label, fn in VARIANTS.items():
            if label not in args.variants.split(","):
                continue
            try:
                tps = fn(preset, batch, args.steps, args.warmup, shape=shape)
                row[label] = {"tokens_per_s": round(tps), "mfu": round(tps * fpt / PEAK, 4)}
            except Exception as exc:  # report and go on: one failure must not lose the other numbers
                row[label] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            gc.collect()
            if shape.device == "cuda":
                torch.cuda.empty_cache()
            torch._dynamo.reset()
            print(name, label, row[label], flush=True)
        for mode in ("eager", "compiled", "eager_fused", "compiled_fused", "compiled_fused_fp8"):
            ours, hf = row.get(f"ours_{mode}", {}), row.get(f"hf_{mode.split('_')[0]}", {})
            if "tokens_per_s" in ours and "tokens_per_s" in hf:
                row[f"ratio_{mode}"] = round(ours["tokens_per_s"] / hf["tokens_per_s"], 4)
        results["configs"][name] = row
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "train_throughput.json"), "w") as f:
            json.dump(results, f, indent=2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
