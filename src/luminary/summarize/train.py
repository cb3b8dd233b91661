"""Training an aspect summarizer through the one Trainer: label-smoothed cross-entropy.

The paper fine-tunes bart.large.cnn on ``"{aspect} : {knowledge words}\\n\\n{document}"``
→ aspect summary with label smoothing ε = 0.1 (fairseq's
``label_smoothed_cross_entropy``), lr 3e-5 with 5% warm-up, 10 examples
per update, sources ≤ 1024 and targets ≤ 140 tokens, one epoch. The loss
per target token t with V classes is torch's label smoothing:

    ℓ_t = (1 − ε) · (−log p(y_t)) + (ε / V) · Σ_v (−log p(v))

averaged over the target tokens of the micro-batch (the Trainer then
normalises by the global count). Any BART/T5-family folder works
(``model:``); without one, a tiny BART with a byte-level BPE trained on the
data is built in code (``tiny:``), which is how the CPU demonstration runs.

    luminary summarize train examples/summarize-tiny.yaml --out runs/summarize
    torchrun --nproc-per-node 2 -m luminary summarize train CONFIG --out DIR   # data parallel
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from luminary.core.config import Config
from luminary.core.deploy import MOVED_TO_DEPLOY, CheckpointPolicy, DeployConfig
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, write_manifest
from luminary.core.runs import list_checkpoints
from luminary.summarize.data import collate_seq2seq, encode_example, read_examples
from luminary.train import ScheduleConfig, build_schedule
from luminary.train.labels import IGNORE
from luminary.train.run import check_deploy, fit_run, start_run

MODEL_INFO = "luminary_summarize.json"  # beside the weights: how the model reads its source


class SummarizeCheckpoints(CheckpointPolicy):
    keep_last: int | None = Field(1, ge=1, description="the summarizer is exported from the last one")


class SummarizeDeploy(DeployConfig):
    checkpoints: SummarizeCheckpoints = Field(default_factory=SummarizeCheckpoints)


class TinyModel(Config):
    """A BART built in code with random weights (the debug flavour; STYLE take 11)."""

    d_model: int = Field(64, ge=8)
    layers: int = Field(2, ge=1, description="encoder and decoder layers each")
    heads: int = Field(4, ge=1)
    ffn: int = Field(128, ge=8)
    vocab_size: int = Field(1024, ge=300, description="byte-level BPE trained on the training data")
    max_position: int = Field(1024, ge=16)
    dropout: float = Field(0.1, ge=0, lt=1, description="BART's default; 0, with lr 2e-3, let a d_model 64 "
                                                        "BART learn to copy in half the updates (docs/summarize.md)")


class SummarizeTrainConfig(Config):
    moved_keys = MOVED_TO_DEPLOY
    model: str | None = Field(None, description="a BART/T5-family folder; none: a tiny BART built in code")
    tiny: TinyModel = Field(default_factory=TinyModel)
    data: str = Field(description="JSONL of aspect summaries (luminary summarize build-data: train.jsonl)")
    aspect_blind: bool = Field(False, description="the ablation: the document alone, no aspect prefix")
    max_source: int = Field(1024, ge=8)
    max_target: int = Field(140, ge=4)
    lr: float = Field(3e-5, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    per_device_batch_size: int = Field(2, ge=1)
    accumulate_grad_batches: int = Field(5, ge=1, description="2 × 5 = the paper's 10 per update")
    n_epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer updates; default: n_epochs over the data")
    max_grad_norm: float | None = Field(1.0, gt=0)
    allow_pickle: bool = False
    deploy: SummarizeDeploy = Field(default_factory=SummarizeDeploy)


def label_smoothed_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], is_training: bool = True,
                        epsilon: float = 0.1) -> dict[str, Any]:
    """``loss_fn``: ℓ of the module docstring, mean over the batch's target tokens, with their count."""
    labels = batch["labels"]  # (B, T), -100 on padding
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   decoder_input_ids=decoder_input_ids, use_cache=False).logits  # (B, T, V)
    count = (labels != IGNORE).sum()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE,
                           label_smoothing=epsilon, reduction="sum")
    return {"loss": loss / count.clamp(min=1), "count": count}


