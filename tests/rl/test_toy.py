"""The spec's toy task: mixed soft Q-learning finds the hidden sequence; MLE and off-policy SQL do not.

Vocabulary 20, length 6, reward 100 × the fraction of positions matching a
hidden target; 2000 demonstrations: 2% the target, 50% one bad sequence
(matching nowhere), the rest random. GRU policy (embedding 32, hidden 64),
shaping [−50, 50], 600 steps of 32. Fixed seeds; one CPU thread.
"""

import pytest
import torch

from luminary.rl.toy import ToyTask, run_toy


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_mixed_sql_reaches_the_target_while_mle_and_off_policy_sql_copy_the_bad_mode():
    task = ToyTask(seed=0)
    assert task.demos.count(" ".join(task.target)) == 40 and task.demos.count(" ".join(task.bad)) == 1000

    mixed = run_toy(task, "mixed")
    assert mixed["greedy_reward"] == 100.0
    first, last = mixed["records"][0], mixed["records"][-1]  # the logged metrics are the step's
    assert last["reward_mean"] > first["reward_mean"] + 30 and last["entropy"] < first["entropy"]

    # learning from the demonstrations alone copies their bad mode, by maximum likelihood or by SQL
    assert run_toy(task, "mle", steps=200)["greedy_reward"] == task.score(" ".join(task.bad)) == 0.0
    assert run_toy(task, "off", steps=200)["greedy_reward"] == 0.0
