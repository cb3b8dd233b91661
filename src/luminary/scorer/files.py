"""JSONL in, JSONL out: what the command line calls.

Every input row is checked before any model is loaded; a problem names the
file, the line and the field. Outputs are written atomically (a failure
leaves no partial file), or to stdout when no output path is given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl, write_jsonl


def read_rows(path: str | Path, required: Sequence[str], lists: Sequence[str] = ()) -> list[dict[str, Any]]:
    """JSONL rows with ``required`` fields; each field in ``lists`` a non-empty list of strings.

    Rows keep their line number under ``"_line"`` (blank lines are skipped but counted).
    """
    rows = read_jsonl(path, required=tuple(required))
    with open(path, encoding="utf-8") as f:
        numbers = [i for i, line in enumerate(f, 1) if line.strip()]
    for number, row in zip(numbers, rows):
        for key in required:
            if key not in lists and not isinstance(row[key], str):
                raise LuminaryError(f"{path}: line {number}: '{key}' must be a string")
        for key in lists:
            value = row[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LuminaryError(f"{path}: line {number}: '{key}' must be a list of strings")
            if not value:
                raise LuminaryError(f"{path}: line {number}: '{key}' is empty")
        row["_line"] = number
    if not rows:
        raise LuminaryError(f"{path}: no rows")
    return rows


def write_rows(rows: list[dict[str, Any]], output: str | Path | None) -> None:
    clean = [{k: v for k, v in row.items() if k != "_line"} for row in rows]
    if output is None:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in clean))
    else:
        write_jsonl(output, clean)


def score_file(model: str | Path, input: str | Path, output: str | Path | None = None, batch_size: int = 32,
               allow_pickle: bool = False, max_length: int = 512) -> list[dict[str, Any]]:
    """Rows ``{instruction, response, ...}`` gain ``score``."""
    from luminary.scorer.inference import score_pairs
    from luminary.scorer.model import Scorer

    rows = read_rows(input, ("instruction", "response"))
    scorer = Scorer.from_pretrained(model, allow_pickle=allow_pickle, max_length=max_length)
    scores = score_pairs(scorer, [r["instruction"] for r in rows], [r["response"] for r in rows], batch_size)
    for row, score in zip(rows, scores):
        row["score"] = score
    write_rows(rows, output)
    return rows


def rerank_file(model: str | Path, input: str | Path, output: str | Path | None = None, batch_size: int = 32,
                allow_pickle: bool = False, max_length: int = 512) -> list[dict[str, Any]]:
    """Rows ``{instruction, candidates: [...], ...}`` gain ``ranking`` (best first), ``best``
    and ``best_index`` (the argmax: the prediction when the candidates are answer choices)."""
    from luminary.scorer.inference import ranking, score_groups
    from luminary.scorer.model import Scorer

    rows = read_rows(input, ("instruction", "candidates"), lists=("candidates",))
    scorer = Scorer.from_pretrained(model, allow_pickle=allow_pickle, max_length=max_length)
    groups = score_groups(scorer, [r["instruction"] for r in rows], [r["candidates"] for r in rows], batch_size)
    for row, scores in zip(rows, groups):
        row["ranking"] = ranking(row["candidates"], scores)
        row["best"], row["best_index"] = row["ranking"][0]["text"], row["ranking"][0]["index"]
    write_rows(rows, output)
    return rows


def build_data_file(input: str | Path, output: str | Path, generator: str | Path | None = None,
                    n: int = 17, size: int | None = None, seed: int = 0, prompt_template: str = "{instruction}",
                    stop: Sequence[str] = (), max_new_tokens: int = 64, allow_pickle: bool = False) -> list[dict]:
    """Cappy's training data from task rows ``{instruction, references, task?}``."""
    from luminary.scorer.data import build_scorer_data
    from luminary.scorer.generator import Generator, cappy_plan

    rows = read_rows(input, ("instruction", "references"), lists=("references",))
    plan = cappy_plan(n)
    gen = Generator.from_pretrained(generator, allow_pickle=allow_pickle, prompt_template=prompt_template,
                                    stop=stop, max_new_tokens=max_new_tokens) if generator else None
    examples = build_scorer_data(rows, gen, plan, size=size, seed=seed)
    write_jsonl(output, examples)
    return examples


def best_of_n_file(scorer: str | Path, generator: str | Path, input: str | Path, output: str | Path | None = None,
                   n: int = 17, seed: int = 0, prompt_template: str = "{instruction}", stop: Sequence[str] = (),
                   max_new_tokens: int = 64, batch_size: int = 32, allow_pickle: bool = False) -> list[dict]:
    """Rows ``{instruction, ...}`` gain ``best`` (the scorer's pick), ``score``, ``decoding``
    and every ``candidates`` entry with its score."""
    from luminary.scorer.generator import Generator, cappy_plan
    from luminary.scorer.inference import best_of_n_many
    from luminary.scorer.model import Scorer

    rows = read_rows(input, ("instruction",))
    plan = cappy_plan(n)
    model = Scorer.from_pretrained(scorer, allow_pickle=allow_pickle)
    gen = Generator.from_pretrained(generator, allow_pickle=allow_pickle, prompt_template=prompt_template,
                                    stop=stop, max_new_tokens=max_new_tokens)
    picks = best_of_n_many(model, gen, [r["instruction"] for r in rows], plan=plan, seed=seed, batch_size=batch_size)
    for row, pick in zip(rows, picks):
        row.update(pick)
    write_rows(rows, output)
    return rows
