"""Path-consistency losses of soft Q-learning for text generation.

Guo, Tan, Liu, Xing, Hu, "Efficient (Soft) Q-Learning for Text Generation with
Limited Good Data" (EMNLP Findings 2022); the formulas follow the authors'
``sql/losses.py`` (``soft_q_loss_with_sparse_rewards_2`` and ``_3``).

The language model's logits are the soft Q-values, Q(s_t, ·) = logits at step t,
with the state value V(s_t) = logsumexp_a Q(s_t, a) and the advantage

    A_t = Q(s_t, a_t) − V(s_t) = log π(a_t | s_t).

A target network (θ̄) gives V̄. The reward r arrives only after the last action
a_{T−1} of a sequence of length T (γ = 1, sparse). Each loss is summed over the
T valid steps of a sequence and averaged over the batch.
"""

from __future__ import annotations

from typing import Callable

import torch


def advantages(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """A_t = Q(s_t, a_t) − logsumexp_a Q(s_t, a).  logits (B, T, V), actions (B, T) -> (B, T)."""
    logits = logits.float()
    q = logits.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return q - logits.logsumexp(-1)


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) float mask: 1 for t < length."""
    return (torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]).float()


def masked_reverse_cumsum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """out_t = Σ_{t' ≥ t} mask_{t'} · x_{t'} along the last dimension."""
    return (x * mask).flip(-1).cumsum(-1).flip(-1)


def pcl_single_step(
    logits: torch.Tensor, target_logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Single-step path consistency (the paper's v2), one loss per sequence (B,).

        loss = Σ_{t<T} (A_t − Â_t)²,  Â_t = V̄(s_{t+1}) − V̄(s_t)  for t < T−1,
                                      Â_{T−1} = r − V̄(s_{T−1}).
    """
    steps = actions.shape[1]
    mask = step_mask(lengths, steps)
    v_bar = target_logits.detach().float().logsumexp(-1)  # (B, T)
    v_next = torch.cat([v_bar[:, 1:], torch.zeros_like(v_bar[:, :1])], dim=1)
    last = torch.nn.functional.one_hot(lengths - 1, steps).bool()
    v_next = torch.where(last, rewards.float()[:, None].expand_as(v_next), v_next)
    residual = advantages(logits, actions) - (v_next - v_bar)
    return (residual.pow(2) * mask).sum(-1)


def pcl_multi_step(
    logits: torch.Tensor, target_logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Multi-step path consistency (the paper's v3), one loss per sequence (B,).

        loss = Σ_{t<T} (Σ_{t ≤ t' < T} A_{t'} − (r − V̄(s_t)))²
    """
    mask = step_mask(lengths, actions.shape[1])
    v_bar = target_logits.detach().float().logsumexp(-1)
    future = masked_reverse_cumsum(advantages(logits, actions), mask)
    residual = future - (rewards.float()[:, None] - v_bar)
    return (residual.pow(2) * mask).sum(-1)


def pcl_mixed(
    logits: torch.Tensor, target_logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """(single-step + multi-step) / 2, the paper's default, one loss per sequence (B,)."""
    args = (logits, target_logits, actions, rewards, lengths)
    return 0.5 * (pcl_single_step(*args) + pcl_multi_step(*args))


PathLoss = Callable[..., torch.Tensor]

# name -> per-sequence loss; the config's ``sql.loss`` picks one.
LOSSES: dict[str, PathLoss] = {
    "single_step": pcl_single_step,
    "multi_step": pcl_multi_step,
    "mixed": pcl_mixed,
}


def sql_loss(
    kind: str, logits: torch.Tensor, target_logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Mean over the batch of the per-sequence loss ``LOSSES[kind]`` (sum over steps)."""
    return LOSSES[kind](logits, target_logits, actions, rewards, lengths).mean()


def policy_entropy(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid steps of H(π(·|s_t)) = −Σ_a π log π, with π = softmax(Q)."""
    logp = logits.detach().float().log_softmax(-1)
    h = -(logp.exp() * logp).sum(-1)
    mask = step_mask(lengths, logits.shape[1])
    return (h * mask).sum() / mask.sum().clamp(min=1)
