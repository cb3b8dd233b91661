"""The aligners, by the letter CTC gives them: E (embedding), D (discriminative), R (regression)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.base import Aggregation, Aligner, Alignment, align_scores, english_stopwords
from luminary.ctc.aligners.embedding import E_PRESETS, EmbeddingAligner, estimate_baseline, idf_weights, pick_layer
from luminary.ctc.aligners.pairs import clean_text
from luminary.ctc.aligners.stopwords import STOPWORD_LISTS
from luminary.ctc.aligners.trained import DiscriminativeAligner, RegressionAligner

# name -> (class, what it is); CTC: Deng et al., EMNLP 2021, https://arxiv.org/abs/2109.06379
ALIGNERS: dict[str, tuple[type, str]] = {
    "E": (EmbeddingAligner, "greedy cosine matching of a pretrained encoder's token embeddings"),
    "D": (DiscriminativeAligner, "token classifier trained to spot hallucinated words"),
    "R": (RegressionAligner, "regressor trained to the share of words that are not hallucinated"),
}


def build_aligner(kind: str, model: str | Path | None = None, **options: Any) -> Aligner:
    """An aligner by its letter; E without a model uses the offline MiniLM encoder."""
    if kind not in ALIGNERS:
        raise LuminaryError(f"unknown aligner {kind!r}: choose one of {', '.join(ALIGNERS)}")
    if model is None:
        if kind != "E":
            raise LuminaryError(f"aligner {kind} needs a trained model folder (see `luminary ctc train`)")
        from luminary.ctc.encoder import default_encoder

        model = default_encoder()
    cls = ALIGNERS[kind][0]
    accepted = set(inspect.signature(cls).parameters) - {"model"}
    for name in options:
        if name not in accepted:
            raise LuminaryError(f"aligner {kind} takes no option {name!r} (it takes {', '.join(sorted(accepted))})")
    return cls(model, **options)


__all__ = [
    "ALIGNERS",
    "E_PRESETS",
    "STOPWORD_LISTS",
    "Aggregation",
    "Aligner",
    "Alignment",
    "DiscriminativeAligner",
    "EmbeddingAligner",
    "RegressionAligner",
    "align_scores",
    "build_aligner",
    "clean_text",
    "english_stopwords",
    "estimate_baseline",
    "idf_weights",
    "pick_layer",
]
