"""What every aligner returns and how token scores become one number.

An aligner maps a batch of (input, context) pairs to one :class:`Alignment`
each: the input's tokens (or words) with a score in [0, 1] per token, how
well that token is supported by the context (CTC, Deng et al. 2021, §3). A
regression aligner (R) returns a single score for the whole input.

Aggregation (ctc_score ``Aligner.aggregate``): with ``remove_stopwords``,
tokens whose lowercased, stripped text is an English stopword are dropped
first; then

    mean = Σ_i w_i s_i / Σ_i w_i        (0 when no token is left)
    sum  = Σ_i w_i s_i

with w_i = 1 unless idf weights were given. The stopword list is NLTK's
English list by default, as in the original (written out in
:mod:`.stopwords`, since NLTK's data is a separate download);
``stopwords="sklearn"`` uses scikit-learn's ``ENGLISH_STOP_WORDS`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.stopwords import DEFAULT_STOPWORDS, english_stopwords

Aggregation = Literal["mean", "sum"]


@dataclass
class Alignment:
    """Per-token alignment of one input against its context.

    ``tokens`` is None for an aligner that scores the whole input at once
    (R); then ``scores`` holds that one score.
    """

    tokens: list[str] | None
    scores: list[float]
    weights: list[float] | None = field(default=None)

    def aggregate(self, how: Aggregation = "mean", remove_stopwords: bool = False,
                  stopwords: str = DEFAULT_STOPWORDS) -> float:
        if self.tokens is None:
            return float(self.scores[0])
        weights = self.weights or [1.0] * len(self.scores)
        stop = english_stopwords(stopwords) if remove_stopwords else frozenset()
        kept = [(s, w) for t, s, w in zip(self.tokens, self.scores, weights) if t.strip().lower() not in stop]
        total = sum(s * w for s, w in kept)
        if how == "sum":
            return float(total)
        if how == "mean":
            norm = sum(w for _, w in kept)
            return float(total / norm) if norm > 0 else 0.0
        raise LuminaryError(f"aggregation must be 'mean' or 'sum', got {how!r}")


class Aligner(Protocol):
    """align(a → b) for many pairs at once: inputs[i] is aligned to contexts[i]."""

    def align(self, inputs: Sequence[str], contexts: Sequence[str]) -> list[Alignment]: ...


def align_scores(
    aligner: Aligner,
    inputs: Sequence[str],
    contexts: Sequence[str],
    how: Aggregation = "mean",
    remove_stopwords: bool = False,
    stopwords: str = DEFAULT_STOPWORDS,
) -> list[float]:
    """One aggregated alignment score per (input, context) pair; ``stopwords`` names the list (nltk, sklearn)."""
    if len(inputs) != len(contexts):
        raise LuminaryError(f"{len(inputs)} inputs but {len(contexts)} contexts")
    if not inputs:
        return []
    english_stopwords(stopwords)  # an unknown list is refused before any alignment
    return [a.aggregate(how, remove_stopwords, stopwords) for a in aligner.align(list(inputs), list(contexts))]
