"""Memorization against a direct computation; near 1 when memorized, near 0 when not."""

import numpy as np
import pytest
import torch

from luminary.analysis.memorization import memorization
from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.losses import causal_lm_collate, causal_lm_loss

K, L = 8, 8


def direct_scores(model, samples, order):
    """Greedy decoding written out: argmax of the full forward, one token at a time."""
    scores = []
    with torch.no_grad():
        for i in order:
            seq = torch.as_tensor(samples[i][:K])[None]
            for _ in range(L):
                nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
                seq = torch.cat([seq, nxt], 1)
            scores.append((seq[0, K:].numpy() == samples[i][K : K + L]).mean())
    return np.asarray(scores)


@pytest.fixture(scope="module")
def chunk():
    rng = np.random.default_rng(0)
    return [rng.integers(5, 120, size=K + L + 4).astype(np.int64) for _ in range(12)]


def test_untrained_model_scores_near_zero_and_matches_direct(chunk):
    model = build_model("crystal-debug", 128, seed=0).eval()
    result = memorization(model, chunk, k=K, l=L, n=10, batch_size=4)
    assert result.scores.shape == (10,) and result.matches.shape == (10, L)
    np.testing.assert_allclose(result.scores, direct_scores(model, chunk, result.indices))
    assert result.token_match < 0.1 and result.full_match == 0.0


def test_memorized_chunk_scores_near_one(chunk):
    model = build_model("crystal-debug", 128, seed=0)
    trainer = Trainer(Deployer(seed=0, precision="fp32"), causal_lm_collate, causal_lm_loss, model,
                      OptimizerConfig(lr=3e-3), max_grad_norm=1.0)
    trainer.fit(chunk, per_device_batch_size=12, max_steps=150)
    model.eval()
    result = memorization(model, chunk, k=K, l=L, n=12, batch_size=5)
    np.testing.assert_allclose(result.scores, direct_scores(model, chunk, result.indices))
    assert result.token_match > 0.9 and result.full_match > 0.75
    assert sorted(result.indices.tolist()) == list(range(12))  # shuffled with seed 42, all taken
