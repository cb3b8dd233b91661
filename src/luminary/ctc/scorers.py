"""Scorers shaped like ctc_score's API, with batch methods, and scoring of JSONL files.

    from luminary.ctc import SummarizationScorer
    scorer = SummarizationScorer(align="E")                     # offline MiniLM
    scorer.score(doc=doc, refs=[ref], hypo=summary, aspect="consistency")
    scorer.score_batch(docs=docs, refs=refs, hypos=summaries, aspect="relevance")

``align`` is a letter (E, D, R; ``model`` names the folder) or an aligner
object. Each scorer's defaults are ctc_score's: mean aggregation with
stopwords kept for summarization and style transfer, sum with stopwords
removed for dialog; the stopword list is NLTK's English list (``stopwords=
"sklearn"`` for scikit-learn's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from luminary.core.errors import LuminaryError
from luminary.core.io import write_jsonl
from luminary.ctc import metrics
from luminary.ctc.aligners import Aggregation, Aligner, EmbeddingAligner, build_aligner, idf_weights
from luminary.ctc.aligners.stopwords import DEFAULT_STOPWORDS, english_stopwords
from luminary.ctc.records import read_numbered
from luminary.ctc.rescale import aligner_baseline


class Scorer:
    """Holds one aligner; ``aspects`` maps an aspect to (metric, the JSONL fields it reads)."""

    aspects: dict[str, tuple[Callable[..., list[float]], tuple[str, ...]]] = {}
    remove_stopwords = False
    aggr_type: Aggregation = "mean"

    def __init__(self, align: str | Aligner = "E", model: str | Path | None = None,
                 aggr_type: Aggregation | None = None, stopwords: str = DEFAULT_STOPWORDS, **aligner_options: Any):
        english_stopwords(stopwords)  # an unknown list is refused here
        self.stopwords = stopwords
        self.aligner = build_aligner(align, model, **aligner_options) if isinstance(align, str) else align
        if aggr_type is not None:
            if aggr_type not in ("mean", "sum"):
                raise LuminaryError(f"aggr_type must be 'mean' or 'sum', got {aggr_type!r}")
            self.aggr_type = aggr_type

    def metric(self, aspect: str) -> Callable[..., list[float]]:
        if aspect not in self.aspects:
            raise LuminaryError(f"unknown aspect {aspect!r} for {type(self).__name__}: "
                                f"choose one of {', '.join(self.aspects)}")
        return self.aspects[aspect][0]

    def run(self, aspect: str, columns: list[Sequence], remove_stopwords: bool | None, **extra: Any) -> list[float]:
        stop = self.remove_stopwords if remove_stopwords is None else remove_stopwords
        return self.metric(aspect)(self.aligner, *columns, remove_stopwords=stop, how=self.aggr_type,
                                   stopwords=self.stopwords, **extra)


class SummarizationScorer(Scorer):
    """``align``/``model`` is ctc_score's ``doc_to_summ`` aligner; ``summ_to_ref`` (a folder of the
    same letter, built with the same options, or an aligner object) scores relevance's
    align(r → y) as ctc_score's second aligner does. Without it one aligner scores both."""

    aspects = {
        "consistency": (metrics.consistency, ("doc", "hypo")),
        "relevance": (metrics.relevance, ("doc", "refs", "hypo")),
    }

    def __init__(self, align: str | Aligner = "E", model: str | Path | None = None,
                 aggr_type: Aggregation | None = None, stopwords: str = DEFAULT_STOPWORDS,
                 summ_to_ref: str | Path | Aligner | None = None, **aligner_options: Any):
        super().__init__(align, model, aggr_type, stopwords, **aligner_options)
        if summ_to_ref is None or hasattr(summ_to_ref, "align"):
            self.ref_aligner = summ_to_ref
        elif not isinstance(align, str):
            raise LuminaryError("summ_to_ref: give an aligner object when align is one, or a folder with align=E/D/R")
        else:
            self.ref_aligner = build_aligner(align, summ_to_ref, **aligner_options)

    def score_batch(self, docs: Sequence[str], refs: Sequence[Sequence[str]] | None, hypos: Sequence[str],
                    aspect: str, remove_stopwords: bool | None = None) -> list[float]:
        if aspect == "relevance":
            if refs is None:
                raise LuminaryError("relevance needs references: give refs, a list of references per example")
            return self.run(aspect, [docs, refs, hypos], remove_stopwords, ref_aligner=self.ref_aligner)
        return self.run(aspect, [docs, hypos], remove_stopwords)

    def score(self, doc: str, refs: Sequence[str] | None, hypo: str, aspect: str,
              remove_stopwords: bool | None = None) -> float:
        return self.score_batch([doc], None if refs is None else [refs], [hypo], aspect, remove_stopwords)[0]


