"""What tensor parallelism saves per rank: parameters and activations at tp 2 against tp 1.

For GPT-2 (a fused [q; k; v] Conv1D), BLOOM (per-head interleaved [q; k; v]
with ALiBi) and Llama (separate q, k, v), each small enough for two CPU
processes, the model is prepared by luminary's ``Deployer`` (the automatic
plan, checked by one training step against one process) under ``torchrun``
with 1 and then 2 processes, and takes one forward and backward on the same
batch. Measured on rank 0:

- ``params``: elements of the parameters this rank holds (a DTensor's local shard);
- ``activations``: bytes of the tensors autograd saves for the backward
  (``torch.autograd.graph.saved_tensors_hooks``, each tensor once; a DTensor
  counted by its local part), in all and inside the attention modules.

Goal (issue 17): parameters <= 0.55 of tp 1 and attention activations <= 0.6.
Where a family's attention keeps DTensor outputs (heads not split: the plan
says why), its attention ratio stays near 1. Prints ONE JSON object.

    PYTHONPATH=src python benchmarks/tp_memory.py        # about a minute on 2 cores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FAMILIES = ("gpt2", "bloom", "llama")
BATCH, SEQ, VOCAB = 4, 128, 512
GOAL = {"params": 0.55, "attention_activations": 0.6}


def build(name: str):
    import torch
    from transformers import (BloomConfig, BloomForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                              LlamaForCausalLM)

    torch.manual_seed(0)
    if name == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=256, n_layer=4, n_head=8,
                                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    if name == "bloom":
        return BloomForCausalLM(BloomConfig(vocab_size=VOCAB, hidden_size=256, n_layer=4, n_head=8,
                                            hidden_dropout=0.0, attention_dropout=0.0))
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=256, intermediate_size=688,
                                        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8,
                                        max_position_embeddings=SEQ))


def measure(name: str) -> dict:
    """One rank: the model prepared at this world's tp, one forward and backward, what rank 0 holds."""
    import torch
    from torch.distributed._functional_collectives import AsyncCollectiveTensor
    from torch.distributed.tensor import DTensor

    from luminary.train.deployer import Deployer

    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Deployer(seed=0, tp=world, precision="fp32", verbose=False)
    model = d.prepare_model(build(name))
    params = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())
    attention = {id(m) for n, m in model.named_modules() if n.endswith(("attn", "attention"))}
    inside: list[bool] = []
    seen: set[tuple] = set()
    total = {"all": 0, "attention": 0}

    def enter(module, args):
        inside.append(True)

    def leave(module, args, out):
        inside.pop()

    for m in model.modules():
        if id(m) in attention:
            m.register_forward_pre_hook(enter)
            m.register_forward_hook(leave)

    kept = []  # every tensor seen stays alive, so no id is reused

    def pack(t):
        local = t._local_tensor if isinstance(t, DTensor) else t
        if isinstance(local, AsyncCollectiveTensor):  # a collective's result, once it is there
            local = local.trigger_wait()
        kept.append(local)
        key = (local.data_ptr(), local.storage_offset(), tuple(local.shape), tuple(local.stride()))
        if key not in seen:
            seen.add(key)
            size = local.numel() * local.element_size()
            total["all"] += size
            total["attention"] += size if inside else 0
        return t

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), d.forward_context():
        out = model(input_ids=ids, use_cache=False)  # as in training
        logits = out.logits.full_tensor() if isinstance(out.logits, DTensor) else out.logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    loss.backward()
    return {"params": params, "activations": total["all"], "attention_activations": total["attention"],
            "loss": float(loss)}


def worker(out: str) -> None:
    import torch.distributed as dist

    results = {name: measure(name) for name in FAMILIES}
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps(results))
    if dist.is_initialized():
        dist.destroy_process_group()


def run(tp: int, tmp: Path) -> dict:
    out = tmp / f"tp{tp}.json"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1", LUMINARY_QUIET="1",
               PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={tp}",
           __file__, "--worker", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"tp {tp} failed: {' | '.join(tail)}")
    return json.loads(out.read_text())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="luminary-tp-memory-") as tmp:
        one, two = run(1, Path(tmp)), run(2, Path(tmp))
    rows = {}
    for name in FAMILIES:
        a, b = one[name], two[name]
        ratio = {k: b[k] / a[k] if a[k] else None for k in ("params", "activations", "attention_activations")}
        rows[name] = {"tp1": {k: a[k] for k in ("params", "activations", "attention_activations")},
                      "tp2": {k: b[k] for k in ("params", "activations", "attention_activations")},
                      "ratio": ratio, "loss_diff": abs(a["loss"] - b["loss"]),
                      "meets_goal": all(ratio[k] is not None and ratio[k] <= v for k, v in GOAL.items())}
    print(json.dumps({"benchmark": "tp_memory", "batch": BATCH, "seq_len": SEQ, "goal": GOAL, "families": rows}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        import argparse

        argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
        main()
