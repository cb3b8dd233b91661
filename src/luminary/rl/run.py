"""``luminary rl train CONFIG`` and ``luminary rl generate MODEL``.

Soft Q-learning runs through the one Trainer: the objective is the
``collate_fn`` + ``loss_fn``, the target network and the replay buffer are
trainer state (checkpointed, restored on ``--resume``), and the target's
update is a callback before each step. The run folder is the Trainer's:
``run.json``, ``metrics.jsonl`` (with ``reward_mean``, ``reward_std``,
``entropy`` per step) and ``checkpoints/step_N`` (a ``save_pretrained``
policy with its tokenizer, which ``luminary rl generate`` reads).

One CPU process:  luminary rl train examples/rl-keyword.yaml --out runs/rl-keyword
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from luminary.core.config import dump_config
from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl
from luminary.core.runs import write_run_json
from luminary.rl.config import DataConfig, PolicyConfig, RewardConfig, RLConfig, SamplingConfig
from luminary.rl.policy import Policy, Sampling
from luminary.rl.rewards import REWARDS, WeightedSum


def read_examples(config: DataConfig) -> list[dict[str, Any]]:
    """``{"source", "target"}`` examples, inline or from a JSONL file."""
    if config.examples is not None:
        return [{"source": e, "target": None} if isinstance(e, str) else e.model_dump() for e in config.examples]
    rows = read_jsonl(config.path, required=(config.source_field,))  # type: ignore[arg-type]
    if not rows:
        raise LuminaryError(f"data.path: {config.path} holds no examples")
    out = []
    for row in rows:
        target = row.get(config.target_field)
        out.append({"source": str(row[config.source_field]), "target": None if target is None else str(target)})
    return out


def build_policy(config: PolicyConfig, max_new_tokens: int, seed: int) -> Policy:
    """A policy from a folder, or a fresh luminary preset with a tokenizer folder."""
    from luminary.models import build_model, load_tokenizer
    from luminary.models.presets import FAMILIES, PRESETS

    options = dict(max_new_tokens=max_new_tokens, prompt_format=config.prompt_format, append_eos=config.append_eos)
    if config.model in PRESETS or config.model in FAMILIES:
        if config.tokenizer is None:
            raise LuminaryError("policy.tokenizer: a preset model needs a tokenizer folder")
        tok = load_tokenizer(config.tokenizer)
        model = build_model(config.model, len(tok), seed=seed, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        return Policy(model, tok, where="policy.model", **options)
    return Policy.load(config.model, config.tokenizer, allow_pickle=config.allow_pickle, **options)


def build_reward(configs: list[RewardConfig]) -> WeightedSum:
    return WeightedSum([(c.name or c.kind, c.weight, REWARDS[c.kind](**c.arguments())) for c in configs])


def sampling_of(config: SamplingConfig) -> Sampling:
    return Sampling(max_new_tokens=config.max_new_tokens, top_k=config.top_k, top_p=config.top_p,
                    temperature=config.temperature)


def run_rl(config: RLConfig, out: Path, resume: bool = False) -> list[dict]:
    """Train the policy with soft Q-learning as the config says, into run folder ``out``."""
    from luminary.rl.replay import ReplayBuffer
    from luminary.rl.sql import SQLCallback, SQLObjective, SQLSettings
    from luminary.rl.target import TargetNetwork
    from luminary.train import CheckpointPolicy, Deployer, Trainer, build_schedule

    if out.exists() and any(out.iterdir()) and not resume:
        raise LuminaryError(f"{out}: run folder exists; pass --resume to continue it or choose another --out")
    s = config.sql
    examples = read_examples(config.data)
    policy = build_policy(config.policy, config.sampling.max_new_tokens, config.seed)
    reward = build_reward(config.rewards)
    behaviour = None
    if s.behaviour is not None and s.off_policy == "behaviour":
        behaviour = Policy.load(s.behaviour.model, allow_pickle=s.behaviour.allow_pickle, where="sql.behaviour.model")
    order = np.random.default_rng(config.seed).permutation(len(examples))
    n_eval = int(len(examples) * config.data.eval_fraction)
    eval_examples = [examples[i] for i in order[:n_eval]]
    train_examples = [examples[i] for i in order[n_eval:]]

    out.mkdir(parents=True, exist_ok=True)
    deployer = Deployer(workdir=out, seed=config.seed, mixed_precision=config.mixed_precision)
    if deployer.is_main:
        write_run_json(out, dump_config(config), config.seed)
    model = policy.model.to(deployer.device)
    for helper in [behaviour] + [fn for _, _, fn in reward.terms]:  # behaviour and reward models
        if isinstance(getattr(helper, "model", None), torch.nn.Module):
            helper.model.to(deployer.device)
    target = TargetNetwork(model, update=config.target.update, tau=config.target.tau, every=config.target.every)
    replay = ReplayBuffer(s.replay_capacity, config.sampling.max_new_tokens, policy.pad_id) \
        if s.off_policy == "replay" else None
    settings = SQLSettings(
        mode=s.mode, loss=s.loss, off_policy=s.off_policy, warmup_steps=s.warmup_steps,
        reward_min=config.shaping.min, reward_max=config.shaping.max, sampling=sampling_of(config.sampling),
        eval_decoding=Sampling(max_new_tokens=config.sampling.max_new_tokens, do_sample=False,
                               num_beams=s.eval_num_beams),
        behaviour_sampling=sampling_of(s.behaviour) if s.behaviour else Sampling(),
    )
    objective = SQLObjective(policy, target, reward, settings, replay=replay, behaviour=behaviour)
    t = config.train
    global_batch = t.per_device_batch_size * t.accumulate_grad_batches * deployer.dp_size
    total = t.max_steps if t.max_steps is not None else max(1, -(-int(t.n_epochs * len(train_examples)) // global_batch))
    state = {"target": target} if replay is None else {"target": target, "replay": replay}
    trainer = Trainer(
        deployer, objective.collate, objective, model, optimizer=config.optimizer,
        lr_schedule=build_schedule(config.schedule, total) if config.schedule else None,
        accumulate_grad_batches=t.accumulate_grad_batches, max_grad_norm=t.max_grad_norm,
        tokenizer=policy.tokenizer, state=state, callbacks=[SQLCallback(objective)],
    )
    c = config.checkpoints
    return trainer.fit(
        train_examples, t.per_device_batch_size, max_steps=total,
        eval_examples=eval_examples or None, eval_every=t.eval_every if eval_examples else None,
        checkpoint=CheckpointPolicy(every=c.every, steps=c.steps, keep_last=c.keep_last), resume=resume,
    )


def generate(model: str | Path, sources: list[str], num_beams: int = 10, sample: bool = False,
             sampling: SamplingConfig | None = None, seed: int = 0, allow_pickle: bool = False) -> list[str]:
    """Outputs of a trained policy folder: beam search by default, or sampling."""
    sampling = sampling or SamplingConfig()
    policy = Policy.load(model, allow_pickle=allow_pickle, max_new_tokens=sampling.max_new_tokens)
    how = sampling_of(sampling) if sample else Sampling(max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                                        num_beams=num_beams)
    torch.manual_seed(seed)
    ids, mask = policy.prompts(sources)
    actions, lengths = policy.generate(policy.model, ids, mask, how)
    return policy.decode(actions, lengths)