class StyleTransferScorer(Scorer):
    """``rescale_with_baseline`` (E only, off by default, as ctc_score): the preservation score p becomes
    (p − b_F)/(1 − b_F) with bert-score's shipped F baseline of the encoder at its layer
    (:mod:`luminary.ctc.rescale`; ``baseline_model`` or ``baseline_file``, either of which implies
    rescaling, for an encoder of no preset)."""

    aspects = {"preservation": (metrics.preservation, ("input_sent", "hypo"))}

    def score_batch(self, input_sents: Sequence[str], hypos: Sequence[str], aspect: str = "preservation",
                    remove_stopwords: bool | None = None, rescale_with_baseline: bool = False,
                    baseline_file: str | Path | None = None, baseline_model: str | None = None) -> list[float]:
        self.metric(aspect)  # an unknown aspect is named before any baseline question
        rescaling = rescale_with_baseline or baseline_file is not None or baseline_model is not None
        baseline = aligner_baseline(self.aligner, baseline_file, baseline_model) if rescaling else None
        return self.run(aspect, [input_sents, hypos], remove_stopwords, baseline=baseline)

    def score(self, input_sent: str, hypo: str, aspect: str = "preservation",
              remove_stopwords: bool | None = None, rescale_with_baseline: bool = False,
              baseline_file: str | Path | None = None, baseline_model: str | None = None) -> float:
        return self.score_batch([input_sent], [hypo], aspect, remove_stopwords, rescale_with_baseline,
                                baseline_file, baseline_model)[0]


class DialogScorer(Scorer):
    aspects = {
        "groundedness": (metrics.groundedness, ("fact", "hypo")),
        "engagingness": (metrics.engagingness, ("fact", "dialog_history", "hypo")),
    }
    remove_stopwords = True
    aggr_type: Aggregation = "sum"

    def score_batch(self, facts: Sequence[str], dialog_histories: Sequence[str] | None, hypos: Sequence[str],
                    aspect: str, remove_stopwords: bool | None = None) -> list[float]:
        if aspect == "engagingness":
            if dialog_histories is None:
                raise LuminaryError("engagingness needs the dialog history of each example")
            return self.run(aspect, [facts, dialog_histories, hypos], remove_stopwords)
        return self.run(aspect, [facts, hypos], remove_stopwords)

    def score(self, fact: str, dialog_history: str | None, hypo: str, aspect: str,
              remove_stopwords: bool | None = None) -> float:
        histories = None if dialog_history is None else [dialog_history]
        return self.score_batch([fact], histories, [hypo], aspect, remove_stopwords)[0]


class FactualConsistencyScorer(Scorer):
    aspects = {"factual_consistency": (metrics.factual_consistency, ("grounding", "hypo"))}

    def score_batch(self, groundings: Sequence[str], hypos: Sequence[str], aspect: str = "factual_consistency",
                    remove_stopwords: bool | None = None) -> list[float]:
        return self.run(aspect, [groundings, hypos], remove_stopwords)

    def score(self, grounding: str, hypo: str, aspect: str = "factual_consistency",
              remove_stopwords: bool | None = None) -> float:
        return self.score_batch([grounding], [hypo], aspect, remove_stopwords)[0]


