"""LoRA with the shared ``deploy:`` levers: float8 base layers, and tensor parallelism.

``deploy.float8: emulated`` (any device): the frozen ``base_layer`` of each adapted linear layer multiplies in
float8, the adapter's ``lora_A`` / ``lora_B`` in full precision. A float8 LoRA run trains, follows the float32
LoRA run of the same config, changes the adapter alone, writes it in peft's format, and folds back.

``deploy.tp: 2`` (two processes, gloo): the base's automatic plan carried onto the adapter layers
(``luminary.parallel.adapters``); the run trains the adapter one process trains on the same global batch.
This file is also the job the two processes run:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/train/test_lora_float8_tp.py CONFIG OUT
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

STEPS = 6
LORA = {"r": 16, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}  # r 16: widths float8 takes
# float8 against float32 (e5m2 gradients carry 2 mantissa bits, and AdamW's normalised steps magnify
# the difference in the small gradients of a fresh model):
LOSS_TOL = 5e-3  # relative, the loss at each step (measured: 1.7e-3 at most)
COSINE = 0.9  # cosine between the two runs' lora_B after STEPS steps (B starts at 0: the update; measured: 0.947)
GRAD_TOL = 0.15  # ‖g₈ − g‖ / ‖g‖ of each adapter tensor's gradient in one step (measured: 8.2e-2 at most)


def lora_config(tokenizer_dir, data, float8) -> dict:
    """A LoRA fine-tune of llama-debug: STEPS steps of 4 sequences, one checkpoint at the end."""
    return {"model": "llama-debug", "tokenizer": str(tokenizer_dir), "data": {"path": str(data), "seq_len": 32},
            "train": {"per_device_batch_size": 4, "max_steps": STEPS, "lora": LORA},
            "optimizer": {"lr": 0.02, "weight_decay": 0.0},
            "deploy": {"seed": 0, "precision": "fp32", "float8": float8, "checkpoints": {"every": STEPS}}}


def adapter(run) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / f"step_{STEPS:06d}" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def float8_runs(tmp_path_factory, tokenizer_dir, stdlib_texts):
    """(float32 LoRA run, float8-emulated LoRA run): the same config, the same batches."""
    from luminary.train.finetune import FinetuneConfig, run_finetune

    root = tmp_path_factory.mktemp("lora_float8")
    data = root / "code.txt"
    data.write_text("\n".join(stdlib_texts[:3]), encoding="utf-8")
    runs = []
    for float8 in (False, "emulated"):
        run = root / f"float8_{float8}"
        run_finetune(FinetuneConfig.model_validate(lora_config(tokenizer_dir, data, float8)), run)
        runs.append(run)
    return tuple(runs)


def test_float8_lora_trains_and_follows_the_float32_run(float8_runs):
    from luminary.core.runs import read_metrics

    full, f8 = float8_runs
    want, got = read_metrics(full / "metrics.jsonl"), read_metrics(f8 / "metrics.jsonl")
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(STEPS))
    assert got[-1]["loss"] < got[0]["loss"] - 0.05  # it learns
    for g, w in zip(got, want):
        assert g["batch_sha256"] == w["batch_sha256"]
        assert abs(g["loss"] - w["loss"]) <= LOSS_TOL * w["loss"], (g["step"], g["loss"], w["loss"])
    a, b = adapter(full), adapter(f8)
    assert a.keys() == b.keys()
    for key in (k for k in a if "lora_B" in k):
        cosine = float(torch.nn.functional.cosine_similarity(a[key].flatten(), b[key].flatten(), dim=0))
        assert cosine >= COSINE, (key, cosine)
        assert not torch.equal(a[key], b[key]), key  # the float8 products did change the numbers


def float8_lora_model():
    """llama-debug with LoRA on its attention, lora_B drawn (as after some steps: A's gradient is not zero),
    and the same through the Deployer with ``float8: emulated``."""
    import copy

    from transformers import AutoModelForCausalLM

    from luminary.models.presets import build_config
    from luminary.train.deployer import Deployer
    from luminary.train.lora import LoraConfig, apply_lora

    torch.manual_seed(0)
    model = apply_lora(AutoModelForCausalLM.from_config(build_config("llama-debug", 512)), LoraConfig(**LORA))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    f8 = Deployer(None, verbose=False, float8="emulated", precision="fp32").prepare_model(copy.deepcopy(model))
    return model, f8


def test_float8_takes_the_base_layers_and_trains_the_adapter_alone():
    """The Deployer's float8 conversion under peft: each ``base_layer`` becomes a Float8Linear, lora_A/B stay
    ``nn.Linear``; the adapter's gradients follow float32's, the base takes none, and one optimizer step moves
    the adapter and leaves every base weight bitwise as it was."""
    from torch import nn

    from luminary.train.float8 import Float8Linear
    from luminary.train.optim import build_optimizer

    full, model = float8_lora_model()
    adapted = [m for m in model.modules() if hasattr(m, "base_layer") and hasattr(m, "lora_A")]
    assert len(adapted) == 2 * 4  # two blocks, four projections
    for layer in adapted:
        assert type(layer.base_layer) is Float8Linear
        assert type(layer.lora_A["default"]) is nn.Linear and type(layer.lora_B["default"]) is nn.Linear
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model)
    ids = torch.randint(0, 512, (4, 32), generator=torch.Generator().manual_seed(0))
    for m in (full, model):
        m.train()
        m(input_ids=ids, labels=ids).loss.backward()
    want = dict(full.named_parameters())
    for name, p in model.named_parameters():
        if "lora_" in name:
            rel = float((p.grad - want[name].grad).norm() / want[name].grad.norm())
            assert rel <= GRAD_TOL, (name, rel)
    optimizer.step()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad and not torch.equal(p, before[name]), name
        else:
            assert p.grad is None and torch.equal(p, before[name]), name


def test_float8_adapter_is_peft_format_and_folds_back(float8_runs, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from luminary.train.lora import merge_adapter

    _, f8 = float8_runs
    checkpoint = f8 / "checkpoints" / f"step_{STEPS:06d}"
    config = json.loads((checkpoint / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == LORA["r"]
    assert sorted(config["target_modules"]) == sorted(LORA["target_modules"])
    saved = adapter(f8)
    assert saved and all("lora_" in k and ".default" not in k and "base_layer" not in k for k in saved)
    merged_dir = merge_adapter(f8, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(f8 / "base"), checkpoint).eval()
    ids = torch.randint(0, merged.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference(ids).logits, atol=1e-5, rtol=0)
    base, folded = load_file(f8 / "base" / "model.safetensors"), load_file(merged_dir / "model.safetensors")
    scale = LORA["alpha"] / LORA["r"]
    for name, weight in base.items():  # W' = W + (alpha/r)·B·A on the adapted layers, W elsewhere
        prefix = "base_model.model." + name.removesuffix(".weight")
        if f"{prefix}.lora_A.weight" in saved:
            delta = scale * saved[f"{prefix}.lora_B.weight"] @ saved[f"{prefix}.lora_A.weight"]
            torch.testing.assert_close(folded[name], weight + delta, atol=1e-6, rtol=0)
        else:
            assert torch.equal(folded[name], weight), name


# --- tensor parallel ----------------------------------------------------------------------------------

TP_STEPS = 4
TP_TOL = 1e-5
TP_LORA = {"r": 4, "alpha": 8, "target_modules": "all-linear"}  # q, k, v, gate, up: column; o, down: row


def tp_config(tokenizer_dir, data, tp: int) -> dict:
    """A LoRA fine-tune of llama-debug on a global batch of 4 sequences, in one process or split over tp ranks."""
    return {"model": "llama-debug", "tokenizer": str(tokenizer_dir), "data": {"path": str(data), "seq_len": 32},
            "train": {"per_device_batch_size": 4, "max_steps": TP_STEPS, "lora": TP_LORA},
            "optimizer": {"lr": 0.01, "weight_decay": 0.0},
            "deploy": {"seed": 0, "precision": "fp32", "tp": tp, "checkpoints": {"every": TP_STEPS}}}


def tp_placements(run: Path) -> dict[str, str]:
    """Each adapter parameter's placement on the tp dimension, with the run's base and LoRA config prepared by
    a Deployer at ``deploy.tp: 2`` (the plan's own check skipped: the run made it)."""
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM

    from luminary.train.deployer import Deployer
    from luminary.train.lora import LoraConfig, apply_lora

    model = apply_lora(AutoModelForCausalLM.from_pretrained(run / "base"), LoraConfig(**TP_LORA))
    model = Deployer(None, verbose=False, tp=2, tp_check=False, precision="fp32").prepare_model(model)
    out = {}
    for name, p in model.named_parameters():
        if "lora_" in name:
            names = p.device_mesh.mesh_dim_names if isinstance(p, DTensor) else ()
            placement = p.placements[names.index("tp")] if "tp" in names else None
            out[name] = f"shard {placement.dim}" if placement is not None and placement.is_shard() else "whole"
    return out


def run_tp_job(config_file: Path, out: Path) -> None:
    """Under torchrun: the run into ``out/run``; rank 0 writes the adapter's placements to ``out/placements.json``."""
    import torch.distributed as dist

    from luminary.train.finetune import FinetuneConfig, run_finetune

    run_finetune(FinetuneConfig.model_validate(json.loads(config_file.read_text())), out / "run")
    placements = tp_placements(out / "run")
    if dist.get_rank() == 0:
        (out / "placements.json").write_text(json.dumps(placements))


@pytest.fixture(scope="module")
def tp_runs(tmp_path_factory, tokenizer_dir, stdlib_texts):
    """(one-process run, tp 2 run, the tp 2 run's adapter placements)."""
    from luminary.train.finetune import FinetuneConfig, run_finetune
    from tests.parallel.test_distributed import torchrun_env

    root = tmp_path_factory.mktemp("lora_tp")
    data = root / "code.txt"
    data.write_text("\n".join(stdlib_texts[:3]), encoding="utf-8")
    (root / "tp2.json").write_text(json.dumps(tp_config(tokenizer_dir, data, 2)))
    run_finetune(FinetuneConfig.model_validate(tp_config(tokenizer_dir, data, 1)), root / "one")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__,
           str(root / "tp2.json"), str(root / "tp2")]
    result = subprocess.run(cmd, env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return root / "one", root / "tp2" / "run", json.loads((root / "tp2" / "placements.json").read_text())


def tp_adapter(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / f"step_{TP_STEPS:06d}" / "adapter_model.safetensors")


def test_tp2_trains_the_adapter_one_process_trains(tp_runs):
    from tests.train.test_lora_distributed import assert_same_steps

    one, tp2, _ = tp_runs
    assert_same_steps(one, tp2, TP_STEPS, TP_TOL)
    a, b = tp_adapter(one), tp_adapter(tp2)
    assert a.keys() == b.keys() and len(a) == 2 * 2 * 7 and all(".default" not in k for k in a)  # peft's names
    for key in a:
        assert a[key].shape == b[key].shape, key  # the whole adapter, gathered from the tp shards
        assert (a[key] - b[key]).abs().max() <= TP_TOL, key
    assert any(v.abs().sum() > 0 for k, v in b.items() if "lora_B" in k)  # B starts at zero: it moved


def test_tp2_splits_the_adapter_beside_its_base_layer(tp_runs):
    """Column-split base (q, k, v, gate, up): A whole, B split on its output rows like W; row-split base
    (o, down): A split on its input columns like W, B whole."""
    *_, placements = tp_runs
    assert len(placements) == 2 * 2 * 7
    for name, placement in placements.items():
        column = any(f".{p}." in name for p in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"))
        if ".lora_A." in name:
            assert placement == ("whole" if column else "shard 1"), (name, placement)
        else:
            assert placement == ("shard 0" if column else "whole"), (name, placement)


def test_adapter_plan_carries_each_style_onto_the_lora_layers():
    from transformers import AutoModelForCausalLM

    from luminary.models.presets import build_config
    from luminary.parallel.adapters import adapter_plan
    from luminary.parallel.plan import Entry, Plan
    from luminary.train.lora import LoraConfig, apply_lora

    model = apply_lora(AutoModelForCausalLM.from_config(build_config("llama-debug", 512)),
                       LoraConfig(r=4, alpha=8, target_modules=["q_proj", "o_proj"]))
    attn = "model.layers.0.self_attn"
    plan = Plan(2, {f"{attn}.q_proj": Entry("colwise_dtensor", "", "linear", (64, 64)),
                    f"{attn}.o_proj": Entry("rowwise", "", "linear", (64, 64)),
                    f"{attn}.k_proj": Entry("colwise", "", "linear", (64, 64))}, {attn: {"num_heads": 2}})
    got = adapter_plan(plan, model)
    wrapped = f"base_model.model.{attn}"
    assert {n: (e.style, e.shape) for n, e in got.entries.items()} == {
        f"{wrapped}.q_proj.base_layer": ("colwise_dtensor", (64, 64)),
        f"{wrapped}.q_proj.lora_A.default": ("replicate", (4, 64)),
        f"{wrapped}.q_proj.lora_B.default": ("colwise_dtensor", (64, 4)),
        f"{wrapped}.o_proj.base_layer": ("rowwise", (64, 64)),
        f"{wrapped}.o_proj.lora_A.default": ("rowwise", (4, 64)),
        f"{wrapped}.o_proj.lora_B.default": ("replicate", (64, 4)),
        f"{wrapped}.k_proj": ("colwise", (64, 64)),  # not adapted: as it was
    }
    assert got.attributes == {wrapped: {"num_heads": 2}}


if __name__ == "__main__":
    run_tp_job(*map(Path, sys.argv[1:3]))
