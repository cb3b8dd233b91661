"""Soft Q-learning as a ``loss_fn`` for :class:`luminary.train.Trainer`.

Each optimizer step (Guo et al. 2022, ``specs/sql.md``):

1. before the update, :class:`SQLCallback` moves the target network θ̄ towards
   the policy θ (Polyak τ, or a copy every k steps) and tells the objective
   the step number;
2. the batch's sources are turned into action sequences, on-policy (sampled
   from the policy with top-k / top-p, torch's global RNG) and/or off-policy
   (the dataset's targets, a draw from the replay buffer, or a behaviour
   model's outputs);
3. the reward callable scores the decoded texts; rewards on [0, 100] are
   shaped onto [min, max];
4. the path-consistency loss (single-step, multi-step or their mean) is taken
   from the policy's teacher-forced Q-values and the target's V̄.

Modes: ``on``, ``off``, ``mixed`` (the mean of the on- and off-policy losses
each step, the paper's main mode) and ``alternate`` (on-policy on even steps,
off-policy on odd ones); the first ``warmup_steps`` steps are off-policy only.
The dict returned to the Trainer carries the mean reward, its spread and the
policy's entropy, which the Trainer logs in ``metrics.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from luminary.core.errors import LuminaryError
from luminary.core.seed import derive_seed
from luminary.rl.config import SamplingConfig, ShapingConfig, SQLConfig
from luminary.rl.losses import policy_entropy, sql_loss
from luminary.rl.policy import Policy, Sampling
from luminary.rl.replay import ReplayBuffer
from luminary.rl.rewards import RewardFn, WeightedSum
from luminary.rl.shaping import shape_rewards
from luminary.rl.target import TargetNetwork
from luminary.train.trainer import Callback


def sampling_of(config: SamplingConfig) -> Sampling:
    """The sampler a ``sampling:`` (or ``sql.behaviour``) section describes."""
    return Sampling(max_new_tokens=config.max_new_tokens, top_k=config.top_k, top_p=config.top_p,
                    temperature=config.temperature)


@dataclass
class Trajectories:
    """Prompts, action sequences and their raw rewards for one loss term."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    actions: torch.Tensor
    lengths: torch.Tensor
    rewards: torch.Tensor


def _reward_stats(rewards: torch.Tensor, prefix: str = "") -> dict[str, float]:
    std = float(rewards.std(unbiased=False)) if rewards.numel() > 1 else 0.0
    return {f"{prefix}reward_mean": float(rewards.mean()), f"{prefix}reward_std": std}