TASKS: dict[str, type[Scorer]] = {
    "summarization": SummarizationScorer,
    "style_transfer": StyleTransferScorer,
    "dialog": DialogScorer,
    "factual": FactualConsistencyScorer,
}
PASSTHROUGH = ("id", "system")  # copied from each input line to its score line


def task_scorer(task: str) -> type[Scorer]:
    if task not in TASKS:
        raise LuminaryError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return TASKS[task]


def read_examples(path: str | Path, fields: tuple[str, ...]) -> list[dict]:
    """JSONL rows with ``fields``; a missing field, an empty hypothesis or an empty reference list names its line."""
    numbered = read_numbered(path, fields)
    for number, row in numbered:
        for field in fields:
            value = row[field]
            if field == "refs":
                refs = [value] if isinstance(value, str) else value
                if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
                    raise LuminaryError(f"{path}: line {number}: 'refs' must hold at least one non-empty reference")
                row[field] = refs
            elif not isinstance(value, str):
                raise LuminaryError(f"{path}: line {number}: field '{field}' must be a string")
            elif field == "hypo" and not value.strip():
                raise LuminaryError(f"{path}: line {number}: the hypothesis ('hypo') is empty")
    return [row for _, row in numbered]


def score_file(input_path: str | Path, task: str, aspect: str, align: str = "E", model: str | Path | None = None,
               remove_stopwords: bool | None = None, aggr_type: Aggregation | None = None,
               output: str | Path | None = None, idf: bool = False, stopwords: str = DEFAULT_STOPWORDS,
               summ_to_ref: str | Path | None = None, rescale_with_baseline: bool = False,
               baseline_file: str | Path | None = None, baseline_model: str | None = None,
               **aligner_options: Any) -> list[dict]:
    """Score every line of a JSONL file; returns (and writes to ``output``) one ``{"score": …}`` per line.

    ``idf``: weight E's tokens by their inverse document frequency over all texts of the file.
    ``summ_to_ref``: relevance's second aligner (a folder). ``rescale_with_baseline`` (with
    ``baseline_file``/``baseline_model``): preservation rescaled as ctc_score does.
    """
    cls = task_scorer(task)
    if aspect not in cls.aspects:
        raise LuminaryError(f"unknown aspect {aspect!r} for task {task}: choose one of {', '.join(cls.aspects)}")
    fields = cls.aspects[aspect][1]
    if summ_to_ref is not None and aspect != "relevance":
        raise LuminaryError("summ_to_ref (--summ-to-ref) is relevance's second aligner; this aspect uses one")
    rescaling = rescale_with_baseline or baseline_file is not None or baseline_model is not None
    if rescaling and aspect != "preservation":
        raise LuminaryError("rescale_with_baseline applies to preservation only (as in ctc_score)")
    rows = read_examples(input_path, fields)
    extra = {"summ_to_ref": summ_to_ref} if summ_to_ref is not None else {}
    scorer = cls(align, model, aggr_type, stopwords, **extra, **aligner_options)
    if idf:
        if not isinstance(scorer.aligner, EmbeddingAligner):
            raise LuminaryError("idf weights apply to the E aligner only")
        texts = [t for row in rows for f in fields for t in ([row[f]] if isinstance(row[f], str) else row[f])]
        scorer.aligner.idf = idf_weights(texts, scorer.aligner.tokenizer)
        if getattr(scorer, "ref_aligner", None) is not None:
            scorer.ref_aligner.idf = idf_weights(texts, scorer.ref_aligner.tokenizer)
    columns = [[row[f] for row in rows] for f in fields]
    if aspect == "preservation":
        scores = scorer.score_batch(*columns, aspect, remove_stopwords, rescaling, baseline_file, baseline_model)
    elif aspect == "relevance":
        scores = scorer.score_batch(*columns, aspect, remove_stopwords)
    else:
        scores = scorer.run(aspect, columns, remove_stopwords)
    out = [{**{k: row[k] for k in PASSTHROUGH if k in row}, "score": s} for row, s in zip(rows, scores)]
    if output is not None:
        write_jsonl(output, out)
    return out
