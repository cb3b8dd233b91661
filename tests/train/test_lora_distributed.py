"""LoRA under torchrun data parallelism: two processes (gloo, CPU, ``deploy.dp: 2``) train the adapter
that one process trains on the same global batch.

One process runs the fine-tune first (four steps, checkpoints at 2 and 4); then one launch of two
processes trains it with half the accumulation, resumes a copy of that run from its step-2 checkpoint, and
resumes a copy of the one-process run from its step-2 checkpoint (the adapter file alone, loaded into the
shards). This file is also the job the two processes run:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/train/test_lora_distributed.py \
        CONFIG OUT ONE_CONFIG ONE_COPY
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STEPS = 4
TOL = 1e-5
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def finetune_config(tokenizer_dir: Path, data: Path, dp: int) -> dict:
    """The fine-tune both runs make: a global batch of 4 sequences, as 2 × 2 micro-batches or 2 ranks × 2."""
    return {"model": "llama-debug", "tokenizer": str(tokenizer_dir), "data": {"path": str(data), "seq_len": 32},
            "train": {"per_device_batch_size": 2, "accumulate_grad_batches": 2 // dp, "max_steps": STEPS,
                      "lora": LORA},
            "optimizer": {"lr": 0.01, "weight_decay": 0.0},
            "deploy": {"seed": 0, "precision": "fp32", "dp": dp, "checkpoints": {"every": 2}}}


def without_last_checkpoint(run: Path, copy: Path) -> None:
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "checkpoints" / f"step_{STEPS:06d}")


def run_job(config_file: Path, out: Path, one_config_file: Path, one_copy: Path) -> None:
    """Under torchrun: the run into ``out/run``; a copy of it without its last checkpoint resumed;
    ``one_copy`` (a one-process run without its last checkpoint) resumed at ``deploy.dp: 2``."""
    import torch.distributed as dist

    from luminary.train.finetune import FinetuneConfig, run_finetune

    config = FinetuneConfig.model_validate(json.loads(config_file.read_text()))
    run_finetune(config, out / "run")
    if dist.get_rank() == 0:
        without_last_checkpoint(out / "run", out / "resumed")
    dist.barrier()
    run_finetune(config, out / "resumed", resume=True)
    one = json.loads(one_config_file.read_text())
    one["deploy"]["dp"] = 2  # a key a resumed run may change
    run_finetune(FinetuneConfig.model_validate(one), one_copy, resume=True)


def adapter(run: Path, step: int = STEPS) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / f"step_{step:06d}" / "adapter_model.safetensors")


def shards(folder: Path, tmp: Path) -> dict:
    """A checkpoint's ``distributed/`` shards as one whole state: {"model": ..., "optimizer": ...}."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(folder / "distributed", tmp / "whole.pt")
    return torch.load(tmp / "whole.pt", weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tokenizer_dir, stdlib_texts):
    """(one-process run, two-process run, two-process run resumed from step 2,
    one-process run resumed from step 2 by two processes)."""
    from luminary.train.finetune import FinetuneConfig, run_finetune
    from tests.parallel.test_distributed import torchrun_env

    root = tmp_path_factory.mktemp("lora_dp")
    data = root / "code.txt"
    data.write_text("\n".join(stdlib_texts[:3]), encoding="utf-8")
    for dp in (1, 2):
        (root / f"dp{dp}.json").write_text(json.dumps(finetune_config(tokenizer_dir, data, dp)))
    run_finetune(FinetuneConfig.model_validate_json((root / "dp1.json").read_text()), root / "one")
    without_last_checkpoint(root / "one", root / "one_at_dp2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__,
           str(root / "dp2.json"), str(root / "dp2"), str(root / "dp1.json"), str(root / "one_at_dp2")]
    result = subprocess.run(cmd, env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return root / "one", root / "dp2" / "run", root / "dp2" / "resumed", root / "one_at_dp2"


def assert_same_steps(one: Path, other: Path, steps: int, tol: float) -> None:
    """The two runs' logs: the same steps and batches, losses within ``tol``, grad norms within 1e-4."""
    from luminary.core.runs import read_metrics

    want, got = read_metrics(one / "metrics.jsonl"), read_metrics(other / "metrics.jsonl")
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(steps))
    for g, w in zip(got, want):
        assert g["batch_sha256"] == w["batch_sha256"]
        assert g["loss"] == pytest.approx(w["loss"], rel=tol, abs=tol)
        assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-4)


