"""The path-consistency losses against a direct, loop-by-loop computation of the spec's formulas."""

import math

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.rl.losses import masked_reverse_cumsum, pcl_multi_step, pcl_single_step, policy_entropy, sql_loss
from luminary.rl.shaping import shape_rewards


def hand_made():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, generator=g) * 2
    target_logits = torch.randn(3, 4, 5, generator=g) * 2
    actions = torch.tensor([[1, 4, 0, 2], [3, 3, 1, 0], [0, 2, 2, 2]])
    rewards = torch.tensor([7.0, -3.0, 0.5])
    lengths = torch.tensor([4, 2, 1])
    return logits, target_logits, actions, rewards, lengths


def lse(row):
    return math.log(sum(math.exp(v) for v in row))


def direct(logits, target_logits, actions, rewards, lengths):
    """(v2, v3) per sequence, straight from the formulas with Python floats."""
    v2, v3 = [], []
    for b in range(logits.shape[0]):
        T = int(lengths[b])
        A = [float(logits[b, t, actions[b, t]]) - lse(logits[b, t].tolist()) for t in range(T)]
        Vbar = [lse(target_logits[b, t].tolist()) for t in range(T)]
        r = float(rewards[b])
        s2 = 0.0
        for t in range(T):
            a_hat = (Vbar[t + 1] - Vbar[t]) if t < T - 1 else (r - Vbar[t])
            s2 += (A[t] - a_hat) ** 2
        s3 = sum((sum(A[t:]) - (r - Vbar[t])) ** 2 for t in range(T))
        v2.append(s2)
        v3.append(s3)
    return v2, v3


def test_single_and_multi_step_match_the_formulas():
    args = hand_made()
    v2, v3 = direct(*args)
    assert pcl_single_step(*args).tolist() == pytest.approx(v2, rel=1e-5)
    assert pcl_multi_step(*args).tolist() == pytest.approx(v3, rel=1e-5)


def test_reduction_is_sum_over_steps_mean_over_batch_and_default_is_the_average():
    args = hand_made()
    v2, v3 = direct(*args)
    assert float(sql_loss("single_step", *args)) == pytest.approx(sum(v2) / 3, rel=1e-5)
    assert float(sql_loss("multi_step", *args)) == pytest.approx(sum(v3) / 3, rel=1e-5)
    mixed = sum((a + b) / 2 for a, b in zip(v2, v3)) / 3
    assert float(sql_loss("mixed", *args)) == pytest.approx(mixed, rel=1e-5)


def test_steps_after_the_end_do_not_count():
    logits, target_logits, actions, rewards, lengths = hand_made()
    base = sql_loss("mixed", logits, target_logits, actions, rewards, lengths)
    noisy_logits, noisy_target = logits.clone(), target_logits.clone()
    noisy_logits[1, 2:] += 100.0  # sequence 1 has length 2
    noisy_target[2, 1:] -= 50.0  # sequence 2 has length 1
    changed = sql_loss("mixed", noisy_logits, noisy_target, actions, rewards, lengths)
    assert float(changed) == pytest.approx(float(base), rel=1e-6)


def test_no_gradient_reaches_the_target_logits():
    logits, target_logits, actions, rewards, lengths = hand_made()
    logits.requires_grad_(True)
    target_logits.requires_grad_(True)
    sql_loss("mixed", logits, target_logits, actions, rewards, lengths).backward()
    assert target_logits.grad is None
    assert logits.grad.abs().sum() > 0


def test_masked_reverse_cumsum():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert masked_reverse_cumsum(x, mask).tolist() == [[6.0, 5.0, 3.0, 0.0]]


def test_consistent_values_give_zero_loss():
    """Q(s_t, a_t) = V(s_{t+1}), Q(s_{T-1}, a) = r, target = policy: both losses vanish."""
    torch.manual_seed(1)
    T, V = 3, 4
    logits = torch.randn(1, T, V)
    actions = torch.tensor([[2, 0, 3]])
    r = 5.0
    logits[0, T - 1, actions[0, T - 1]] = r
    for t in reversed(range(T - 1)):
        logits[0, t, actions[0, t]] = logits[0, t + 1].logsumexp(-1)
    args = (logits, logits.clone(), actions, torch.tensor([r]), torch.tensor([T]))
    assert float(sql_loss("single_step", *args)) == pytest.approx(0.0, abs=1e-8)
    assert float(sql_loss("multi_step", *args)) == pytest.approx(0.0, abs=1e-8)


def test_entropy_of_a_uniform_policy_is_log_v():
    logits = torch.zeros(2, 3, 7)
    assert float(policy_entropy(logits, torch.tensor([3, 1]))) == pytest.approx(math.log(7), rel=1e-6)


def test_shaping_maps_0_100_onto_the_range():
    r = torch.tensor([0.0, 50.0, 100.0, 120.0])
    assert shape_rewards(r, -50, 50).tolist() == [-50.0, 0.0, 50.0, 70.0]
    assert shape_rewards(r, -10, 10).tolist() == pytest.approx([-10.0, 0.0, 10.0, 14.0])
    with pytest.raises(LuminaryError, match="min"):
        shape_rewards(r, 5, 5)
