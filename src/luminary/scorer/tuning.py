"""Instruction-tuning a generator on task rows, through the one Trainer.

Cappy boosts an instruction-following LM (FLAN-T5). A causal LM that was only
pretrained (``runs/crystal-tiny``) first learns the tasks' format here:
each (instruction, reference) becomes ``prompt + reference + EOS`` with the
prompt ``prompt_template`` filled in; the loss is the next-token cross-entropy
on the reference and EOS only (prompt tokens are labelled −100). Without a
base folder a fresh preset is trained from scratch, with a byte-level BPE
learnt on the rows.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field

from luminary.core.config import Config
from luminary.core.deploy import CheckpointPolicy, DeployConfig
from luminary.core.errors import LuminaryError
from luminary.core.runs import list_checkpoints
from luminary.train import OptimizerConfig, ScheduleConfig
from luminary.train.labels import IGNORE
from luminary.train.losses import causal_lm_collate, causal_lm_loss
from luminary.train.run import CAUSAL_LM, fit_run, start_run


class TuningDeploy(DeployConfig):
    checkpoints: CheckpointPolicy = Field(default_factory=lambda: CheckpointPolicy(keep_last=1))


class GeneratorTuning(Config):
    preset: str = Field("crystal-debug", description="model preset when no generator folder is given")
    vocab_size: int = Field(1024, ge=300, description="BPE size when no generator folder is given")
    steps: int = Field(300, ge=0, description="tuning updates (0: use the generator folder as it is)")
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    batch_size: int = Field(16, ge=1)
    max_seq_len: int = Field(256, ge=16)
    prompt_template: str = "{instruction}\nAnswer: "
    stop: list[str] = ["\n"]
    max_new_tokens: int = Field(64, ge=1)
    deploy: TuningDeploy = Field(default_factory=TuningDeploy)


def instruction_examples(rows: Sequence[dict[str, Any]], tokenizer: Any, template: str,
                         max_seq_len: int) -> list[dict[str, np.ndarray]]:
    """One example per (row, reference): ids of prompt + reference + EOS, labels −100 on the prompt.

    A prompt too long is cut from the left (its end, next to the answer, is kept).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise LuminaryError("generator tokenizer: has no EOS token to end an answer with")
    out = []
    for row in rows:
        prompt = tokenizer(template.format(instruction=row["instruction"]), add_special_tokens=False)["input_ids"]
        for ref in row["references"]:
            answer = tokenizer(ref, add_special_tokens=False)["input_ids"] + [eos]
            answer = answer[: max_seq_len // 2]
            head = prompt[-(max_seq_len - len(answer)):]
            ids = np.asarray(head + answer, dtype=np.int64)
            labels = np.asarray([IGNORE] * len(head) + answer, dtype=np.int64)
            out.append({"input_ids": ids, "labels": labels})
    return out


def fresh_generator(rows: Sequence[dict[str, Any]], tuning: GeneratorTuning, seed: int) -> tuple[Any, Any]:
    """A preset (as a ``ModelSource``) and a BPE learnt on the rows' prompts and references."""
    from luminary.data.tokenizer import train_bpe
    from luminary.models.source import ModelSource

    texts = [tuning.prompt_template.format(instruction=r["instruction"]) + " ".join(r["references"]) for r in rows]
    tokenizer = train_bpe(texts, vocab_size=tuning.vocab_size)
    source = ModelSource.from_preset(tuning.preset, len(tokenizer), seed=seed, bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return source, tokenizer


def train_generator(rows: Sequence[dict[str, Any]], out: str | Path, tuning: GeneratorTuning,
                    base: str | Path | None = None) -> Path:
    """Tune ``base`` (a causal-LM folder; None: a fresh preset) on ``rows``; returns ``out/model``."""
    from luminary.models import load_tokenizer
    from luminary.models.source import ModelSource
    from luminary.scorer.train import export_checkpoint

    out = Path(out)
    seed = tuning.deploy.seed
    if base is not None:
        source, tokenizer = ModelSource.from_folder(base, seed=seed, where="generator"), load_tokenizer(base)
        if getattr(source.config, "is_encoder_decoder", False):
            raise LuminaryError(f"{base}: tuning covers causal LMs; give tuning steps 0 for a seq2seq generator")
    else:
        source, tokenizer = fresh_generator(rows, tuning, seed)
    examples = instruction_examples(rows, tokenizer, tuning.prompt_template, tuning.max_seq_len)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    steps = max(tuning.steps, 1)
    deployer = start_run(out, tuning.deploy, tuning, needs=CAUSAL_LM, model_config=source.config)
    fit_run(deployer, source, functools.partial(causal_lm_collate, pad_id=pad),
            functools.partial(causal_lm_loss, fused=tuning.deploy.fused_cross_entropy), examples,
            per_device_batch_size=tuning.batch_size, max_steps=steps,
            optimizer=OptimizerConfig(lr=tuning.lr, weight_decay=0.0),
            schedule=ScheduleConfig(kind="cosine", peak_lr=tuning.lr, warmup_steps=min(tuning.warmup_steps, steps - 1)),
            tokenizer=tokenizer)
    if deployer.is_main:
        export_checkpoint(list_checkpoints(out / "checkpoints")[-1][1], out / "model")
    deployer.barrier()
    return out / "model"
