"""The spec's toy task: mixed soft Q-learning finds the hidden sequence; MLE and on-policy SQL do not.

Vocabulary 20, length 6, reward 100 × the fraction of positions matching a
hidden target; 2000 demonstrations: 2% the target, 50% one bad sequence
(matching nowhere), the rest random. GRU policy (embedding 32, hidden 64),
shaping [−50, 50]. Fixed seeds; one CPU thread.

The toy runs with a faster target network (τ = 0.01) and learning rate
(0.01) than the paper's large-model defaults (0.001, 1e-3) so that it fits a
test's time; docs/rl.md gives the curves.
"""

import pytest
import torch

from luminary.rl.policy import Policy, Sampling
from luminary.rl.sql import SQLCallback, SQLObjective, SQLSettings
from luminary.rl.target import TargetNetwork
from luminary.rl.toy import ToyTask, toy_tokenizer
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.losses import causal_lm_collate, causal_lm_loss

STEPS, BATCH, LR, TAU = 600, 32, 0.01, 0.01


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def greedy_reward(task, policy):
    ids, mask = policy.prompts([""])
    actions, lengths = policy.generate(policy.model, ids, mask, Sampling(max_new_tokens=task.length, do_sample=False))
    return task.score(policy.decode(actions, lengths)[0])


def train_sql(task, mode, seed=0):
    model = task.policy_model(seed=seed)
    policy = Policy(model, toy_tokenizer(task.vocab), max_new_tokens=task.length)
    objective = SQLObjective(policy, TargetNetwork(model, tau=TAU), task.reward,
                             SQLSettings(mode=mode, reward_min=-50, reward_max=50,
                                         sampling=Sampling(max_new_tokens=task.length)))
    trainer = Trainer(Deployer(seed=seed, mixed_precision="no", verbose=False, device="cpu"), objective.collate,
                      objective, model, OptimizerConfig(lr=LR, betas=(0.9, 0.999)), max_grad_norm=5.0,
                      callbacks=[SQLCallback(objective)])
    records = trainer.fit(task.examples(), per_device_batch_size=BATCH, max_steps=STEPS)
    return greedy_reward(task, policy), records


def train_mle(task, seed=0):
    model = task.policy_model(seed=seed)
    tok = toy_tokenizer(task.vocab)
    data = [[tok.bos_token_id] + tok(d, add_special_tokens=False)["input_ids"] for d in task.demos]
    trainer = Trainer(Deployer(seed=seed, mixed_precision="no", verbose=False, device="cpu"), causal_lm_collate,
                      causal_lm_loss, model, OptimizerConfig(lr=LR, betas=(0.9, 0.999)), max_grad_norm=5.0)
    trainer.fit(data, per_device_batch_size=BATCH, max_steps=200)
    return greedy_reward(task, Policy(model, tok, max_new_tokens=task.length)), model


def test_mixed_sql_reaches_the_target_while_mle_and_on_policy_sql_stay_below():
    task = ToyTask(seed=0)
    assert task.demos.count(" ".join(task.target)) == 40 and task.demos.count(" ".join(task.bad)) == 1000

    mixed, records = train_sql(task, "mixed")
    assert mixed == 100.0
    # the logged metrics are the step's: sampled reward rose, entropy fell
    first, last = records[0], records[-1]
    assert last["reward_mean"] > first["reward_mean"] + 30 and last["entropy"] < first["entropy"]

    on_policy, _ = train_sql(task, "on")
    assert on_policy < 100.0

    mle, _ = train_mle(task)
    assert mle == task.score(" ".join(task.bad)) == 0.0  # maximum likelihood copies the bad mode
