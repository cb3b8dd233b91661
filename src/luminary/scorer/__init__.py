"""Cappy: a small scorer that classifies, reranks and boosts any generator (specs/cappy.md)."""

from luminary.scorer.data import build_scorer_data
from luminary.scorer.generator import Decoding, Generator, cappy_plan
from luminary.scorer.inference import best_of_n, best_of_n_many, classify, rerank, score_pairs
from luminary.scorer.model import Scorer
from luminary.scorer.train import ScorerTrainConfig, train_scorer

__all__ = [
    "Decoding",
    "Generator",
    "Scorer",
    "ScorerTrainConfig",
    "best_of_n",
    "best_of_n_many",
    "build_scorer_data",
    "cappy_plan",
    "classify",
    "rerank",
    "score_pairs",
    "train_scorer",
]
