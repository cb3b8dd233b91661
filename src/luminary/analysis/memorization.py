"""Memorization of a data chunk by a checkpoint (Analysis360, ``specs/llm360.md``).

For checkpoint c and chunk d: take ``samples`` samples of d (shuffled with
seed 42), prompt = the first k tokens, true continuation c_1..c_l = the next l
tokens (k = l = 32), greedy generation g_1..g_l (end-of-sequence allowed, as
Analysis360 generates with ``min_length = k``: a row that ends early is padded
with the model's pad token, or its end-of-sequence token, which then match
only where the true continuation holds that token). Per sample:

    score = (1/l) Σ_i 𝟙[g_i = c_i]

Reported: the mean score (token match), the fraction of samples with all l
tokens matching (full match), and the per-sample scores and per-token matches.
c and d are independent, so the score is defined for every checkpoint × chunk.
Generation runs through the Predictor (batched; data-parallel under torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from luminary.core.errors import LuminaryError
from luminary.train import Deployer, Predictor


@dataclass
class MemorizationResult:
    token_match: float
    full_match: float
    scores: np.ndarray  # (n,) per-sample score
    matches: np.ndarray  # (n, l) per-token 0/1
    indices: np.ndarray  # (n,) which samples of the chunk

    def to_json(self) -> dict:
        return {"token_match": self.token_match, "full_match": self.full_match, "scores": self.scores.tolist(),
                "indices": self.indices.tolist(), "matches": self.matches.astype(int).tolist()}


def fill_token(model: torch.nn.Module) -> int:
    """What generate writes after a row's end: the pad token, else the (first) end-of-sequence token."""
    config = getattr(model, "generation_config", None) or getattr(model, "config", None)
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(config, name, None)
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(value, int):
            return value
    return 0


def greedy_continuations(model: torch.nn.Module, prompts: np.ndarray, length: int, batch_size: int = 32,
                         deployer: Deployer | None = None, allow_eos: bool = True) -> np.ndarray:
    """(n, length) greedy tokens after each (equal-length) prompt row.

    ``allow_eos`` (Analysis360's setting): a row may end early and is filled with :func:`fill_token`;
    False forces ``length`` tokens (``min_new_tokens``), luminary's earlier behaviour.
    """
    deployer = deployer or Deployer(seed=0, precision="fp32")
    pad = fill_token(model)

    def collate(rows):
        return {"input_ids": torch.as_tensor(np.stack(rows), dtype=torch.long)}

    def pred_fn(m, batch):
        ids = batch["input_ids"]
        forced = {} if allow_eos else {"min_new_tokens": length}
        out = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=length,
                         do_sample=False, pad_token_id=pad, **forced)[:, ids.shape[1]:]
        if out.shape[1] < length:  # every row of the batch ended early
            out = torch.cat([out, out.new_full((out.shape[0], length - out.shape[1]), pad)], dim=1)
        return out

    preds = Predictor(deployer, collate, pred_fn).predict(model, list(prompts), batch_size)
    return np.stack([np.asarray(p) for p in preds])


def memorization(model: torch.nn.Module, samples: list[np.ndarray], k: int = 32, l: int = 32, n: int = 1000,
                 seed: int = 42, batch_size: int = 32, allow_eos: bool = True) -> MemorizationResult:
    usable = [s for s in samples if len(s) >= k + l]
    if not usable:
        raise LuminaryError(f"no sample of the chunk has k + l = {k + l} tokens")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(usable))[:n]
    prompts = np.stack([usable[i][:k] for i in order])
    truth = np.stack([usable[i][k : k + l] for i in order])
    generated = greedy_continuations(model, prompts, l, batch_size, allow_eos=allow_eos)
    matches = generated == truth
    scores = matches.mean(axis=1)
    return MemorizationResult(float(scores.mean()), float(matches.all(axis=1).mean()), scores, matches,
                              np.asarray(order))