class SQLObjective:
    """The soft Q-learning ``loss_fn`` (and its ``collate_fn``) for one policy.

    Settings come from the run config's sections as they are (``sql``,
    ``shaping``, ``sampling``): one place for their defaults and checks.
    ``seed`` with ``step`` and each example's index seeds the example's own
    sampler, so what is sampled does not depend on the world size.
    """

    def __init__(self, policy: Policy, target: TargetNetwork, reward: RewardFn, sql: SQLConfig | None = None,
                 shaping: ShapingConfig | None = None, sampling: SamplingConfig | None = None,
                 replay: ReplayBuffer | None = None, behaviour: Policy | None = None, seed: int = 0,
                 synced: bool = False):
        sql, shaping, sampling = sql or SQLConfig(), shaping or ShapingConfig(), sampling or SamplingConfig()
        if sql.off_policy == "replay" and replay is None and sql.mode != "on":
            raise LuminaryError("sql.off_policy 'replay' needs a replay buffer")
        if sql.off_policy == "behaviour" and behaviour is None and sql.mode != "on":
            raise LuminaryError("sql.off_policy 'behaviour' needs a behaviour model (sql.behaviour)")
        self.policy, self.target, self.config, self.shaping = policy, target, sql, shaping
        self.sampling = sampling_of(sampling)
        self.eval_decoding = Sampling(max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                      num_beams=sql.eval_num_beams)
        self.behaviour_sampling = sampling_of(sql.behaviour) if sql.behaviour else Sampling()
        self.reward = reward if isinstance(reward, WeightedSum) else WeightedSum([("reward", 1.0, reward)])
        self.replay, self.behaviour = replay, behaviour
        self.seed, self.synced = seed, synced
        self.step = 0

    # --- schedule ---------------------------------------------------------------------
    def phases(self, step: int) -> tuple[bool, bool]:
        """(on-policy, off-policy) terms at ``step``."""
        s = self.config
        if step < s.warmup_steps or s.mode == "off":
            return False, True
        if s.mode == "on":
            return True, False
        if s.mode == "mixed":
            return True, True
        return step % 2 == 0, step % 2 == 1

    def start_step(self, model: torch.nn.Module, step: int) -> None:
        """Before the update of ``step``: move θ̄ towards θ."""
        self.step = step
        self.target.update(model, step)

    # --- the Trainer's functions ------------------------------------------------------------
    def collate(self, examples: list[Any]) -> dict[str, Any]:
        """Examples (``{"source", "target", "index"}`` dicts or source strings) -> a batch.

        ``index`` (the example's place in the dataset) keys its sampler's seed;
        without one, the source text and its place in the micro-batch do.
        """
        sources = [e if isinstance(e, str) else str(e.get("source", "")) for e in examples]
        targets = [None if isinstance(e, str) or e.get("target") is None else str(e["target"]) for e in examples]
        keys = [e["index"] if isinstance(e, dict) and "index" in e else (s, i) for i, (e, s) in
                enumerate(zip(examples, sources))]
        prompt_ids, prompt_mask = self.policy.prompts(sources)
        return {"sources": sources, "targets": targets, "keys": keys, "input_ids": prompt_ids,
                "attention_mask": prompt_mask}

    def seeds(self, batch: dict[str, Any], what: str) -> list[int]:
        """One seed per example of ``batch`` for this step's ``what`` (policy or behaviour samples)."""
        return [derive_seed("sql", what, self.seed, self.step, key) for key in batch["keys"]]

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any], is_training: bool = True) -> dict[str, Any]:
        if not is_training:
            return self.evaluate(model, batch)
        on, off = self.phases(self.step)
        sampled = None
        if on or (off and self.config.off_policy == "replay"):
            sampled = self.sample(model, batch, self.sampling, self.seeds(batch, "policy"))
        terms, metrics = [], {}
        if on:
            loss, stats = self.path_loss(model, sampled)
            terms.append(loss)
            metrics.update(loss_on=float(loss.detach()), **stats)
        if off:
            trajectories = self.off_policy(batch, sampled)
            loss, stats = self.path_loss(model, trajectories)
            terms.append(loss)
            metrics["loss_off"] = float(loss.detach())
            metrics.update(stats if not on else {"off_" + k: v for k, v in stats.items()})
        return {"loss": torch.stack(terms).mean(), "count": len(batch["sources"]), **metrics}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        """Decoded (greedy or beam) outputs: their reward and path-consistency loss."""
        decoded = self.sample(model, batch, self.eval_decoding)
        loss, stats = self.path_loss(model, decoded)
        return {"loss": loss, "count": len(batch["sources"]), **stats}

    # --- trajectories -------------------------------------------------------------------------
    def rewards(self, sources: list[str], actions: torch.Tensor, lengths: torch.Tensor,
                targets: list[str | None]) -> torch.Tensor:
        return self.reward(sources, self.policy.decode(actions, lengths), targets)

    def sample(self, model: torch.nn.Module, batch: dict[str, Any], how: Sampling,
               seeds: list[int] | None = None) -> Trajectories:
        actions, lengths = self.policy.generate(model, batch["input_ids"], batch["attention_mask"], how, seeds,
                                                synced=self.synced)
        rewards = self.rewards(batch["sources"], actions, lengths, batch["targets"])
        return Trajectories(batch["input_ids"], batch["attention_mask"], actions, lengths, rewards)

    def off_policy(self, batch: dict[str, Any], sampled: Trajectories | None) -> Trajectories:
        """Actions from the dataset's targets, the replay buffer or the behaviour model."""
        kind, sources, targets = self.config.off_policy, batch["sources"], batch["targets"]
        device = batch["input_ids"].device
        if kind == "replay":
            assert self.replay is not None and sampled is not None
            self.replay.add(sources, sampled.actions, sampled.lengths, sampled.rewards)
            if all(t is not None for t in targets):
                demo = self.from_texts(sources, targets, targets, device)  # type: ignore[arg-type]
                self.replay.add(sources, demo.actions, demo.lengths, demo.rewards)
            draw = self.replay.sample(len(sources))
            prompt_ids, prompt_mask = self.policy.prompts(draw.sources)
            return Trajectories(prompt_ids.to(device), prompt_mask.to(device), draw.actions.to(device),
                                draw.lengths.to(device), draw.rewards)
        if kind == "behaviour":
            assert self.behaviour is not None
            b = self.behaviour
            b_ids, b_mask = b.prompts(sources)
            actions, lengths = b.generate(b.model, b_ids.to(device), b_mask.to(device), self.behaviour_sampling,
                                          self.seeds(batch, "behaviour"))
            return self.from_texts(sources, b.decode(actions, lengths), targets, device)
        missing = [i for i, t in enumerate(targets) if t is None]
        if missing:
            raise LuminaryError(f"sql.off_policy 'targets': batch item {missing[0]} has no target text")
        return self.from_texts(sources, targets, targets, device)  # type: ignore[arg-type]

    def from_texts(self, sources: list[str], texts: list[str], targets: list[str | None],
                   device: torch.device) -> Trajectories:
        """Texts taken as action sequences of the policy (teacher forcing)."""
        prompt_ids, prompt_mask = self.policy.prompts(sources)
        actions, lengths = self.policy.actions(texts)
        rewards = self.rewards(sources, actions, lengths, targets)
        return Trajectories(prompt_ids.to(device), prompt_mask.to(device), actions.to(device), lengths.to(device),
                            rewards)

    # --- the loss ---------------------------------------------------------------------------------
    def path_loss(self, model: torch.nn.Module, t: Trajectories) -> tuple[torch.Tensor, dict[str, float]]:
        """The configured path-consistency loss of ``t`` and its reward/entropy statistics."""
        q = self.policy.q_values(model, t.prompt_ids, t.prompt_mask, t.actions, t.lengths)
        with torch.no_grad():
            q_bar = self.policy.q_values(self.target.model, t.prompt_ids, t.prompt_mask, t.actions, t.lengths)
        shaped = shape_rewards(t.rewards.to(q.device), self.shaping.min, self.shaping.max)
        loss = sql_loss(self.config.loss, q, q_bar, t.actions, shaped, t.lengths)
        stats = _reward_stats(t.rewards)
        stats["entropy"] = float(policy_entropy(q, t.lengths))
        stats["length"] = float(t.lengths.float().mean())
        return loss, stats


class SQLCallback(Callback):
    """Runs :meth:`SQLObjective.start_step` before every update (target network, step number)."""

    def __init__(self, objective: SQLObjective):
        self.objective = objective

    def on_step_start(self, trainer: Any, step: int) -> None:
        self.objective.start_step(trainer.model, step)
