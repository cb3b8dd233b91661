"""Activation checkpointing: the same run bit for bit, far fewer saved activations."""

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.losses import causal_lm_collate, causal_lm_loss
from luminary.parallel.recompute import apply_activation_checkpointing, is_checkpointed

from tests.train.helpers import pretrain_with


def fit(preset, checkpointing, workdir=None):
    rng = np.random.default_rng(0)
    data = [rng.integers(1, 64, size=int(rng.integers(8, 20))).tolist() for _ in range(16)]
    model = build_model(preset, 64, seed=0)
    deployer = Deployer(workdir, seed=0, precision="fp32", verbose=False, activation_checkpointing=checkpointing)
    trainer = Trainer(deployer, causal_lm_collate, causal_lm_loss, model, OptimizerConfig(lr=1e-2),
                      accumulate_grad_batches=2)
    records = trainer.fit(data, 4, max_steps=3)
    return [(r["loss"], r["grad_norm"], r["batch_sha256"]) for r in records], model


@pytest.mark.parametrize("preset", ["llama-debug", "crystal-debug"])
def test_training_is_bit_identical_with_and_without_checkpointing(preset):
    ours, model = fit(preset, True)
    ref, ref_model = fit(preset, False)
    assert ours == ref
    assert all(is_checkpointed(layer) for layer in model.model.layers)
    assert not any(is_checkpointed(layer) for layer in ref_model.model.layers)
    for (name, p), q in zip(model.state_dict().items(), ref_model.state_dict().values()):
        assert torch.equal(p, q), name


def saved_bytes(model, ids):
    """Bytes that autograd keeps for backward during one forward pass."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = causal_lm_loss(model, {"input_ids": ids, "labels": ids})["loss"]
    loss.backward()
    return total


def test_blocks_keep_only_their_inputs():
    ids = torch.randint(0, 512, (2, 128), generator=torch.Generator().manual_seed(0))
    plain = saved_bytes(build_model("llama-tiny", 512, seed=0), ids)
    model = build_model("llama-tiny", 512, seed=0)
    blocks = apply_activation_checkpointing(model)
    assert blocks == [f"model.layers.{i}" for i in range(4)]
    kept = saved_bytes(model, ids)
    # the four blocks' insides (q, k, v, attention, norms, gate/up/act) are gone; the head's remain
    assert kept < 0.15 * plain  # measured: 8.4%
    block_inputs = 4 * ids.numel() * model.config.hidden_size * 4
    assert kept >= block_inputs


def test_names_saving_loading_and_copies_are_unchanged(tmp_path):
    model = build_model("llama-debug", 64, seed=0)
    keys = list(model.state_dict())
    apply_activation_checkpointing(model)
    apply_activation_checkpointing(model)  # twice is once
    assert list(model.state_dict()) == keys
    assert type(model.model.layers[0]).__name__ == "CheckpointedLlamaDecoderLayer"
    assert type(model.model.layers[0]).__mro__[1].__name__ == "LlamaDecoderLayer"
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    ids = torch.randint(0, 64, (2, 10))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    # a deep copy (a target network) checkpoints its own blocks with its own weights
    twin = copy.deepcopy(model).train()
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    model.train()
    a = model(input_ids=ids, use_cache=False).logits
    b = twin(input_ids=ids, use_cache=False).logits
    assert is_checkpointed(twin.model.layers[1]) and not torch.allclose(a, b)


def test_generation_runs_the_blocks_as_they_are():
    model = build_model("llama-debug", 64, seed=0)
    ref = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=6, do_sample=False)
    apply_activation_checkpointing(model)
    model.train()  # even in training mode: no gradients, no checkpointing, the cache works
    assert torch.equal(model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=6, do_sample=False), ref)


def test_an_empty_cache_is_dropped_and_a_filled_one_refused():
    model = build_model("llama-debug", 64, seed=0)
    apply_activation_checkpointing(model)
    ids = torch.randint(0, 64, (1, 8))
    model(input_ids=ids).logits.sum().backward()  # use_cache left on: the empty cache is dropped
    with torch.no_grad():
        out = model(input_ids=ids[:, :4], use_cache=True)
    field = "cache" if "cache" in out.__dataclass_fields__ else "past_key_values"  # renamed in transformers 5.2x
    with pytest.raises(LuminaryError, match="activation_checkpointing: a training forward got a filled KV cache"):
        model(input_ids=ids[:, 4:], **{field: getattr(out, field)})


def test_a_model_without_blocks_is_refused():
    with pytest.raises(LuminaryError, match="activation_checkpointing: Linear has no list of blocks"):
        apply_activation_checkpointing(torch.nn.Linear(2, 2))


def test_pretraining_with_checkpointing_logs_the_same_numbers(tmp_path, release_recipe, run_dir):
    from luminary.core.runs import read_metrics

    keys = ("step", "loss", "grad_norm", "lr", "batch_sha256")
    ours = [[r[k] for k in keys] for r in pretrain_with(release_recipe, tmp_path, activation_checkpointing=True)]
    assert ours == [[r[k] for k in keys] for r in read_metrics(run_dir / "metrics.jsonl")]
