"""Judging a scorer on task rows ``{task, instruction, references}``.

- Ranking (Cappy as a classifier): each row's gold reference against
  ``n_negatives`` references of other rows of the same task (never one of the
  row's own). Reported: AUC of gold against negatives pooled over all rows
  (``auc``: scores must also be comparable across instructions), the mean
  over rows of each row's own AUC (``instruction_auc``: the probability that
  an instruction's gold outranks one of its negatives, ties ½; what reranking
  and classification need) and choice accuracy (gold is the argmax among its
  row's 1 + n choices).
- Boosting (Cappy beside a generator): mean ROUGE-L F of the generator's
  beam output, of the candidate the scorer picks among the plan's, of the one
  the generator itself rates most likely (self-scoring), and of the best
  candidate (oracle, what a perfect scorer would reach).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np

from luminary.core.errors import LuminaryError
from luminary.scorer.data import RougeL
from luminary.scorer.generator import Decoding, Generator, cappy_plan
from luminary.scorer.inference import best_of_n_many, score_groups
from luminary.scorer.metrics import auc, choice_accuracy
from luminary.scorer.model import Scorer


def ranking_choices(rows: Sequence[dict[str, Any]], n_negatives: int = 3, seed: int = 0) -> list[list[str]]:
    """Per row: its gold reference first, then ``n_negatives`` other references of its task."""
    rng = random.Random(seed)
    pools: dict[str, list[str]] = {}
    for row in rows:
        pools.setdefault(str(row.get("task", "")), []).extend(row["references"])
    pools = {task: sorted(set(refs)) for task, refs in pools.items()}
    choices = []
    for row in rows:
        own = set(row["references"])
        others = [r for r in pools[str(row.get("task", ""))] if r not in own]
        if not others:
            raise LuminaryError(f"task '{row.get('task', '')}': no other reference to serve as a negative")
        choices.append([row["references"][0]] + rng.sample(others, min(n_negatives, len(others))))
    return choices


def evaluate_ranking(scorer: Scorer, rows: Sequence[dict[str, Any]], n_negatives: int = 3, seed: int = 0,
                     batch_size: int = 32) -> dict[str, Any]:
    """AUC, pairwise and choice accuracy of gold against same-task negatives, overall and per task."""
    choices = ranking_choices(rows, n_negatives, seed)
    scores = score_groups(scorer, [r["instruction"] for r in rows], choices, batch_size)
    result = _ranking_metrics(scores)
    result["per_task"] = {}
    for task in sorted({str(r.get("task", "")) for r in rows}):
        mine = [s for r, s in zip(rows, scores) if str(r.get("task", "")) == task]
        result["per_task"][task] = _ranking_metrics(mine)
    return result


def _ranking_metrics(scores: Sequence[Sequence[float]]) -> dict[str, Any]:
    pos = [g[0] for g in scores]
    neg = [s for g in scores for s in g[1:]]
    return {"auc": auc(pos, neg), "instruction_auc": float(np.mean([auc(g[:1], g[1:]) for g in scores])),
            "choice_accuracy": choice_accuracy(scores, [0] * len(scores)), "n_rows": len(scores)}


def evaluate_best_of_n(scorer: Scorer, generator: Generator, rows: Sequence[dict[str, Any]],
                       plan: Sequence[Decoding] | None = None, seed: int = 0,
                       batch_size: int = 32) -> dict[str, Any]:
    """Mean ROUGE-L F (×100) of beam output, scorer's pick, self-scoring pick and oracle."""
    plan = list(plan) if plan is not None else cappy_plan()
    beam = next((d.name for d in plan if not d.do_sample), None)
    if beam is None:
        raise LuminaryError("plan: has no deterministic (beam or greedy) decoding to compare against")
    instructions = [r["instruction"] for r in rows]
    picks = best_of_n_many(scorer, generator, instructions, plan=plan, seed=seed, batch_size=batch_size)
    rouge = RougeL()
    totals: dict[str, list[float]] = {"beam": [], "cappy": [], "self_scoring": [], "oracle": [], "mean_candidate": []}
    for row, pick in zip(rows, picks):
        cands = pick["candidates"]
        f = [rouge(c["text"], row["references"]) for c in cands]
        loglik = generator.log_likelihood([row["instruction"]] * len(cands), [c["text"] for c in cands])
        totals["beam"].append(next(fi for fi, c in zip(f, cands) if c["decoding"] == beam))
        totals["cappy"].append(rouge(pick["best"], row["references"]))
        totals["self_scoring"].append(f[int(np.argmax(loglik))])
        totals["oracle"].append(max(f))
        totals["mean_candidate"].append(float(np.mean(f)))
    result = {name: 100 * float(np.mean(v)) for name, v in totals.items()}
    result.update(n_rows=len(rows), n_candidates=sum(d.num_return_sequences for d in plan))
    result["cappy_minus_beam"] = paired_bootstrap(totals["cappy"], totals["beam"], seed)
    return result


def paired_bootstrap(a: Sequence[float], b: Sequence[float], seed: int = 0, resamples: int = 10_000) -> dict[str, Any]:
    """Mean of a − b (×100) per row, its 95% percentile interval over rows resampled with
    replacement (Efron & Tibshirani 1993, ch. 13), and the rows where a wins, ties, loses."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not len(diff):
        return {"mean": 0.0, "ci95": [0.0, 0.0], "wins": 0, "ties": 0, "losses": 0}
    picks = np.random.default_rng(seed).integers(0, len(diff), size=(resamples, len(diff)))
    lo, hi = np.percentile(diff[picks].mean(axis=1), [2.5, 97.5])
    return {"mean": 100 * float(diff.mean()), "ci95": [100 * float(lo), 100 * float(hi)],
            "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()), "losses": int((diff < 0).sum())}
