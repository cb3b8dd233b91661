"""Classifiers over the encoder's embeddings, as scores (higher is better) for each of the 32 classes.

- Linear: the head's logits.
- Nearest mean of exemplars (iCaRL): μ̂_c the renormalised mean of the
  normalised exemplar embeddings; score τ·cos(φ(x), μ̂_c), which ranks as
  −‖φ̂(x) − μ̂_c‖ (τ = 16 only scales it for late fusion).
- Cosine prototypes (the FSCIL baseline of CEC/FACT): the same rule with the
  prototype of a class its mean embedding over the session's training
  samples (all base samples, the K shots of a new class).
- Covariance-adapted (the companion paper's classifier, here as a
  Mahalanobis rule): score −(φ̂ − μ̂_c)ᵀ Σ_c⁻¹ (φ̂ − μ̂_c), with Σ_c a class's
  own covariance shrunk toward the base sessions' shared one,
  Σ_c = α S_c + (1 − α) S_base + γI (α = n_c / (n_c + 16)), so a 5-shot class
  borrows the base covariance and a head class keeps its own.
"""

from __future__ import annotations

import numpy as np

UNSEEN = -1e9


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_means(embeddings: np.ndarray, labels: np.ndarray, classes) -> dict[int, np.ndarray]:
    return {int(c): normalise(normalise(embeddings[labels == c]).mean(axis=0)) for c in classes}


def cosine_scores(embeddings: np.ndarray, means: dict[int, np.ndarray], n_classes: int, scale: float = 16.0) -> np.ndarray:
    scores = np.full((len(embeddings), n_classes), UNSEEN, dtype=np.float64)
    e = normalise(embeddings)
    for c, mu in means.items():
        scores[:, c] = scale * e @ mu
    return scores


def class_covariances(embeddings: np.ndarray, labels: np.ndarray, classes) -> dict[int, tuple[np.ndarray, int]]:
    """(covariance of the normalised embeddings, count) per class."""
    out = {}
    for c in classes:
        e = normalise(embeddings[labels == c])
        out[int(c)] = (np.cov(e, rowvar=False) if len(e) > 1 else np.zeros((e.shape[1], e.shape[1])), len(e))
    return out


def mahalanobis_scores(embeddings: np.ndarray, means: dict[int, np.ndarray], covs: dict[int, tuple[np.ndarray, int]],
                       shared: np.ndarray, n_classes: int, shrink: float = 16.0, ridge: float = 1e-2) -> np.ndarray:
    scores = np.full((len(embeddings), n_classes), UNSEEN, dtype=np.float64)
    e = normalise(embeddings)
    eye = np.eye(e.shape[1])
    for c, mu in means.items():
        cov, n = covs[c]
        alpha = n / (n + shrink)
        precision = np.linalg.inv(alpha * cov + (1 - alpha) * shared + ridge * eye)
        d = e - mu[None, :]
        scores[:, c] = -np.einsum("ij,jk,ik->i", d, precision, d)
    return scores
