"""Chunked linear + cross-entropy: the loss and gradients of the unfused head, without its logits."""

import json

import numpy as np
import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.fused_ce import chunk_tokens, fused_causal_lm_loss, linear_cross_entropy
from luminary.train.losses import causal_lm_collate, causal_lm_loss, token_cross_entropy

from tests.train.helpers import pretrain_with
from tests.memory import LargestTensor


def by_hand(h, w, y, scale):
    """Σ_i [log Σ_v exp(s·h_i·w_v) − s·h_i·w_{y_i}] over targets that are not -100, written out."""
    total = torch.zeros((), dtype=h.dtype)
    for i in range(h.shape[0]):
        if y[i] == -100:
            continue
        z = scale * (w @ h[i])
        total = total + torch.log(torch.exp(z - z.max()).sum()) + z.max() - z[y[i]]
    return total


@pytest.mark.parametrize("chunk", [1, 7, 50, None])
def test_loss_and_gradients_match_the_formula(chunk):
    torch.manual_seed(0)
    h = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 37, (50,))
    y[::7] = -100
    ref = by_hand(h, w, y, 1.7)
    (0.3 * ref).backward()
    ref_h, ref_w = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    out = linear_cross_entropy(h, w, y, scale=1.7, chunk=chunk)
    (0.3 * out).backward()  # the incoming gradient scales the stored ones
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h.grad, ref_h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, ref_w, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # evaluation: loss only, no gradient buffers
        torch.testing.assert_close(linear_cross_entropy(h, w, y, scale=1.7, chunk=chunk), ref.detach())


def test_chunk_size_keeps_a_chunk_of_logits_within_the_budget():
    assert chunk_tokens(16392, 32000) == (1 << 25) // 32000 == 1048
    assert chunk_tokens(100, 64) == 100  # a small batch is one chunk
    assert chunk_tokens(10, 1 << 26) == 1


