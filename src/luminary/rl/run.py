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

from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl
from luminary.rl.config import DataConfig, PolicyConfig, RewardConfig, RLConfig, SamplingConfig
from luminary.rl.policy import Policy, Sampling, generator_kind
from luminary.rl.rewards import REWARDS, WeightedSum
from luminary.rl.sql import sampling_of


def read_examples(config: DataConfig) -> list[dict[str, Any]]:
    """``{"source", "target", "index"}`` examples, inline or from a JSONL file (index: the place in it)."""
    if config.examples is not None:
        rows = [{"source": e, "target": None} if isinstance(e, str) else e.model_dump() for e in config.examples]
        return [{**row, "index": i} for i, row in enumerate(rows)]
    rows = read_jsonl(config.path, required=(config.source_field,))  # type: ignore[arg-type]
    if not rows:
        raise LuminaryError(f"data.path: {config.path} holds no examples")
    out = []
    for i, row in enumerate(rows):
        target = row.get(config.target_field)
        out.append({"source": str(row[config.source_field]), "target": None if target is None else str(target),
                    "index": i})
    return out


def build_policy(config: PolicyConfig, max_new_tokens: int, seed: int):
    """(Policy, ModelSource): a policy folder, or a fresh luminary preset with a tokenizer folder.

    The model itself is made by the Deployer from the source; the policy
    holds the tokenizer and the prompt format (kept in the source's config).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from luminary.models import load_tokenizer
    from luminary.models.loading import load_config
    from luminary.models.presets import FAMILIES, PRESETS
    from luminary.models.source import ModelSource

    options = dict(max_new_tokens=max_new_tokens, prompt_format=config.prompt_format, append_eos=config.append_eos)
    if config.model in PRESETS or config.model in FAMILIES:
        if config.tokenizer is None:
            raise LuminaryError("policy.tokenizer: a preset model needs a tokenizer folder")
        tok = load_tokenizer(config.tokenizer)
        source = ModelSource.from_preset(config.model, len(tok), seed=seed, bos_token_id=tok.bos_token_id,
                                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    else:
        kind = generator_kind(load_config(config.model), "policy.model")
        auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
        source = ModelSource.from_folder(config.model, auto, seed, "policy.model", config.allow_pickle)
        tok = load_tokenizer(config.tokenizer or config.model)
    return Policy(None, tok, where="policy.model", config=source.config, **options), source


def build_reward(configs: list[RewardConfig]) -> WeightedSum:
    return WeightedSum([(c.name or c.kind, c.weight, REWARDS[c.kind](**c.arguments())) for c in configs])


def run_rl(config: RLConfig, out: Path, resume: bool = False) -> list[dict]:
    """Train the policy with soft Q-learning as the config says, into run folder ``out``."""
    from luminary.rl.replay import ReplayBuffer
    from luminary.rl.sql import SQLCallback, SQLObjective
    from luminary.rl.target import TargetNetwork
    from luminary.train.run import check_deploy, fit_run, start_run
    from luminary.train.trainer import Evaluation

    s, deploy = config.sql, config.deploy
    check_deploy(deploy)  # the cheap refusals first
    examples = read_examples(config.data)
    policy, source = build_policy(config.policy, config.sampling.max_new_tokens, deploy.seed)
    reward = build_reward(config.rewards)
    behaviour = None
    if s.behaviour is not None and s.off_policy == "behaviour":
        behaviour = Policy.load(s.behaviour.model, allow_pickle=s.behaviour.allow_pickle, where="sql.behaviour.model")
    order = np.random.default_rng(deploy.seed).permutation(len(examples))
    n_eval = int(len(examples) * config.data.eval_fraction)
    eval_examples = [examples[i] for i in order[:n_eval]]
    train_examples = [examples[i] for i in order[n_eval:]]

    def one_buffer(deployer) -> None:
        if s.off_policy == "replay" and s.mode != "on" and deployer.dp_size > 1:
            raise LuminaryError("sql.off_policy: 'replay' keeps one buffer per process, which more than one "
                                "data-parallel rank would split; use 'targets' or 'behaviour', or deploy.dp 1")

    deployer = start_run(out, deploy, config, resume=resume, model_config=source.config, check=one_buffer)
    for helper in [behaviour] + [fn for _, _, fn in reward.terms]:  # behaviour and reward models, whole on each rank
        if isinstance(getattr(helper, "model", None), torch.nn.Module):
            helper.model.to(deployer.device)
    # θ̄: a second copy of the policy made the same way (same source and seed: θ̄₀ = θ₀), sharded alike
    target = TargetNetwork(deployer.prepare_model(source), update=config.target.update, tau=config.target.tau,
                           every=config.target.every, copy=False)
    replay = ReplayBuffer(s.replay_capacity, config.sampling.max_new_tokens, policy.pad_id) \
        if s.off_policy == "replay" else None
    objective = SQLObjective(policy, target, reward, s, config.shaping, config.sampling, replay=replay,
                             behaviour=behaviour, seed=deploy.seed, synced=deployer.distributed)
    t = config.train
    evaluation = Evaluation(eval_examples, every=t.eval_every) if eval_examples and t.eval_every else None
    state = {"target": target} if replay is None else {"target": target, "replay": replay}
    result = fit_run(
        deployer, source, objective.collate, objective, train_examples,
        per_device_batch_size=t.per_device_batch_size, accumulate_grad_batches=t.accumulate_grad_batches,
        max_steps=t.max_steps, n_epochs=t.n_epochs, optimizer=config.optimizer, schedule=config.schedule,
        max_grad_norm=t.max_grad_norm, evaluation=evaluation, tokenizer=policy.tokenizer, state=state,
        callbacks=[SQLCallback(objective)], resume=resume, compile_loss=False,  # it samples with generate
    )
    return result.records


def generate(model: str | Path, sources: list[str], num_beams: int = 10, sample: bool = False,
             sampling: SamplingConfig | None = None, seed: int = 0, allow_pickle: bool = False) -> list[str]:
    """Outputs of a trained policy folder: beam search by default, or sampling (row i seeded by (seed, i))."""
    from luminary.core.seed import derive_seed

    sampling = sampling or SamplingConfig()
    policy = Policy.load(model, allow_pickle=allow_pickle, max_new_tokens=sampling.max_new_tokens)
    how = sampling_of(sampling) if sample else Sampling(max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                                        num_beams=num_beams)
    ids, mask = policy.prompts(sources)
    seeds = [derive_seed("generate", seed, i) for i in range(len(sources))]
    actions, lengths = policy.generate(policy.model, ids, mask, how, seeds)
    return policy.decode(actions, lengths)