def check_seq2seq(config: Any, where: Any) -> None:
    """One line unless the config is an encoder-decoder (BART, T5, mBART, Pegasus, ...)."""
    if not getattr(config, "is_encoder_decoder", False):
        raise LuminaryError(f"{where}: model_type '{getattr(config, 'model_type', '?')}' is not a seq2seq "
                            "(encoder-decoder) model; aspect summarization needs a BART/T5-family folder")


def tiny_source(config: SummarizeTrainConfig, examples: list[dict[str, Any]]):
    """(ModelSource, tokenizer): a tiny BART and a BPE trained on the examples' sources and targets."""
    from transformers import BartConfig, BartForConditionalGeneration

    from luminary.data.tokenizer import train_bpe
    from luminary.models.source import ModelSource
    from luminary.summarize.data import format_source

    texts = [format_source(e["aspect"], e.get("knowledge_words", []), e["document"]) for e in examples]
    tokenizer = train_bpe(texts + [e["summary"] for e in examples], config.tiny.vocab_size)
    t = config.tiny
    model_config = BartConfig(
        vocab_size=len(tokenizer), d_model=t.d_model, encoder_layers=t.layers, decoder_layers=t.layers,
        encoder_attention_heads=t.heads, decoder_attention_heads=t.heads, encoder_ffn_dim=t.ffn,
        decoder_ffn_dim=t.ffn, max_position_embeddings=max(t.max_position, config.max_source),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=None, forced_eos_token_id=tokenizer.eos_token_id, dropout=t.dropout)
    return ModelSource(model_config, BartForConditionalGeneration, seed=config.deploy.seed, where="tiny"), tokenizer


def folder_source(config: SummarizeTrainConfig):
    from transformers import AutoModelForSeq2SeqLM

    from luminary.models.loading import load_config, load_tokenizer
    from luminary.models.source import ModelSource

    check_seq2seq(load_config(config.model), config.model)
    source = ModelSource.from_folder(config.model, AutoModelForSeq2SeqLM, config.deploy.seed, "model",
                                     config.allow_pickle)
    return source, load_tokenizer(config.model)


def export_model(checkpoint: Path, out: Path, info: dict[str, Any]) -> Path:
    """A checkpoint's model and tokenizer as a plain model folder, with how it reads its source."""
    with atomic_dir(out, overwrite=True) as tmp:
        for item in checkpoint.iterdir():
            if item.is_file() and item.name != "MANIFEST.sha256":
                shutil.copy2(item, tmp / item.name)
        (tmp / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")
        write_manifest(tmp)
    return out


def train_summarizer(config: SummarizeTrainConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train as ``config`` says into run folder ``out``; the summarizer lands in ``out/model``.

    Returns ``{"records": step records, "model": path}``.
    """
    out = Path(out)
    check_deploy(config.deploy)
    examples = read_examples(config.data)
    source, tokenizer = folder_source(config) if config.model else tiny_source(config, examples)
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise LuminaryError(f"{config.model}: the tokenizer needs an end-of-sequence and a padding token")
    features = [encode_example(e, tokenizer, config.max_source, config.max_target, config.aspect_blind)
                for e in examples]
    deployer = start_run(out, config.deploy, config, resume=resume, model_config=source.config,
                         info={"n_train_examples": len(examples)})
    optimizer = lambda model: torch.optim.AdamW(  # noqa: E731
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    schedule = lambda total: build_schedule(ScheduleConfig(  # noqa: E731
        kind="linear", peak_lr=config.lr, warmup_steps=math.ceil(config.warmup_ratio * total), end_lr=0.0), total)
    result = fit_run(
        deployer, source, functools.partial(collate_seq2seq, pad_id=tokenizer.pad_token_id),
        functools.partial(label_smoothed_loss, epsilon=config.label_smoothing), features,
        per_device_batch_size=config.per_device_batch_size, accumulate_grad_batches=config.accumulate_grad_batches,
        max_steps=config.max_steps, n_epochs=config.n_epochs, optimizer=optimizer, schedule=schedule,
        max_grad_norm=config.max_grad_norm, tokenizer=tokenizer, resume=resume)
    found = list_checkpoints(out / "checkpoints")
    if not found:
        raise LuminaryError(f"{out}: training wrote no checkpoint")
    path = out / "model"
    if deployer.is_main:
        export_model(found[-1][1], path, {"aspect_blind": config.aspect_blind, "max_source": config.max_source,
                                          "max_target": config.max_target})
    deployer.barrier()
    return {"records": result.records, "model": path}