@pytest.mark.parametrize("preset", ["llama-debug", "crystal-tiny"])
def test_model_loss_and_every_gradient_equal_the_unfused_head(preset):
    """Llama (untied) and Crystal (tied embeddings, μP logit multiplier), with an ignored span."""
    model = build_model(preset, 96, seed=0)
    ids = torch.randint(0, 96, (3, 20), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[1, 5:9] = -100
    loss, count = token_cross_entropy(model(input_ids=ids).logits, labels)
    loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    fused, fused_count = fused_causal_lm_loss(model, ids, labels, chunk=8)
    fused.backward()
    assert fused_count == count == 3 * 19 - 4
    torch.testing.assert_close(fused, loss, rtol=1e-6, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_under_bf16_autocast_it_agrees_with_the_autocast_head():
    model = build_model("llama-debug", 96, seed=0)
    ids = torch.randint(0, 96, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = token_cross_entropy(model(input_ids=ids).logits, ids)[0]
        fused = fused_causal_lm_loss(model, ids, ids, chunk=5)[0]
    assert fused.dtype == torch.float32
    assert abs(fused.item() - loss.item()) < 1e-2 * loss.item()
    fused.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_the_whole_logits_tensor_is_never_formed():
    vocab, n = 4000, 2 * 64
    model = build_model("llama-debug", vocab, seed=0)
    ids = torch.randint(0, vocab, (2, 64))
    with LargestTensor() as unfused:
        token_cross_entropy(model(input_ids=ids).logits, ids)[0].backward()
    with LargestTensor() as fused:
        fused_causal_lm_loss(model, ids, ids, chunk=16)[0].backward()
    assert unfused.largest >= n * vocab
    # the largest is now the embedding (vocab × 64) or one chunk's logits (16 × vocab), not n × vocab
    assert fused.largest == max(vocab * model.config.hidden_size, 16 * vocab) < n * vocab


def test_trainer_steps_with_the_fused_loss_match_the_unfused_ones():
    rng = np.random.default_rng(0)
    data = [rng.integers(1, 64, size=int(rng.integers(6, 16))).tolist() for _ in range(24)]

    def run(fused):
        model = build_model("llama-debug", 64, seed=0)
        loss_fn = (lambda m, b, t: causal_lm_loss(m, b, t, fused=True)) if fused else causal_lm_loss
        trainer = Trainer(Deployer(seed=0, precision="fp32", verbose=False), causal_lm_collate, loss_fn, model,
                          OptimizerConfig(lr=1e-2), accumulate_grad_batches=2)
        records = trainer.fit(data, 4, max_steps=3)
        return [(r["loss"], r["grad_norm"], r["tokens"]) for r in records], trainer.evaluate(data[:8], 4)

    (ours, ours_eval), (ref, ref_eval) = run(True), run(False)
    for a, b in zip(ours, ref):
        assert a[2] == b[2]
        assert a[0] == pytest.approx(b[0], rel=1e-5) and a[1] == pytest.approx(b[1], rel=1e-4)
    assert ours_eval == pytest.approx(ref_eval, rel=1e-5)


def test_compiled_fused_loss_has_no_graph_break_and_matches():
    """Also with activation checkpointing, the other memory lever: both trace into one graph."""
    import torch._dynamo

    from luminary.parallel.recompute import apply_activation_checkpointing, compile_around_checkpoints

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = build_model("llama-debug", 64, seed=0)
    apply_activation_checkpointing(model)
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(3))
    compiled = compile_around_checkpoints(lambda m, x: fused_causal_lm_loss(m, x, x, chunk=8)[0])
    loss = compiled(model, ids)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    ref = token_cross_entropy(model(input_ids=ids).logits, ids)[0]
    ref.backward()
    assert not torch._dynamo.utils.counters["graph_break"]
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
    torch._dynamo.reset()


def test_cli_finetune_with_fused_cross_entropy(tmp_path, cli, tokenizer_dir, stdlib_texts):
    data = tmp_path / "corpus"
    data.mkdir()
    (data / "a.py").write_text(stdlib_texts[0])
    losses = {}
    for fused in (False, True):
        config = tmp_path / f"train_{fused}.yaml"
        config.write_text(f"model: llama-debug\ntokenizer: {tokenizer_dir}\ndata: {{path: {data}, seq_len: 32}}\n"
                          "train: {per_device_batch_size: 4, max_steps: 2}\n"
                          f"deploy: {{precision: fp32, fused_cross_entropy: {str(fused).lower()}}}\n")
        res = cli("train", config, "--out", tmp_path / f"run_{fused}")
        assert res.returncode == 0, res.stderr
        rows = [json.loads(r) for r in (tmp_path / f"run_{fused}" / "metrics.jsonl").read_text().splitlines()]
        losses[fused] = [r["loss"] for r in rows]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    config.write_text(config.read_text().replace("deploy: {", "deploy: {tp: 2, "))
    res = cli("train", config, "--out", tmp_path / "tp")
    assert res.returncode == 2
    res.one_line_error("fused_cross_entropy")


def test_a_head_with_a_bias_is_refused():
    model = build_model("llama-debug", 64, seed=0)
    model.lm_head = torch.nn.Linear(model.config.hidden_size, 64, bias=True)
    with pytest.raises(LuminaryError, match="fused_cross_entropy"):
        fused_causal_lm_loss(model, torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))


def test_hidden_and_weight_that_do_not_multiply_are_refused():
    with pytest.raises(ValueError, match="do not multiply"):
        linear_cross_entropy(torch.zeros(4, 8), torch.zeros(10, 6), torch.zeros(4, dtype=torch.long))


def test_pretraining_with_the_fused_head_logs_the_same_losses(tmp_path, release_recipe, run_dir):
    """The Crystal recipe (μP logit multiplier, tied embeddings, FIM padding ignored in phase 2)."""
    from luminary.core.runs import read_metrics

    ours = pretrain_with(release_recipe, tmp_path, fused_cross_entropy=True)
    ref = read_metrics(run_dir / "metrics.jsonl")
    assert [r["batch_sha256"] for r in ours] == [r["batch_sha256"] for r in ref]
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in ref], rel=1e-4)
    assert [r["grad_norm"] for r in ours] == pytest.approx([r["grad_norm"] for r in ref], rel=1e-3)


def test_a_model_that_rescales_its_logits_is_refused_and_ours_pass():
    """Cohere and Granite change the logits after the projection: the fused head must not train them."""
    from transformers import LlamaForCausalLM

    from luminary.train.fused_ce import check_fusable

    class RescaledLogits(LlamaForCausalLM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits / 4.0
            return out

    plain = build_model("llama-debug", 64, seed=0)
    check_fusable(plain)
    check_fusable(build_model("crystal-debug", 64, seed=0))
    rescaled = RescaledLogits(plain.config)
    rescaled.train()
    with pytest.raises(LuminaryError, match="fused_cross_entropy: RescaledLogits's logits are not"):
        check_fusable(rescaled)
    assert rescaled.training  # the probe leaves the mode as it found it
