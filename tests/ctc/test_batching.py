"""Encoder batches: sorted by length, cut by a token budget; the CPU budget bounds the widest activation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.batching import ACTIVATION_BYTES, length_batches, pad, token_budget


def test_batches_respect_the_budget_and_cover_every_index():
    lengths = [5, 40, 7, 6, 41, 39, 120, 5, 8]
    batches = length_batches(lengths, max_tokens=80)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert longest * len(b) <= 80 or len(b) == 1  # a text longer than the budget goes alone
        assert longest <= min(lengths[i] for i in b) * 1.1 + 2  # at most a 10 % (or 2-token) spread


def test_pad_right_pads_ids_and_mask():
    ids, mask = pad([[1, 2, 3], [4]], value=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_cpu_budget_keeps_the_feed_forward_block_within_24_mib():
    minilm = SimpleNamespace(hidden_size=384, intermediate_size=1536)
    budget = token_budget(minilm, torch.device("cpu"))
    assert budget == 24 * 2**20 // (4 * 1536) == 4096
    assert budget * 1536 * 4 <= ACTIVATION_BYTES < (budget + 1) * 1536 * 4
    bert_large = SimpleNamespace(hidden_size=1024, intermediate_size=4096)
    assert token_budget(bert_large, torch.device("cpu")) == 1536
    assert token_budget(SimpleNamespace(hidden_size=2**20), torch.device("cpu")) == 256  # floor


def test_requested_budget_wins_and_accelerators_get_a_large_one():
    config = SimpleNamespace(hidden_size=384, intermediate_size=1536)
    assert token_budget(config, torch.device("cpu"), requested=64) == 64
    assert token_budget(config, torch.device("cuda")) == 16384
    with pytest.raises(LuminaryError, match="max_tokens"):
        token_budget(config, torch.device("cpu"), requested=0)
