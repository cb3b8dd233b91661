"""The SQL loss_fn: modes, warm-up, off-policy sources, evaluation, logged metrics."""

import json

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.rl.policy import Policy, Sampling
from luminary.rl.replay import ReplayBuffer
from luminary.rl.rewards import SentenceBLEU
from luminary.rl.config import BehaviourConfig, SamplingConfig, SQLConfig
from luminary.rl.sql import SQLCallback, SQLObjective
from luminary.rl.target import TargetNetwork
from luminary.train import Deployer, Trainer

EXAMPLES = [{"source": "def add(a, b):", "target": "return a + b"},
            {"source": "import os", "target": "import sys"},
            {"source": "class A:", "target": "pass"},
            {"source": "x = 1", "target": "y = 2"}]


def objective(tokenizer, **settings):
    model = build_model("llama-debug", len(tokenizer), seed=0)
    policy = Policy(model, tokenizer, max_new_tokens=8)
    replay = ReplayBuffer(32, 8, policy.pad_id) if settings.get("off_policy") == "replay" else None
    behaviour = settings.pop("behaviour_policy", None)
    return SQLObjective(policy, TargetNetwork(model, tau=0.5), SentenceBLEU("target"),
                        SQLConfig(eval_num_beams=1, **settings), sampling=SamplingConfig(max_new_tokens=8),
                        replay=replay, behaviour=behaviour)


def test_phases_of_each_mode_and_the_warm_up(tokenizer):
    assert [objective(tokenizer, mode="alternate").phases(s) for s in range(3)] == \
        [(True, False), (False, True), (True, False)]
    warm = objective(tokenizer, mode="mixed", warmup_steps=2)
    assert [warm.phases(s) for s in range(4)] == [(False, True), (False, True), (True, True), (True, True)]
    assert objective(tokenizer, mode="on").phases(0) == (True, False)
    assert objective(tokenizer, mode="off").phases(0) == (False, True)


def test_mixed_loss_is_the_mean_of_the_on_and_off_policy_losses(tokenizer):
    losses = {}
    for mode in ("mixed", "on", "off"):
        obj = objective(tokenizer, mode=mode)
        torch.manual_seed(5)
        out = obj(obj.policy.model, obj.collate(EXAMPLES), True)
        losses[mode] = out["loss"]
        assert out["count"] == 4
    torch.testing.assert_close(losses["mixed"], (losses["on"] + losses["off"]) / 2)
    assert not torch.allclose(losses["on"], losses["off"])


def test_off_policy_targets_need_targets(tokenizer):
    obj = objective(tokenizer, mode="off")
    with pytest.raises(LuminaryError, match="batch item 1 has no target"):
        obj(obj.policy.model, obj.collate([EXAMPLES[0], "no target here"]), True)


def test_replay_holds_samples_and_demonstrations(tokenizer):
    obj = objective(tokenizer, mode="off", off_policy="replay")
    torch.manual_seed(0)
    out = obj(obj.policy.model, obj.collate(EXAMPLES), True)
    assert len(obj.replay) == 8  # 4 samples + 4 demonstrations
    assert "reward_mean" in out and "loss_off" in out and "loss_on" not in out
    assert set(obj.replay.sources[:8]) == {e["source"] for e in EXAMPLES}


def test_behaviour_outputs_become_the_off_policy_actions(tokenizer):
    behaviour = Policy(build_model("llama-debug", len(tokenizer), seed=1), tokenizer, max_new_tokens=8)
    obj = objective(tokenizer, mode="off", off_policy="behaviour", behaviour_policy=behaviour,
                    behaviour=BehaviourConfig(model="unused", max_new_tokens=8))
    obj.behaviour_sampling = Sampling(max_new_tokens=8, do_sample=False)
    batch = obj.collate(EXAMPLES)
    traj = obj.off_policy(batch, None)
    ids, mask = behaviour.prompts([e["source"] for e in EXAMPLES])
    texts = behaviour.decode(*behaviour.generate(behaviour.model, ids, mask, Sampling(max_new_tokens=8, do_sample=False)))
    actions, lengths = obj.policy.actions(texts)
    assert torch.equal(traj.actions, actions) and torch.equal(traj.lengths, lengths)
    assert traj.rewards.tolist() == pytest.approx(SentenceBLEU("target")(None, texts, [e["target"] for e in EXAMPLES]))


def test_evaluation_decodes_without_touching_the_rng(tokenizer):
    obj = objective(tokenizer)
    state = torch.get_rng_state()
    out = obj(obj.policy.model, obj.collate(EXAMPLES), False)
    assert torch.equal(state, torch.get_rng_state())
    assert {"loss", "reward_mean", "reward_std", "entropy"} <= set(out)


def test_the_trainer_logs_reward_spread_and_entropy(tmp_path, tokenizer):
    obj = objective(tokenizer, mode="mixed")
    trainer = Trainer(Deployer(tmp_path, seed=0, precision="fp32", verbose=False), obj.collate, obj,
                      obj.policy.model, state={"target": obj.target}, callbacks=[SQLCallback(obj)])
    trainer.fit(EXAMPLES, per_device_batch_size=2, max_steps=2)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert {"reward_mean", "reward_std", "entropy", "loss_on", "loss_off", "off_reward_mean"} <= set(row)
        assert row["reward_std"] >= 0 and row["entropy"] > 0
    assert (tmp_path / "checkpoints" / "step_000002" / "trainer_state" / "extra_target.safetensors").is_file()


def test_a_seq2seq_policy_trains_in_mixed_mode(tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                      decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    policy = Policy(model, tokenizer, max_new_tokens=8)
    obj = SQLObjective(policy, TargetNetwork(model, tau=0.5), SentenceBLEU("target"),
                       sampling=SamplingConfig(max_new_tokens=8))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(Deployer(seed=0, precision="fp32", verbose=False), obj.collate, obj, model,
                      callbacks=[SQLCallback(obj)])
    records = trainer.fit(EXAMPLES, per_device_batch_size=4, max_steps=2)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert "loss_on" in records[0] and "loss_off" in records[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
