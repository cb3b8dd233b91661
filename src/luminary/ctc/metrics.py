"""CTC's metrics: each one formula over alignment scores (Deng et al., EMNLP 2021, §4).

x is the input, y the output (hypothesis), r a reference; align(a → b)
scores each token of a against b (see ``aligners``), mean/sum aggregate.

| task | aspect | formula |
| --- | --- | --- |
| summarization | consistency | mean(align(y → x)) |
| summarization | relevance | mean_r mean(align(r → y)) · mean(align(y → x)) (two aligners: see below) |
| style transfer | preservation | 2ab / (a + b), a = mean(align(x → y)), b = mean(align(y → x)) |
| dialog | groundedness | sum(align(y → fact)), stopwords removed |
| dialog | engagingness | sum(align(y → fact + "\\n\\n\\n" + history)), stopwords removed |
| any | factual consistency | mean(align(y → grounding)) |

Relevance averages over any number of references (the original's
``score_relevance`` does the same); as there, a second aligner may score
align(r → y) (``summ_to_ref``) while the first scores align(y → x)
(``doc_to_summ``). Preservation may be rescaled with bert-score's F baseline
as ctc_score's ``rescale_with_baseline`` does (:mod:`luminary.ctc.rescale`). Preservation is 2ab / (a + b), the
harmonic mean, as ctc_score's current code computes it. ``stopwords`` names
the list that ``remove_stopwords`` drops: ``nltk`` (the original's, the
default) or ``sklearn``.
Every function takes whole batches and makes one call to the aligner, so
the E aligner encodes each distinct text once.
"""

from __future__ import annotations

from typing import Sequence

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.base import Aggregation, Aligner, align_scores
from luminary.ctc.aligners.stopwords import DEFAULT_STOPWORDS
from luminary.ctc.rescale import rescale

Pair = tuple[str, str]  # (input, context): align(input → context)