def test_dp2_trains_the_adapter_one_process_trains(runs):
    one, dp2, *_ = runs
    assert_same_steps(one, dp2, STEPS, TOL)
    a, b = adapter(one), adapter(dp2)
    assert a.keys() == b.keys() and all("lora_" in k and ".default" not in k for k in a)  # peft's file names
    for key in a:
        assert a[key].shape == b[key].shape, key  # the whole adapter, not rank 0's shard
        assert (a[key] - b[key]).abs().max() <= TOL, key
    assert any(v.abs().sum() > 0 for k, v in b.items() if "lora_B" in k)  # B starts at zero: it moved
    config = json.loads((dp2 / "checkpoints" / f"step_{STEPS:06d}" / "adapter_config.json").read_text())
    assert config["r"] == LORA["r"] and Path(config["base_model_name_or_path"]) == (dp2 / "base").resolve()


def test_dp2_keeps_the_base_frozen_and_optimizes_the_adapter_only(runs, tmp_path):
    import torch
    from safetensors.torch import load_file

    _, dp2, *_ = runs
    state = shards(dp2 / "checkpoints" / f"step_{STEPS:06d}", tmp_path)
    base = load_file(dp2 / "base" / "model.safetensors")
    frozen = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
              for k, v in state["model"].items() if "lora_" not in k}
    assert base.keys() <= frozen.keys()
    for name, value in base.items():  # the weights rank 0 wrote before the first step, bitwise
        assert torch.equal(frozen[name], value), name
    optimized = set(state["optimizer"]["state"])
    assert optimized and all("lora_" in k for k in optimized)
    assert optimized == {k for k in state["model"] if "lora_" in k}


def test_dp2_resume_continues_the_same_run(runs):
    import torch

    from luminary.core.runs import read_metrics

    _, dp2, resumed, _ = runs
    want, got = read_metrics(dp2 / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
    a, b = adapter(dp2), adapter(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dp2_resumes_a_one_process_checkpoint(runs):
    """A one-process checkpoint holds the adapter alone, in peft's file names: two processes load it into
    their shards and train on (at twice the global batch: ``deploy.dp`` is a key a resumed run may change)."""
    from luminary.core.runs import read_metrics

    one, *_, crossed = runs
    want, got = read_metrics(one / "metrics.jsonl"), read_metrics(crossed / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(STEPS)) and got[:2] == want[:2]
    a, b = adapter(one), adapter(crossed)
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert all(g["batch_sha256"] != w["batch_sha256"] for g, w in zip(got[2:], want[2:]))  # 8 sequences, not 4


def test_one_process_adapter_loads_by_name_as_the_shards_do(runs):
    """What the resume above rests on: ``load_sharded_state`` reads a one-process LoRA checkpoint into a
    fresh adapter model (no process group here): the adapter's tensors and the optimizer's moments, by name."""
    import torch
    from transformers import AutoModelForCausalLM

    from luminary.parallel.checkpoint import load_sharded_state
    from luminary.train.lora import LoraConfig, apply_lora
    from luminary.train.optim import build_optimizer

    one, *_ = runs
    model = apply_lora(AutoModelForCausalLM.from_pretrained(one / "base"), LoraConfig(**LORA))
    optimizer = build_optimizer(model)
    load_sharded_state(one / "checkpoints" / "step_000002", model, optimizer)
    saved, loaded = adapter(one, 2), model.from_adapter_names(adapter(one, 2))
    assert len(loaded) == len(saved) and loaded.keys() <= model.state_dict().keys()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in loaded.items())
    assert len(optimizer.state) == len(saved) and all(s["step"] == 2 for s in optimizer.state.values())


def test_dp2_adapter_folds_into_a_model_transformers_loads(runs, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from luminary.train.lora import merge_adapter

    one, dp2, *_ = runs
    merged = AutoModelForCausalLM.from_pretrained(merge_adapter(dp2, tmp_path / "merged")).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(one / "base"),
                                          one / "checkpoints" / f"step_{STEPS:06d}").eval()
    ids = torch.randint(0, merged.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference(ids).logits, atol=TOL, rtol=0)


if __name__ == "__main__":
    run_job(*map(Path, sys.argv[1:5]))
