"""Scores of aspect summaries: ROUGE-1/2/L against the reference, CTC consistency against the document.

ROUGE-n F1 = 2·P·R / (P + R) over n-gram overlaps, ROUGE-L over the longest
common subsequence (Lin 2004), computed by Google's ``rouge-score`` with the
Porter stemmer, as the paper reports them (×100). Consistency is CTC's
(Deng et al., EMNLP 2021): mean over the summary's tokens of align(y → x),
here with the embedding aligner E over the offline MiniLM
(``luminary.ctc``); it is 1 when every token of y is found in the document.

The results follow the spec's layout, one row per system::

    | system | R-1 | R-2 | R-L | consistency |

and a table per aspect (the mean over that aspect's summaries).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from luminary.core.errors import LuminaryError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
COLUMNS = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "consistency": "consistency"}


def rouge_scores(references: Sequence[str], hypotheses: Sequence[str]) -> list[dict[str, float]]:
    """ROUGE-1/2/L F1 of each hypothesis against its reference, ×100."""
    from rouge_score import rouge_scorer

    if len(references) != len(hypotheses):
        raise LuminaryError(f"{len(references)} references but {len(hypotheses)} summaries")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out = []
    for ref, hyp in zip(references, hypotheses):
        scores = scorer.score(ref, hyp)
        out.append({k: 100.0 * scores[k].fmeasure for k in ROUGE_TYPES})
    return out


def consistency_scores(documents: Sequence[str], hypotheses: Sequence[str], aligner: Any = None) -> list[float]:
    """CTC consistency mean(align(y → x)); an empty summary scores 0."""
    from luminary.ctc.aligners import build_aligner
    from luminary.ctc.metrics import consistency

    aligner = aligner or build_aligner("E")
    keep = [i for i, h in enumerate(hypotheses) if h.strip()]
    scores = consistency(aligner, [documents[i] for i in keep], [hypotheses[i] for i in keep]) if keep else []
    out = [0.0] * len(hypotheses)
    for i, s in zip(keep, scores):
        out[i] = float(s)
    return out


def score_rows(rows: Sequence[dict[str, Any]], hypotheses: Sequence[str], with_consistency: bool = True,
               aligner: Any = None) -> list[dict[str, float]]:
    """Per-row scores of ``hypotheses`` against the rows' ``summary`` (and ``document``)."""
    scores = rouge_scores([r["summary"] for r in rows], hypotheses)
    if with_consistency:
        for s, c in zip(scores, consistency_scores([r["document"] for r in rows], hypotheses, aligner)):
            s["consistency"] = c
    return scores


def mean_scores(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in COLUMNS if scores and k in scores[0]]
    return {k: sum(s[k] for s in scores) / len(scores) for k in keys} if scores else {}


def per_aspect(rows: Sequence[dict[str, Any]], scores: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """aspect -> mean scores and the number of summaries ``n``, aspects sorted by name."""
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for row, s in zip(rows, scores):
        groups[row["aspect"]].append(s)
    return {a: {**mean_scores(g), "n": len(g)} for a, g in sorted(groups.items())}


def results_table(systems: dict[str, dict[str, float]], first: str = "system") -> str:
    """The spec's layout: one markdown row per system, R-1 / R-2 / R-L (and consistency) to two decimals."""
    keys = [k for k in COLUMNS if any(k in m for m in systems.values())]
    head = f"| {first} | " + " | ".join(COLUMNS[k] for k in keys) + " |"
    rule = "| --- |" + " --- |" * len(keys)
    lines = [head, rule]
    for name, m in systems.items():
        cells = [f"{m[k]:.2f}" if k != "consistency" else f"{m[k]:.3f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def aspect_table(table: dict[str, dict[str, float]]) -> str:
    keys = [k for k in COLUMNS if any(k in m for m in table.values())]
    lines = ["| aspect | n | " + " | ".join(COLUMNS[k] for k in keys) + " |", "| --- | --- |" + " --- |" * len(keys)]
    for aspect, m in table.items():
        lines.append(f"| {aspect} | {m['n']} | " + " | ".join(f"{m[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: str | Path, rows: Sequence[dict[str, Any]], predictions: dict[str, Sequence[str]],
                  scores: dict[str, Sequence[dict[str, float]]]) -> dict[str, Any]:
    """Results folder: predictions.jsonl (per row: ``summaries`` and ``scores`` by system), results.json,
    results.md, a manifest."""
    from luminary.core.io import atomic_dir, write_jsonl, write_manifest
    from luminary.core.locks import locked

    summary = {name: mean_scores(s) for name, s in scores.items()}
    aspects = {name: per_aspect(rows, s) for name, s in scores.items()}
    report = {"examples": len(rows), "systems": summary, "per_aspect": aspects}
    lines = ["# Aspect summaries: results\n", f"{len(rows)} held-out aspect summaries.\n", results_table(summary)]
    for name, table in aspects.items():
        lines += [f"\n## {name}, per aspect\n", aspect_table(table)]
    out = Path(out)
    with locked(out, "results folder"), atomic_dir(out, overwrite=True) as tmp:
        write_jsonl(tmp / "predictions.jsonl", [
            {"id": r.get("id", i), "aspect": r["aspect"], "reference": r["summary"],
             "summaries": {name: predictions[name][i] for name in predictions},
             "scores": {name: scores[name][i] for name in scores}}
            for i, r in enumerate(rows)])
        (tmp / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "results.md").write_text("\n".join(lines))
        write_manifest(tmp)
    return report


def evaluate_file(model: str | Path, data: str | Path, out: str | Path, settings: Any = None,
                  with_consistency: bool = True, device: str | None = None) -> dict[str, Any]:
    """Generate for every row of ``data`` (build-data JSONL) and score against its aspect summary."""
    from luminary.summarize.data import read_examples
    from luminary.summarize.generate import AspectSummarizer, GenerationSettings

    rows = read_examples(data)
    hypotheses = AspectSummarizer(model, device).summarize(rows, settings or GenerationSettings())
    name = Path(model).name if Path(model).name != "model" else Path(model).parent.name
    scores = score_rows(rows, hypotheses, with_consistency)
    return write_results(out, rows, {name: hypotheses}, {name: scores})