def check_texts(name: str, texts: Sequence[str]) -> None:
    """Each text must hold something to score."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise LuminaryError(f"{name} of example {i + 1} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise LuminaryError(f"{name} of example {i + 1} is empty")


def check_lengths(**columns: Sequence) -> int:
    sizes = {name: len(col) for name, col in columns.items()}
    if len(set(sizes.values())) > 1:
        raise LuminaryError("columns differ in length: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
    return next(iter(sizes.values()), 0)


def align_pairs(aligner: Aligner, pairs: Sequence[Pair], how: Aggregation, remove_stopwords: bool,
                stopwords: str = DEFAULT_STOPWORDS) -> list[float]:
    return align_scores(aligner, [p[0] for p in pairs], [p[1] for p in pairs], how, remove_stopwords, stopwords)


def consistency(aligner: Aligner, docs: Sequence[str], hypos: Sequence[str], remove_stopwords: bool = False,
                how: Aggregation = "mean", stopwords: str = DEFAULT_STOPWORDS) -> list[float]:
    """mean(align(y → x))"""
    check_lengths(docs=docs, hypos=hypos)
    check_texts("hypo", hypos)
    return align_pairs(aligner, list(zip(hypos, docs)), how, remove_stopwords, stopwords)


def relevance(aligner: Aligner, docs: Sequence[str], refs: Sequence[Sequence[str]], hypos: Sequence[str],
              remove_stopwords: bool = False, how: Aggregation = "mean",
              stopwords: str = DEFAULT_STOPWORDS, ref_aligner: Aligner | None = None) -> list[float]:
    """mean_r mean(align(r → y)) · mean(align(y → x)), over every reference r of each example.

    ``ref_aligner`` scores align(r → y) where it is given (ctc_score's ``summ_to_ref``
    aligner beside ``doc_to_summ``, which scores align(y → x)); otherwise one aligner
    scores both, in one call.
    """
    n = check_lengths(docs=docs, refs=refs, hypos=hypos)
    check_texts("hypo", hypos)
    for i, example_refs in enumerate(refs):
        if isinstance(example_refs, str) or not example_refs:
            raise LuminaryError(f"refs of example {i + 1}: relevance needs a list of at least one reference")
        check_texts(f"refs of example {i + 1}: reference", example_refs)
    ref_pairs = [(r, hypos[i]) for i in range(n) for r in refs[i]]
    if ref_aligner is None or ref_aligner is aligner:
        scores = align_pairs(aligner, [*zip(hypos, docs), *ref_pairs], how, remove_stopwords, stopwords)
        y_x, r_y = scores[:n], scores[n:]
    else:
        y_x = align_pairs(aligner, list(zip(hypos, docs)), how, remove_stopwords, stopwords)
        r_y = align_pairs(ref_aligner, ref_pairs, how, remove_stopwords, stopwords)
    out, start = [], 0
    for i in range(n):
        k = len(refs[i])
        out.append(y_x[i] * sum(r_y[start : start + k]) / k)
        start += k
    return out


def harmonic(a: float, b: float) -> float:
    """2ab / (a + b), 0 when a + b = 0."""
    return 2 * a * b / (a + b) if a + b != 0 else 0.0


def preservation(aligner: Aligner, inputs: Sequence[str], hypos: Sequence[str], remove_stopwords: bool = False,
                 how: Aggregation = "mean", stopwords: str = DEFAULT_STOPWORDS,
                 baseline: float | None = None) -> list[float]:
    """p = 2ab / (a + b) with a = mean(align(x → y)), b = mean(align(y → x)).

    With ``baseline`` b_F, (p − b_F) / (1 − b_F): ctc_score's ``rescale_with_baseline``,
    which rescales this final score (see :mod:`luminary.ctc.rescale`).
    """
    n = check_lengths(inputs=inputs, hypos=hypos)
    check_texts("hypo", hypos)
    scores = align_pairs(aligner, [*zip(inputs, hypos), *zip(hypos, inputs)], how, remove_stopwords, stopwords)
    out = [harmonic(a, b) for a, b in zip(scores[:n], scores[n:])]
    return out if baseline is None else [rescale(p, baseline) for p in out]


def groundedness(aligner: Aligner, facts: Sequence[str], hypos: Sequence[str], remove_stopwords: bool = True,
                 how: Aggregation = "sum", stopwords: str = DEFAULT_STOPWORDS) -> list[float]:
    """sum(align(y → fact)), stopwords removed."""
    check_lengths(facts=facts, hypos=hypos)
    check_texts("hypo", hypos)
    return align_pairs(aligner, list(zip(hypos, facts)), how, remove_stopwords, stopwords)


def dialog_context(fact: str, history: str) -> str:
    """The context CTC gives a response for engagingness: fact, three newlines, history."""
    return "\n\n\n".join([fact.strip(), history.strip()])


def engagingness(aligner: Aligner, facts: Sequence[str], histories: Sequence[str], hypos: Sequence[str],
                 remove_stopwords: bool = True, how: Aggregation = "sum",
                 stopwords: str = DEFAULT_STOPWORDS) -> list[float]:
    """sum(align(y → fact + "\\n\\n\\n" + history)), stopwords removed."""
    check_lengths(facts=facts, histories=histories, hypos=hypos)
    check_texts("hypo", hypos)
    contexts = [dialog_context(f, h) for f, h in zip(facts, histories)]
    return align_pairs(aligner, list(zip(hypos, contexts)), how, remove_stopwords, stopwords)


def factual_consistency(aligner: Aligner, groundings: Sequence[str], hypos: Sequence[str],
                        remove_stopwords: bool = False, how: Aggregation = "mean",
              stopwords: str = DEFAULT_STOPWORDS) -> list[float]:
    """mean(align(y → grounding))."""
    return consistency(aligner, groundings, hypos, remove_stopwords, how, stopwords)
