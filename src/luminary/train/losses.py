"""Shared loss and collate functions for causal (and masked) language modelling.

``causal_lm_loss`` returns the mean next-token cross-entropy and the number of
target tokens it averages over, so the Trainer can normalise by the global
count of target tokens across micro-batches and ranks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from luminary.train.labels import IGNORE, shift_labels


def causal_lm_collate(examples: list[Any], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad token sequences; labels are the inputs, ``-100`` on padding.

    An example is a sequence of token ids, or a dict with ``input_ids`` (and
    optionally ``labels`` with ``-100`` where no loss is wanted). The batch has
    an ``attention_mask`` only when some sequence is padded: decided here, on
    the CPU, it costs no device sync and no graph break under ``torch.compile``,
    and without a mask the attention runs its plain causal kernel.
    """
    seqs, labels = [], []
    for ex in examples:
        ids = ex["input_ids"] if isinstance(ex, dict) else ex
        ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        seqs.append(ids)
        lab = ex.get("labels") if isinstance(ex, dict) else None
        labels.append(ids if lab is None else torch.as_tensor(np.asarray(lab, dtype=np.int64)))
    T = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    label_ids = torch.full((len(seqs), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, (s, lab) in enumerate(zip(seqs, labels)):
        input_ids[i, : len(s)] = s
        label_ids[i, : len(s)] = lab
        mask[i, : len(s)] = 1
    if all(len(s) == T for s in seqs):
        return {"input_ids": input_ids, "labels": label_ids}
    return {"input_ids": input_ids, "attention_mask": mask, "labels": label_ids}


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of position t predicting label t+1, and the target count.

    logits: (B, T, V); labels: (B, T) with ``-100`` for no target. The labels
    are shifted rather than the logits: the last position gets no target, so
    the (B·T, V) logits are used as they lie, with no copy of ``logits[:, :-1]``.
    """
    targets = shift_labels(labels)
    count = (targets != IGNORE).sum()
    flat = logits.reshape(-1, logits.shape[-1]).float()
    loss = F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return loss / count.clamp(min=1), count


def causal_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], is_training: bool = True,
                   fused: bool = False) -> dict[str, Any]:
    """``loss_fn`` for causal LMs: mean next-token loss over the batch's target tokens.

    ``fused`` computes the output projection and the loss in token chunks
    (``luminary.train.fused_ce``), never holding the whole logits tensor. A
    mask is passed on as it is (``causal_lm_collate`` leaves it out when
    nothing is padded); testing it here would be a sync and a graph break.
    """
    mask = batch.get("attention_mask")
    kwargs = {} if mask is None else {"attention_mask": mask}
    if fused:
        from luminary.train.fused_ce import fused_causal_lm_loss

        loss, count = fused_causal_lm_loss(model, batch["input_ids"], batch["labels"], **kwargs)
        return {"loss": loss, "count": count}
    logits = model(input_ids=batch["input_ids"], use_cache=False, **kwargs).logits
    loss, count = token_cross_entropy(logits, batch["labels"])
    return {"loss": loss, "count": count}


MLM_PROBABILITY = 0.15  # BERT: 15% of the tokens are targets; of them 80% [MASK], 10% random, 10% kept


def mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
                special_ids: frozenset[int] | set[int] = frozenset(),
                probability: float = MLM_PROBABILITY) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of one sequence: (inputs, labels), labels ``-100`` where no target.

    Each non-special token is a target with ``probability``; a target becomes
    ``mask_id`` with probability 0.8, a uniformly random token with 0.1, and
    stays itself with 0.1. ids: (T,).
    """
    special = torch.tensor(sorted(special_ids), dtype=ids.dtype)
    candidate = ~torch.isin(ids, special) if len(special) else torch.ones_like(ids, dtype=torch.bool)
    target = (torch.rand(ids.shape, generator=generator) < probability) & candidate
    draw = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(0, vocab_size, ids.shape, generator=generator, dtype=ids.dtype)
    inputs = torch.where(target & (draw < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(target & (draw >= 0.8) & (draw < 0.9), random_ids, inputs)
    return inputs, torch.where(target, ids, torch.full_like(ids, IGNORE))


def masked_lm_collate(examples: list[Any], mask_id: int, vocab_size: int, pad_id: int = 0,
                      special_ids: frozenset[int] | set[int] = frozenset(), probability: float = MLM_PROBABILITY,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad token sequences and mask them as BERT does (:func:`mask_tokens`); seeded, no global RNG.

    Each example's masks come from a generator seeded by ``seed`` and the example's
    own tokens (or its ``"seed"`` entry when it has one, e.g. its global index),
    so a batch is the same whatever thread collates it and whenever (prefetch,
    resume). Bind the tokenizer's ids with ``functools.partial``.
    """
    import zlib

    inputs, labels = [], []
    for ex in examples:
        ids = ex["input_ids"] if isinstance(ex, dict) else ex
        ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        own = ex.get("seed") if isinstance(ex, dict) else None
        key = own if own is not None else zlib.crc32(ids.numpy().tobytes())
        generator = torch.Generator().manual_seed((seed * 1_000_003 + int(key)) % (2**63 - 1))
        x, y = mask_tokens(ids, mask_id, vocab_size, generator, special_ids | {pad_id}, probability)
        inputs.append(x)
        labels.append(y)
    T = max(len(s) for s in inputs)
    input_ids = torch.full((len(inputs), T), pad_id, dtype=torch.long)
    label_ids = torch.full((len(inputs), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(inputs), T), dtype=torch.long)
    for i, (x, y) in enumerate(zip(inputs, labels)):
        input_ids[i, : len(x)] = x
        label_ids[i, : len(y)] = y
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": label_ids}


def masked_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], is_training: bool = True) -> dict[str, Any]:
    """``loss_fn`` for masked LMs: mean cross-entropy over the masked targets (no shift), and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    labels = batch["labels"]
    count = (labels != IGNORE).sum()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")
    return {"loss": loss / count.clamp(min=1), "count": count}
