"""Scoring many pairs, classifying, reranking and best-of-n.

Scores come from ``luminary.train.Predictor`` with dynamic padding (each
batch padded to its own longest pair) and length-sorted batches (pairs of
similar length share a batch), so a batch of short pairs costs what short
pairs cost; the original code padded every pair to 512 tokens
(``benchmarks/scorer_throughput.py`` measures the difference).

- classify: score every answer choice, the prediction is the argmax (Cappy
  alone as a multiple-choice classifier);
- rerank: candidates ordered by score, best first;
- best-of-n: a generator writes candidates by a sampling plan (Cappy's 17 by
  default), the scorer picks the best (Cappy boosting an LLM it cannot see into).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.core.seed import rng_state, set_rng_state
from luminary.scorer.generator import Decoding, Generator, cappy_plan
from luminary.scorer.model import Scorer, pad_pairs
from luminary.train import Deployer, Predictor


def make_deployer(device: str | None = None) -> Deployer:
    """A Deployer for inference that leaves the caller's RNG states as they were
    (constructing one seeds every RNG)."""
    state = rng_state()
    deployer = Deployer(device=device or "auto", seed=0, verbose=False)
    set_rng_state(state)
    return deployer


def predict_score(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``pred_fn``: the raw regression output, ``logits[:, 0]`` (Cappy's score)."""
    return model(**batch).logits[:, 0].float()


def score_pairs(scorer: Scorer, instructions: Sequence[str], responses: Sequence[str], batch_size: int = 32,
                deployer: Deployer | None = None, pad_to_max_length: bool = False,
                sort_by_length: bool = True) -> list[float]:
    """Scores of (instruction, response) pairs, in input order.

    ``pad_to_max_length`` pads every pair to ``scorer.max_length`` in input order,
    as the original code did; ``sort_by_length=False`` keeps dynamic padding but
    batches pairs in input order (both kept for comparison).
    """
    if len(instructions) != len(responses):
        raise LuminaryError(f"{len(instructions)} instructions but {len(responses)} responses")
    if not instructions:
        return []
    deployer = deployer or make_deployer(str(next(scorer.model.parameters()).device))
    features = scorer.encode(instructions, responses)
    length = scorer.max_length if pad_to_max_length else None
    predictor = Predictor(deployer, functools.partial(pad_pairs, pad_id=scorer.pad_id, length=length),
                          predict_score)
    key = None if pad_to_max_length or not sort_by_length else (lambda f: len(f["input_ids"]))
    return [float(s) for s in predictor.predict(scorer.model, features, batch_size, length_key=key)]


def score_groups(scorer: Scorer, instructions: Sequence[str], groups: Sequence[Sequence[str]],
                 batch_size: int = 32, where: Sequence[str] | None = None) -> list[list[float]]:
    """Scores of several responses per instruction, all pairs scored together."""
    for i, group in enumerate(groups):
        if len(group) == 0:
            raise LuminaryError(f"{where[i] if where else f'item {i + 1}'}: the candidate list is empty")
    flat_i = [ins for ins, group in zip(instructions, groups) for _ in group]
    flat_r = [r for group in groups for r in group]
    flat = score_pairs(scorer, flat_i, flat_r, batch_size)
    out, at = [], 0
    for group in groups:
        out.append(flat[at : at + len(group)])
        at += len(group)
    return out


def classify(scorer: Scorer, instruction: str, choices: Sequence[str]) -> int:
    """Index of the choice with the highest score (the first among equal scores)."""
    scores = score_groups(scorer, [instruction], [choices])[0]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def ranking(responses: Sequence[str], scores: Sequence[float]) -> list[dict[str, Any]]:
    """Responses ordered by score, best first; ties keep input order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [{"text": responses[i], "score": scores[i], "index": i} for i in order]


def rerank(scorer: Scorer, instruction: str, candidates: Sequence[str]) -> list[dict[str, Any]]:
    """Candidates with scores, best first: ``[{"text", "score", "index"}]``."""
    scores = score_groups(scorer, [instruction], [candidates])[0]
    return ranking(candidates, scores)


def best_of_n_many(scorer: Scorer, generator: Generator, instructions: Sequence[str], n: int | None = None,
                   plan: Sequence[Decoding] | None = None, seed: int = 0,
                   batch_size: int = 32) -> list[dict[str, Any]]:
    """For each instruction: the candidate the scorer rates highest among the plan's.

    The plan is ``plan`` if given, else Cappy's plan for ``n`` candidates
    (n = 17 when unset: beam 4 + 4 × {sampling, temperature 0.9, top-k 40, top-p 0.95}).
    Returns ``{"best", "score", "decoding", "candidates": [{"text", "decoding", "score"}]}``.
    """
    if plan is None:
        plan = cappy_plan(17 if n is None else n)
    candidates = generator.generate(instructions, plan, seed=seed)
    scores = score_groups(scorer, instructions, [[c["text"] for c in cands] for cands in candidates], batch_size)
    results = []
    for cands, group in zip(candidates, scores):
        scored = [{**c, "score": s} for c, s in zip(cands, group)]
        top = max(range(len(scored)), key=lambda i: (group[i], -i))
        results.append({"best": scored[top]["text"], "score": group[top], "decoding": scored[top]["decoding"],
                        "candidates": scored})
    return results


def best_of_n(scorer: Scorer, generator: Generator, instruction: str, n: int | None = None,
              plan: Sequence[Decoding] | None = None, seed: int = 0) -> dict[str, Any]:
    """Best-of-n for one instruction (see :func:`best_of_n_many`)."""
    return best_of_n_many(scorer, generator, [instruction], n=n, plan=plan, seed=seed)[0]
