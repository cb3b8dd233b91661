"""``luminary pretrain RECIPE``: prepare data, train every phase, evaluate, report.

One CPU process:   luminary pretrain examples/crystal-tiny.yaml --out runs/crystal-tiny
Many processes:    torchrun --nproc-per-node 2 -m luminary pretrain RECIPE --out DIR
A GPU:             the same; the Deployer picks CUDA and bf16 autocast.

The run folder holds run.json (the resolved recipe), recipe.lock.json,
tokenizer/, data/ (token shards), metrics.jsonl (one line a step: phase, loss,
lr, grad_norm, tokens per source, batch hash; per-source validation loss at
each checkpoint) and checkpoints/step_NNNNNN/.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from luminary.core.config import load_config, validate
from luminary.core.errors import LuminaryError
from luminary.core.io import read_json
from luminary.core.modules import unwrap
from luminary.core.runs import read_metrics
from luminary.models.presets import build_config, check_context
from luminary.models.source import ModelSource
from luminary.pretrain.prepare import PreparedData, check_lock, prepare
from luminary.pretrain.recipe import Recipe, check_recipe, phase_steps, upgrade_recipe
from luminary.train import Deployer, build_phased_schedule
from luminary.train.labels import IGNORE
from luminary.train.losses import causal_lm_loss
from luminary.train.run import CAUSAL_LM, fit_run, start_run
from luminary.train.trainer import TALLY, Callback


def pretrain_collate(examples: list[dict], fim_pad: int | None = None,
                     sources: tuple[str, ...] = ()) -> dict[str, Any]:
    """Stack fixed-length samples; ``<fim_pad>`` positions are not predicted.

    The batch's tally counts, per source, the target tokens it trains on: the
    positions 1..T of each (T+1)-token window that are not ``<fim_pad>``
    (token 0 is only ever an input).
    """
    ids = torch.as_tensor(np.stack([e["input_ids"] for e in examples]))  # (B, T+1)
    labels = ids.clone()
    if fim_pad is not None:
        labels[labels == fim_pad] = IGNORE
    targets = (labels[:, 1:] != IGNORE).sum(dim=1).tolist()
    tally = dict.fromkeys(sources, 0)
    for example, n in zip(examples, targets):
        tally[example["source"]] = tally.get(example["source"], 0) + n
    return {"input_ids": ids, "labels": labels, TALLY: tally}


def phase_end_steps(recipe: Recipe, boundaries: list[int], total: int) -> tuple[int, ...]:
    """Steps (updates done) at which a phase with ``checkpoint_at_end`` ends."""
    ends = boundaries[1:] + [total]
    return tuple(end for phase, end in zip(recipe.phases, ends) if phase.checkpoint_at_end and end > 0)


class PretrainLog(Callback):
    """Adds the phase, the target tokens of the step and of each source so far (counted in the
    batches), and per-source validation loss to each record."""

    def __init__(self, data: PreparedData, eval_steps: list[int], batch_size: int):
        self.mixture = data.mixture
        self.eval_steps = set(eval_steps)
        self.batch_size = batch_size
        self.validation = {n: data.mixture.validation(d) for d, n in enumerate(data.mixture.names)}

    def on_step_end(self, trainer, record):
        step = record["step"]
        record["phase"] = self.mixture.phases[self.mixture.phase_of_step(step)].name
        tally = record.pop(TALLY, {})
        record["target_tokens"] = sum(tally.values())  # this step's, counted in the batch itself
        record["source_tokens"] = {name: trainer.tallies_seen.get(name, 0) for name in self.mixture.names}
        if step + 1 in self.eval_steps:
            record["val_loss"] = {
                name: trainer.evaluate(examples, self.batch_size)["loss"]
                for name, examples in self.validation.items() if examples
            }


@dataclass
class PretrainResult:
    run_dir: Path
    records: list[dict]
    lock: dict
    completion: str | None
    completion_prompt: str | None = None


def load_recipe(path: str | Path) -> Recipe:
    recipe = load_config(path, Recipe)
    check_recipe(recipe, str(path))
    return recipe


def pretrain_model(recipe: Recipe, tokenizer) -> ModelSource:
    """The recipe's fresh model, as a source the Deployer builds on each process's part."""
    vocab = recipe.model.vocab_size or len(tokenizer)
    if len(tokenizer) > vocab:
        raise LuminaryError(f"model.vocab_size: {vocab} is smaller than the tokenizer's {len(tokenizer)} tokens")
    return ModelSource.from_preset(recipe.model.preset, vocab, seed=recipe.deploy.seed,
                                   bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id, **recipe.model.overrides)


def pretrain(recipe_path: str | Path, out: str | Path | None = None, resume: bool = False) -> PretrainResult:
    recipe = load_recipe(recipe_path)
    run_dir = Path(out) if out else Path("runs") / recipe.name
    t, deploy = recipe.train, recipe.deploy

    def divisible(deployer: Deployer) -> None:
        if t.global_batch % (t.micro_batch * deployer.dp_size):
            raise LuminaryError(f"train.global_batch {t.global_batch} is not a multiple of micro_batch × "
                                f"data-parallel ranks ({t.micro_batch} × {deployer.dp_size})")

    check_context(build_config(recipe.model.preset, recipe.model.vocab_size or 2, **recipe.model.overrides),
                  t.seq_len, "train.seq_len")  # before any data is prepared
    deployer = start_run(run_dir, deploy, recipe, resume=resume, needs=CAUSAL_LM,
                         info={"recipe_file": str(recipe_path)}, check=divisible, upgrade=upgrade_recipe)
    data = _prepare_collectively(recipe, run_dir, deployer)
    source = pretrain_model(recipe, data.tokenizer)
    steps = phase_steps(recipe)
    schedule = build_phased_schedule([p.schedule for p in recipe.phases], steps,
                                     [f"phases[{i}].schedule" for i in range(len(steps))])
    total = sum(steps)
    boundaries = [p.start_step for p in data.mixture.phases]
    policy = deploy.checkpoints
    ends = phase_end_steps(recipe, boundaries, total)
    eval_steps = policy.due_steps(total, ends)
    fim_pad = data.mixture.fim_tokens.pad if data.mixture.fim_tokens else None
    result = fit_run(
        deployer, source, functools.partial(pretrain_collate, fim_pad=fim_pad, sources=tuple(data.mixture.names)),
        functools.partial(causal_lm_loss, fused=deploy.fused_cross_entropy), data.mixture,
        per_device_batch_size=t.micro_batch, global_batch=t.global_batch, max_steps=total,
        optimizer=t.optimizer, schedule=lambda _: schedule, max_grad_norm=t.max_grad_norm, tokenizer=data.tokenizer,
        callbacks=[PretrainLog(data, eval_steps, recipe.validation.batch_size)],
        checkpoint=policy.model_copy(update={"steps": sorted(set(policy.steps) | set(ends))}), resume=resume,
    )
    records = read_metrics(run_dir / "metrics.jsonl")
    completion = None
    if recipe.completion_prompt and deployer.is_main:
        completion = complete(result.trainer.model, data.tokenizer, recipe.completion_prompt)
    return PretrainResult(run_dir, records, data.lock, completion, recipe.completion_prompt)


def _prepare_collectively(recipe: Recipe, run_dir: Path, deployer: Deployer) -> PreparedData:
    """Rank 0 tokenizes; the other ranks wait, then open the same shards."""
    if deployer.is_main:
        data = prepare(recipe, run_dir)
        check_lock(run_dir, data.lock)
    deployer.barrier()
    if not deployer.is_main:
        data = prepare(recipe, run_dir)
    return data


def complete(model: torch.nn.Module, tokenizer, prompt: str, max_new_tokens: int = 48) -> str:
    model = unwrap(model)
    model.eval()
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return prompt + tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def open_run(run_dir: str | Path) -> tuple[Recipe, PreparedData]:
    """The recipe and data of an existing run folder (shards reused, nothing retrained)."""
    run_dir = Path(run_dir)
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise LuminaryError(f"{run_dir}: not a pretraining run folder (no run.json)")
    recipe = validate(Recipe, upgrade_recipe(read_json(run_json)["config"]), str(run_json))
    return recipe, prepare(recipe, run_dir)


def summary_table(result: PretrainResult) -> tuple[list[str], list[list[str]]]:
    """Rows: per phase, tokens per source and per-source validation loss at its end."""
    names = list(result.lock["sources"])
    by_step = {r["step"]: r for r in result.records}
    header = ["phase", "steps"] + [f"{n} tokens" for n in names] + [f"{n} val loss" for n in names]
    rows = []
    for phase in result.lock["phases"]:
        end = phase["start_step"] + phase["steps"] - 1
        val = by_step.get(end, {}).get("val_loss", {})
        rows.append([phase["name"], str(phase["steps"])]
                    + [f"{phase['tokens_per_source'][n]:,}" for n in names]
                    + [f"{val[n]:.3f}" if n in val else "-" for n in names])
    return header, rows
