"""Training data for a scorer, as Cappy's downstream adaptation builds it.

From rows ``{"instruction", "references": [...], "task"?}`` (``tanyuqian/cappy``,
``cappy_bigbench.py``, ``get_cappy_dataset``):

1. every gold reference gives (instruction, reference, 1.0);
2. for each such positive, one reference drawn at random from all references
   of the same task gives (instruction, other, 0.0), skipped when that pair
   already exists (the draw hit one of the instruction's own references);
3. each candidate a generator writes for the instruction gives
   (instruction, candidate, ROUGE-L F), the best F over the references
   (``rouge-score``, ``rougeL``, Porter stemming); a pair already present is
   skipped, so the first label of a pair wins (gold before generations);
4. the examples are shuffled and repeated (or cut) to ``size``.

Rows without a ``task`` form one task together.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl

LABEL_GOLD, LABEL_NEGATIVE = 1.0, 0.0


def read_tasks(path: str | Path) -> list[dict[str, Any]]:
    """Rows with ``instruction`` and a non-empty list of string ``references``."""
    rows = read_jsonl(path, required=("instruction", "references"))
    for number, row in enumerate(rows, 1):
        check_references(row, f"{path}: row {number}")
    return rows


def check_references(row: dict[str, Any], where: str) -> None:
    refs = row["references"]
    if not isinstance(row["instruction"], str):
        raise LuminaryError(f"{where}: 'instruction' must be a string")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise LuminaryError(f"{where}: 'references' must be a non-empty list of strings")


class RougeL:
    """ROUGE-L F1 of a prediction, best over references (rouge-score, stemming).

    F = (1+β²)·P·R / (R + β²·P) with β = 1, P = LCS/|prediction|,
    R = LCS/|reference| over stemmed tokens (Lin, 2004).
    """

    def __init__(self):
        from rouge_score.rouge_scorer import RougeScorer

        self._scorer = RougeScorer(["rougeL"], use_stemmer=True)

    def __call__(self, prediction: str, references: Sequence[str]) -> float:
        return float(self._scorer.score_multi(list(references), prediction)["rougeL"].fmeasure)


def gold_and_negatives(rows: Sequence[dict[str, Any]], rng: random.Random,
                       seen: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Steps 1 and 2: gold pairs (1.0) and one same-task negative per gold pair (0.0)."""
    positives: list[dict[str, Any]] = []
    task_refs: dict[str, set[str]] = {}
    for row in rows:
        task = str(row.get("task", ""))
        for ref in row["references"]:
            key = (row["instruction"], ref)
            if key in seen:
                continue
            seen.add(key)
            positives.append({"task": task, "instruction": row["instruction"], "response": ref,
                              "label": LABEL_GOLD, "source": "gold"})
            task_refs.setdefault(task, set()).add(ref)
    pools = {task: sorted(refs) for task, refs in task_refs.items()}
    negatives = []
    for pos in positives:
        other = rng.choice(pools[pos["task"]])
        key = (pos["instruction"], other)
        if key not in seen:
            seen.add(key)
            negatives.append({**pos, "response": other, "label": LABEL_NEGATIVE, "source": "negative"})
    return positives + negatives


def labelled_generations(rows: Sequence[dict[str, Any]], candidates: Sequence[Sequence[dict[str, str]]],
                         seen: set[tuple[str, str]], rouge: RougeL | None = None) -> list[dict[str, Any]]:
    """Step 3: each new (instruction, candidate) pair labelled with its ROUGE-L F."""
    rouge = rouge or RougeL()
    out = []
    for row, cands in zip(rows, candidates):
        for cand in cands:
            key = (row["instruction"], cand["text"])
            if key in seen:
                continue
            seen.add(key)
            out.append({"task": str(row.get("task", "")), "instruction": row["instruction"],
                        "response": cand["text"], "label": rouge(cand["text"], row["references"]),
                        "source": cand.get("decoding", "generation")})
    return out


def resize(examples: list[dict[str, Any]], size: int | None, rng: random.Random) -> list[dict[str, Any]]:
    """Step 4: shuffle, then repeat whole copies and cut to ``size`` (None: keep all)."""
    examples = list(examples)
    rng.shuffle(examples)
    if size is None:
        return examples
    if size < 1:
        raise LuminaryError(f"size: must be >= 1, got {size}")
    if not examples:
        raise LuminaryError("no examples to build from")
    return (examples * (size // len(examples) + 1))[:size]


def build_scorer_data(rows: Sequence[dict[str, Any]], generator: Any = None, plan: Any = None,
                      size: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Cappy's training examples from (instruction, references) rows; see the module docstring.

    ``generator`` is a :class:`~luminary.scorer.generator.Generator` (or None for
    gold and negatives only); ``plan`` its sampling plan (default: Cappy's 17).
    """
    for number, row in enumerate(rows, 1):
        check_references(row, f"row {number}")
    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    examples = gold_and_negatives(rows, rng, seen)
    if generator is not None:
        candidates = generator.generate([r["instruction"] for r in rows], plan, seed=seed)
        examples += labelled_generations(rows, candidates, seen)
    return resize(examples, size, rng)
