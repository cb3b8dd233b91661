"""Target network: Polyak after n steps equals the closed form; hard copies; no gradient; checkpointable."""

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.rl.policy import Policy, Sampling
from luminary.rl.config import SamplingConfig
from luminary.rl.sql import SQLCallback, SQLObjective
from luminary.rl.target import TargetNetwork
from luminary.rl.toy import ToyTask, toy_tokenizer
from luminary.train import Callback, Deployer, OptimizerConfig, Trainer


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class Snapshot(Callback):
    """Records θ_k at the start of every step, before the target's update sees it."""

    def __init__(self):
        self.thetas = []

    def on_step_start(self, trainer, step):
        self.thetas.append(params(trainer.model))


def train_toy(update, steps, tau=0.2, every=3):
    task = ToyTask(n_demos=64)
    model = task.policy_model(seed=0)
    policy = Policy(model, toy_tokenizer(), max_new_tokens=6)
    target = TargetNetwork(model, update=update, tau=tau, every=every)
    theta0 = params(target.model)
    objective = SQLObjective(policy, target, task.reward, sampling=SamplingConfig(max_new_tokens=6))
    snap = Snapshot()
    trainer = Trainer(Deployer(seed=0, precision="fp32", verbose=False), objective.collate, objective, model,
                      OptimizerConfig(lr=0.05), callbacks=[snap, SQLCallback(objective)])
    trainer.fit(task.examples(), per_device_batch_size=8, max_steps=steps)
    return target, theta0, snap.thetas, model


def test_polyak_after_n_steps_equals_the_closed_form():
    tau, n = 0.2, 6
    target, theta0, thetas, model = train_toy("polyak", n, tau=tau)
    assert len(thetas) == n
    got = params(target.model)
    for name, start in theta0.items():
        # θ̄_n = (1 − τ)^n θ̄_0 + Σ_k τ (1 − τ)^{n−1−k} θ_k, θ_k the weights before update k
        closed = (1 - tau) ** n * start + sum(tau * (1 - tau) ** (n - 1 - k) * thetas[k][name] for k in range(n))
        torch.testing.assert_close(got[name], closed, rtol=1e-5, atol=1e-6)
    # the policy moved, so the check is not vacuous
    assert any(not torch.equal(thetas[0][k], thetas[-1][k]) for k in theta0)


def test_hard_copy_every_k_steps():
    target, _, thetas, _ = train_toy("copy", 5, every=3)
    # copies happen before the updates of steps 0 and 3: θ̄ = θ_3
    for name, value in params(target.model).items():
        assert torch.equal(value, thetas[3][name])


def test_no_gradient_reaches_the_target():
    target, _, _, model = train_toy("polyak", 2)
    assert all(not p.requires_grad and p.grad is None for p in target.model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_state_dict_round_trip_and_checks():
    task = ToyTask(n_demos=8)
    a = TargetNetwork(task.policy_model(seed=0))
    b = TargetNetwork(task.policy_model(seed=1))
    b.load_state_dict(a.state_dict())
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(LuminaryError, match="does not fit"):
        b.load_state_dict({"nope": torch.zeros(1)})
    with pytest.raises(LuminaryError, match="tau"):
        TargetNetwork(task.policy_model(), tau=0.0)
