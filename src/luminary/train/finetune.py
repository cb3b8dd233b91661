"""``luminary train``: fine-tune (or train from a preset) a causal LM on text.

Documents come from text files (one document per file) or JSONL (one per
line, from ``text_field``); they are tokenized, joined with EOS and cut into
blocks of ``seq_len`` tokens, then trained through the one Trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from luminary.core.config import Config, dump_config
from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl
from luminary.core.runs import write_run_json
from luminary.train.fused_ce import check_fusable, check_unsharded
from luminary.train.optim import OptimizerConfig
from luminary.train.schedules import ScheduleConfig


class DataConfig(Config):
    path: str
    format: Literal["auto", "text", "jsonl"] = "auto"
    text_field: str = "text"
    glob: str = "**/*"
    seq_len: int = Field(256, ge=2)
    eval_fraction: float = Field(0.0, ge=0, lt=1)


class TrainLoopConfig(Config):
    per_device_batch_size: int = Field(8, ge=1)
    accumulate_grad_batches: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=0)
    n_epochs: float | None = Field(None, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_every: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _length(self):
        if self.max_steps is None and self.n_epochs is None:
            raise ValueError("give max_steps or n_epochs")
        return self


class CheckpointConfig(Config):
    every: int | None = Field(None, ge=1)
    steps: list[int] = []
    keep_last: int | None = Field(None, ge=1)


class FinetuneConfig(Config):
    model: str = Field(description="a model folder, or a preset name (then give tokenizer)")
    tokenizer: str | None = None
    data: DataConfig
    train: TrainLoopConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig | None = None
    checkpoints: CheckpointConfig = CheckpointConfig()
    seed: int = 0
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"
    compile: bool = False
    fused_cross_entropy: bool = Field(False, description="output projection and loss in token chunks")
    activation_checkpointing: bool = Field(False, description="recompute each block in backward")
    float8: bool = Field(False, description="the blocks' linear layers multiply in float8 (sm89+; tp_size 1)")
    tp_size: int = Field(1, ge=1)
    allow_pickle: bool = False


def read_documents(config: DataConfig) -> list[str]:
    path = Path(config.path)
    if not path.exists():
        raise LuminaryError(f"data.path: {path} does not exist")
    files = sorted(p for p in path.glob(config.glob) if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise LuminaryError(f"data.path: no files in {path} match '{config.glob}'")
    docs: list[str] = []
    for file in files:
        fmt = config.format
        if fmt == "auto":
            fmt = "jsonl" if file.suffix in (".jsonl", ".json") else "text"
        if fmt == "jsonl":
            docs.extend(str(row[config.text_field]) for row in read_jsonl(file, required=(config.text_field,)))
        else:
            try:
                docs.append(file.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                continue  # binary files in a folder are skipped
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise LuminaryError(f"data.path: {path} holds no text")
    return docs


def pack_blocks(docs: list[str], tokenizer, seq_len: int) -> list[np.ndarray]:
    """Token blocks of ``seq_len``: documents joined with EOS, the tail dropped."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for encoded in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        if eos is not None:
            ids.append(eos)
    n = len(ids) // seq_len
    if n == 0:
        raise LuminaryError(f"data: {len(ids)} tokens are fewer than one block of seq_len={seq_len}")
    arr = np.asarray(ids[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
    return list(arr)


def run_finetune(config: FinetuneConfig, out: Path, resume: bool = False) -> list[dict]:
    """Train as the config says into run folder ``out``; returns the step records."""
    import functools

    from luminary.models import build_model, load_model, load_tokenizer
    from luminary.models.presets import FAMILIES, PRESETS
    from luminary.train import CheckpointPolicy, Deployer, Trainer, build_schedule
    from luminary.train.losses import causal_lm_collate, causal_lm_loss

    if config.fused_cross_entropy:
        check_unsharded("fused_cross_entropy", config.tp_size)
    if out.exists() and any(out.iterdir()) and not resume:
        raise LuminaryError(f"{out}: run folder exists; pass --resume to continue it or choose another --out")
    is_preset = config.model in PRESETS or config.model in FAMILIES
    tok_path = config.tokenizer or (None if is_preset else config.model)
    if tok_path is None:
        raise LuminaryError("tokenizer: a preset model needs a tokenizer folder")
    tokenizer = load_tokenizer(tok_path)
    if is_preset:
        model = build_model(config.model, len(tokenizer), seed=config.seed,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    else:
        model = load_model(config.model, allow_pickle=config.allow_pickle)
    vocab = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise LuminaryError(f"tokenizer: {len(tokenizer)} tokens do not fit the model's vocabulary of {vocab}")
    if config.fused_cross_entropy:
        check_fusable(model)
    blocks = pack_blocks(read_documents(config.data), tokenizer, config.data.seq_len)
    n_eval = int(len(blocks) * config.data.eval_fraction)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(blocks))
    eval_blocks = [blocks[i] for i in order[:n_eval]]
    train_blocks = [blocks[i] for i in order[n_eval:]]

    if config.tp_size > 1:
        from luminary.parallel.plan import check_heads

        check_heads(model, config.tp_size)
    out.mkdir(parents=True, exist_ok=True)
    deployer = Deployer(workdir=out, seed=config.seed, mixed_precision=config.mixed_precision,
                        compile=config.compile, tp_size=config.tp_size,
                        activation_checkpointing=config.activation_checkpointing, float8=config.float8)
    if deployer.is_main:
        write_run_json(out, dump_config(config), config.seed)
    t = config.train
    global_batch = t.per_device_batch_size * t.accumulate_grad_batches * deployer.dp_size
    total = t.max_steps if t.max_steps is not None else max(1, -(-int(t.n_epochs * len(train_blocks)) // global_batch))
    schedule = build_schedule(config.schedule, total) if config.schedule else None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    trainer = Trainer(
        deployer, functools.partial(causal_lm_collate, pad_id=pad),
        functools.partial(causal_lm_loss, fused=config.fused_cross_entropy), model,
        optimizer=config.optimizer, lr_schedule=schedule,
        accumulate_grad_batches=t.accumulate_grad_batches, max_grad_norm=t.max_grad_norm, tokenizer=tokenizer,
    )
    c = config.checkpoints
    return trainer.fit(
        train_blocks, t.per_device_batch_size, max_steps=total,
        eval_examples=eval_blocks or None, eval_every=t.eval_every if eval_blocks else None,
        checkpoint=CheckpointPolicy(every=c.every, steps=c.steps, keep_last=c.keep_last), resume=resume,
    )
