"""``luminary train``: fine-tune (or train from a preset) a causal LM on text.

Documents come from text files (one document per file) or JSONL (one per
line, from ``text_field``); they are tokenized, joined with EOS and cut into
blocks of ``seq_len`` tokens, then trained through the one Trainer on the
config's ``deploy:`` settings.

Chat data (``data.format: chat``, ``luminary.train.chat``) is rendered with
the chat template, the loss on the responses only; ``train.lora`` trains LoRA
adapters through peft (``luminary.train.lora``), in one process or under torchrun (data parallel,
tensor parallel: ``luminary.parallel.adapters``), with float8 base layers or without.

One CPU process:  luminary train examples/finetune-tiny.yaml --out runs/finetune-tiny
Many processes:   torchrun --standalone --nproc-per-node 4 -m luminary train CONFIG --out DIR   (deploy.tp: 2)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from luminary.core.config import Config
from luminary.core.deploy import MOVED_TO_DEPLOY, DeployConfig
from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl
from luminary.train.lora import LoraConfig
from luminary.train.optim import OptimizerConfig
from luminary.train.schedules import ScheduleConfig


class DataConfig(Config):
    path: str
    format: Literal["auto", "text", "jsonl", "chat"] = Field(
        "auto", description="chat: a JSONL of messages or prompt/response rows (luminary.train.chat)")
    chat_template: Literal["model", "chatml"] = Field(
        "model", description="format chat: the tokenizer's own template (refused if it has none), "
                             "or chatml: the ChatML default for a tokenizer without one")
    text_field: str = "text"
    glob: str = "**/*"
    seq_len: int = Field(256, ge=2)
    eval_fraction: float = Field(0.0, ge=0, lt=1)


class TrainLoopConfig(Config):
    """How long and in what batches: the loop settings a capability's ``train:`` section holds."""

    moved_keys = MOVED_TO_DEPLOY
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


class FinetuneLoopConfig(TrainLoopConfig):
    lora: LoraConfig | None = Field(None, description="train LoRA adapters (peft), the base frozen")


class FinetuneConfig(Config):
    moved_keys = MOVED_TO_DEPLOY
    model: str = Field(description="a model folder, or a preset name (then give tokenizer)")
    tokenizer: str | None = None
    data: DataConfig
    train: FinetuneLoopConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig | None = None
    deploy: DeployConfig = DeployConfig()
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


def model_source(model: str, tokenizer, seed: int, allow_pickle: bool = False, where: str = "model"):
    """A preset (fresh weights for the tokenizer's vocabulary) or a causal-LM folder, as a ``ModelSource``."""
    from luminary.models.presets import FAMILIES, PRESETS
    from luminary.models.source import ModelSource

    if model in PRESETS or model in FAMILIES:
        return ModelSource.from_preset(model, len(tokenizer), seed=seed, bos_token_id=tokenizer.bos_token_id,
                                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return ModelSource.from_folder(model, seed=seed, allow_pickle=allow_pickle, where=where)


def run_finetune(config: FinetuneConfig, out: Path, resume: bool = False) -> list[dict]:
    """Train as the config says into run folder ``out``; returns the step records."""
    from luminary.models import load_tokenizer
    from luminary.models.loading import load_config
    from luminary.models.presets import FAMILIES, PRESETS, check_context
    from luminary.train.losses import causal_lm_collate, causal_lm_loss
    from luminary.train.card import finetune_card
    from luminary.train.run import CAUSAL_LM, check_deploy, fit_run, start_run
    from luminary.train.trainer import Evaluation

    check_deploy(config.deploy, CAUSAL_LM)  # the cheap refusals first
    is_preset = config.model in PRESETS or config.model in FAMILIES
    if not is_preset:
        load_config(config.model)  # a missing or broken model folder is named before its tokenizer
    tok_path = config.tokenizer or (None if is_preset else config.model)
    if tok_path is None:
        raise LuminaryError("tokenizer: a preset model needs a tokenizer folder")
    tokenizer = load_tokenizer(tok_path)
    deploy = config.deploy
    source = model_source(config.model, tokenizer, deploy.seed, config.allow_pickle)
    vocab = source.config.vocab_size
    if len(tokenizer) > vocab:
        raise LuminaryError(f"tokenizer: {len(tokenizer)} tokens do not fit the model's vocabulary of {vocab}")
    check_context(source.config, config.data.seq_len, "data.seq_len")
    if config.data.format == "chat":
        from luminary.train.chat import chat_examples

        blocks = chat_examples(config.data.path, tokenizer, config.data.seq_len, config.data.chat_template)
    else:
        blocks = pack_blocks(read_documents(config.data), tokenizer, config.data.seq_len)
    n_eval = int(len(blocks) * config.data.eval_fraction)
    order = np.random.default_rng(deploy.seed).permutation(len(blocks))
    eval_blocks = [blocks[i] for i in order[:n_eval]]
    train_blocks = [blocks[i] for i in order[n_eval:]]

    t = config.train
    if t.lora is not None:
        from luminary.train.lora import apply_lora

        apply_lora(source.skeleton(), t.lora)  # a bad target_modules is named before the run folder is made
    deployer = start_run(out, deploy, config, resume=resume, needs=CAUSAL_LM, model_config=source.config)
    model = source if t.lora is None else lora_model(source, t.lora, config.model, is_preset, out, deployer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    evaluation = Evaluation(eval_blocks, every=t.eval_every) if eval_blocks and t.eval_every else None
    result = fit_run(
        deployer, model, functools.partial(causal_lm_collate, pad_id=pad),
        functools.partial(causal_lm_loss, fused=deploy.fused_cross_entropy), train_blocks,
        per_device_batch_size=t.per_device_batch_size, accumulate_grad_batches=t.accumulate_grad_batches,
        max_steps=t.max_steps, n_epochs=t.n_epochs, optimizer=config.optimizer, schedule=config.schedule,
        max_grad_norm=t.max_grad_norm, evaluation=evaluation, tokenizer=tokenizer, resume=resume,
        card=functools.partial(finetune_card, config, fresh=is_preset,
                               model_type=getattr(source.config, "model_type", None)),
    )
    return result.records


def lora_model(source, lora: LoraConfig, model: str, is_preset: bool, out: Path, deployer):
    """The base built whole, with adapters on; the adapter records its base folder (a preset's
    fresh weights are written to ``out/base`` so ``luminary merge-lora`` finds them)."""
    from luminary.train.lora import apply_lora, trainable_share

    base = source.build("cpu")
    if is_preset:
        base_dir = out / "base"
        if deployer.is_main and not (base_dir / "config.json").is_file():
            base.save_pretrained(base_dir, safe_serialization=True)
    else:
        base_dir = Path(model)
    wrapped = apply_lora(base, lora)
    wrapped.peft_config[wrapped.active_adapter].base_model_name_or_path = str(base_dir.resolve())
    trainable, total = trainable_share(wrapped)
    deployer.log(f"LoRA: {trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f}%)")
    return wrapped
