"""Every capability that trains, run the same way in one process and under torchrun.

    python -m torch.distributed.run --standalone --nproc-per-node 4 tests/train/capability_jobs.py SPEC OUT dp2tp2

``SPEC`` (JSON, written by ``test_every_capability.py``) names the inputs: a
tokenizer, text, tiny encoder folders, labelled pairs, aligner rows. Each job
builds its capability's own config from them, with the variant's ``deploy:``
section and the accumulation that keeps the global batch the same (4 or 8
sequences whatever the mesh), and runs it into ``OUT/<job>``: three steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

STEPS = 3
VARIANTS = {  # name -> (deploy section, data-parallel ranks)
    "one": ({"precision": "fp32"}, 1),
    "compiled": ({"precision": "fp32", "compile": True}, 1),
    "dp2tp2": ({"precision": "fp32", "dp": 2, "tp": 2}, 2),
}


def deploy(variant: str, **extra) -> dict:
    return {**VARIANTS[variant][0], **extra}


def accumulate(variant: str, global_batch: int, per_device: int) -> int:
    return global_batch // (per_device * VARIANTS[variant][1])


def pretrain(spec: dict, variant: str, out: Path) -> None:
    from luminary.core.io import atomic_write_text
    from luminary.pretrain.runner import pretrain as run

    recipe = {
        "name": "capability", "sources": {"code": {"type": "files", "path": spec["code"]}},
        "tokenizer": {"path": spec["tokenizer"]}, "model": {"preset": "crystal-debug"},
        "train": {"global_batch": 4, "micro_batch": 2, "seq_len": 32},
        "phases": [{"name": "p1", "steps": STEPS, "weights": {"code": 1.0},
                    "schedule": {"kind": "linear", "peak_lr": 0.003, "warmup_steps": 1}}],
        "validation": {"samples_per_source": 2, "batch_size": 2},
        "deploy": deploy(variant, seed=3, checkpoints={"count": 1}),
    }
    path = out.parent / f"{out.name}.yaml"
    atomic_write_text(path, yaml.safe_dump(recipe))  # every rank writes the same file: whole or not at all
    run(path, out)


def finetune(spec: dict, variant: str, out: Path) -> None:
    from luminary.train.finetune import FinetuneConfig, run_finetune

    run_finetune(FinetuneConfig.model_validate({
        "model": "llama-debug", "tokenizer": spec["tokenizer"], "data": {"path": spec["code"], "seq_len": 32},
        "train": {"per_device_batch_size": 2, "accumulate_grad_batches": accumulate(variant, 4, 2), "max_steps": STEPS},
        "optimizer": {"lr": 0.003}, "deploy": deploy(variant, seed=4)}), out)


def scorer(spec: dict, variant: str, out: Path) -> None:
    from luminary.scorer.train import ScorerTrainConfig, train_scorer

    train_scorer(ScorerTrainConfig.model_validate({
        "model": spec["encoder"], "data": spec["pairs"], "max_length": 32, "lr": 1e-3, "per_device_batch_size": 2,
        "accumulate_grad_batches": accumulate(variant, 4, 2), "max_steps": STEPS, "deploy": deploy(variant, seed=5)}),
        out)


def ctc(spec: dict, variant: str, out: Path) -> None:
    from luminary.ctc.train import AlignerTrainConfig, train_aligner

    train_aligner(AlignerTrainConfig.model_validate({
        "kind": "D", "base_model": spec["aligner_encoder"], "data": spec["aligner_rows"], "lr": 1e-3,
        "per_device_batch_size": 2, "accumulate_grad_batches": accumulate(variant, 4, 2), "max_steps": STEPS,
        "eval_every": STEPS, "deploy": deploy(variant, seed=6)}), out)


def sql(spec: dict, variant: str, out: Path) -> None:
    from luminary.rl.config import RLConfig
    from luminary.rl.run import run_rl

    run_rl(RLConfig.model_validate({
        "policy": {"model": "llama-debug", "tokenizer": spec["tokenizer"]},
        "data": {"examples": [{"source": s, "target": t} for s, t in spec["sql_examples"]]},
        "rewards": [{"kind": "bleu", "reference": "target"}], "sampling": {"max_new_tokens": 6},
        "sql": {"mode": "mixed"}, "target": {"tau": 0.1},
        "train": {"per_device_batch_size": 2, "accumulate_grad_batches": accumulate(variant, 4, 2),
                  "max_steps": STEPS},
        "deploy": deploy(variant, seed=7)}), out)


JOBS = {"pretrain": pretrain, "finetune": finetune, "scorer": scorer, "ctc": ctc, "sql": sql}


def run(spec: dict, names: list[str], variant: str, out: Path) -> None:
    for name in names:
        JOBS[name](spec, variant, out / name)


if __name__ == "__main__":
    spec_file, out_dir, variant, *names = sys.argv[1:]
    run(json.loads(Path(spec_file).read_text()), names or list(JOBS), variant, Path(out_dir))
