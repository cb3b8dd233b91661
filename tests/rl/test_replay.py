"""Replay buffer: first in first out, seeded draws, state round trip."""

import torch

from luminary.rl.replay import ReplayBuffer


def fill(buffer, start, n):
    actions = torch.arange(start, start + n)[:, None].repeat(1, 3)
    buffer.add([f"s{i}" for i in range(start, start + n)], actions, torch.full((n,), 2), torch.arange(n).float())


def test_oldest_items_are_overwritten():
    buffer = ReplayBuffer(capacity=4, max_len=5)
    fill(buffer, 0, 3)
    fill(buffer, 3, 3)
    assert len(buffer) == 4
    assert sorted(buffer.sources) == ["s2", "s3", "s4", "s5"]
    assert buffer.actions[:, 3:].eq(0).all()  # padded past the stored width


def test_draws_follow_the_global_rng_and_survive_a_state_round_trip():
    buffer = ReplayBuffer(capacity=8, max_len=4)
    fill(buffer, 0, 6)
    torch.manual_seed(3)
    first = buffer.sample(5)
    copy = ReplayBuffer(capacity=8, max_len=4)
    copy.load_state_dict(buffer.state_dict())
    torch.manual_seed(3)
    again = copy.sample(5)
    assert first.sources == again.sources
    assert torch.equal(first.actions, again.actions) and torch.equal(first.rewards, again.rewards)
    assert first.actions.shape == (5, 2)  # cut to the longest drawn length
    fill(copy, 6, 4)  # the cursor came back too: the oldest (s0, s1) go first
    assert sorted(copy.sources) == sorted(f"s{i}" for i in range(2, 10))
