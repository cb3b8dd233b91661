"""Memorization against a direct computation; near 1 when memorized, near 0 when not."""

import numpy as np
import pytest
import torch

from luminary.analysis.memorization import memorization
from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.losses import causal_lm_collate, causal_lm_loss

K, L = 8, 8


def direct_scores(model, samples, order, eos=None, fill=None):
    """Greedy decoding written out: argmax of the full forward, one token at a time; after ``eos``
    (Analysis360 lets a row end), the rest is ``fill``."""
    scores = []
    with torch.no_grad():
        for i in order:
            seq = torch.as_tensor(samples[i][:K])[None]
            for _ in range(L):
                if eos is not None and seq.shape[1] > K and seq[0, -1] == eos:
                    nxt = torch.tensor([[fill]])
                else:
                    nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], 1)
            scores.append((seq[0, K:].numpy() == samples[i][K : K + L]).mean())
    return np.asarray(scores)


def test_an_early_end_of_sequence_counts_as_analysis360_counts_it(chunk):
    """A model that ends every continuation at once: rows are filled with its pad token, so a true
    continuation of end-of-sequence tokens matches in full; with allow_eos=False nothing ends early."""
    from luminary.analysis.memorization import fill_token

    model = build_model("crystal-debug", 128, seed=0).eval()
    eos = 3
    bias = torch.zeros(128)
    bias[eos] = 100.0  # the head's bias makes eos the argmax everywhere
    model.lm_head.bias = torch.nn.Parameter(bias)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    assert fill_token(model) == eos
    samples = [np.concatenate([c[:K], np.full(L, eos)]) for c in chunk]
    result = memorization(model, samples, k=K, l=L, n=4, batch_size=2)
    assert result.full_match == 1.0
    np.testing.assert_allclose(result.scores, direct_scores(model, samples, result.indices, eos, eos))


@pytest.fixture(scope="module")
def chunk():
    rng = np.random.default_rng(0)
    return [rng.integers(5, 120, size=K + L + 4).astype(np.int64) for _ in range(12)]


def test_untrained_model_scores_near_zero_and_matches_direct(chunk):
    model = build_model("crystal-debug", 128, seed=0).eval()
    result = memorization(model, chunk, k=K, l=L, n=10, batch_size=4)
    assert result.scores.shape == (10,) and result.matches.shape == (10, L)
    eos, fill = model.generation_config.eos_token_id, model.generation_config.pad_token_id
    np.testing.assert_allclose(result.scores, direct_scores(model, chunk, result.indices, eos, fill))
    assert result.token_match < 0.1 and result.full_match == 0.0


def test_memorized_chunk_scores_near_one(chunk):
    model = build_model("crystal-debug", 128, seed=0)
    trainer = Trainer(Deployer(seed=0, precision="fp32"), causal_lm_collate, causal_lm_loss, model,
                      OptimizerConfig(lr=3e-3), max_grad_norm=1.0)
    trainer.fit(chunk, per_device_batch_size=12, max_steps=150)
    model.eval()
    result = memorization(model, chunk, k=K, l=L, n=12, batch_size=5)
    eos, fill = model.generation_config.eos_token_id, model.generation_config.pad_token_id
    np.testing.assert_allclose(result.scores, direct_scores(model, chunk, result.indices, eos, fill))
    assert result.token_match > 0.9 and result.full_match > 0.75
    assert sorted(result.indices.tolist()) == list(range(12))  # shuffled with seed 42, all taken
