"""A replay buffer of generated sequences for off-policy soft Q-learning.

Soft Q-learning is off-policy: the path-consistency losses hold for any
action sequence, whoever chose it. The buffer keeps the last ``capacity``
sequences (first in, first out) with their source text and raw (unshaped)
reward; a draw is uniform with replacement and uses torch's global RNG, which
the Trainer checkpoints, so a resumed run draws the same items. The buffer
itself is trainer state (``state_dict``/``load_state_dict``, tensors and
strings only, no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from luminary.core.errors import LuminaryError


@dataclass
class Replay:
    """A draw: sources, actions (B, T), lengths (B,), raw rewards (B,)."""

    sources: list[str]
    actions: torch.Tensor
    lengths: torch.Tensor
    rewards: torch.Tensor


class ReplayBuffer:
    def __init__(self, capacity: int, max_len: int, pad_id: int = 0):
        if capacity < 1:
            raise LuminaryError(f"sql.replay_capacity: must be >= 1, got {capacity}")
        self.capacity, self.max_len, self.pad_id = capacity, max_len, pad_id
        self.actions = torch.full((capacity, max_len), pad_id, dtype=torch.long)
        self.lengths = torch.zeros(capacity, dtype=torch.long)
        self.rewards = torch.zeros(capacity, dtype=torch.float32)
        self.sources: list[str] = [""] * capacity
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, sources: list[str], actions: torch.Tensor, lengths: torch.Tensor, rewards: torch.Tensor) -> None:
        """Append sequences (actions (B, T) with T <= max_len), overwriting the oldest when full."""
        actions, lengths, rewards = actions.detach().cpu(), lengths.detach().cpu(), rewards.detach().cpu()
        width = min(actions.shape[1], self.max_len)
        for i, source in enumerate(sources):
            slot = self.cursor
            self.actions[slot].fill_(self.pad_id)
            self.actions[slot, :width] = actions[i, :width]
            self.lengths[slot] = min(int(lengths[i]), width)
            self.rewards[slot] = float(rewards[i])
            self.sources[slot] = source
            self.cursor = (self.cursor + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int) -> Replay:
        """``n`` items drawn uniformly with replacement (torch's global RNG)."""
        if self.size == 0:
            raise LuminaryError("replay buffer: nothing to draw from yet")
        index = torch.randint(self.size, (n,))
        lengths = self.lengths[index]
        width = int(lengths.max())
        return Replay([self.sources[i] for i in index.tolist()], self.actions[index, :width].clone(),
                      lengths.clone(), self.rewards[index].clone())

    def state_dict(self) -> dict:
        n = self.size
        return {"actions": self.actions[:n].clone(), "lengths": self.lengths[:n].clone(),
                "rewards": self.rewards[:n].clone(), "sources": self.sources[:n], "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["sources"])
        if n > self.capacity or state["actions"].shape[1:] != (self.max_len,):
            raise LuminaryError("replay buffer: the checkpointed buffer does not fit this configuration")
        self.actions.fill_(self.pad_id)
        self.actions[:n] = state["actions"]
        self.lengths.zero_()
        self.lengths[:n] = state["lengths"]
        self.rewards.zero_()
        self.rewards[:n] = state["rewards"]
        self.sources = list(state["sources"]) + [""] * (self.capacity - n)
        self.size, self.cursor = n, int(state["cursor"])
