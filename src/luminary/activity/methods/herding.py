"""Exemplar memory chosen by herding (Welling 2009; iCaRL, Rebuffi et al. 2017).

For class c with normalised embeddings φ̂(x) and mean μ_c, the k-th exemplar is

    p_k = argmin_x ‖ μ_c − (1/k) (φ̂(x) + Σ_{j<k} φ̂(p_j)) ‖,

so the running mean of the exemplars tracks the class mean. The memory is a
fixed total M (PyCIL: ``memory_size`` 2000, ``fixed_memory`` false): each of
the n seen classes keeps its first ⌊M / n⌋ exemplars in herding order.
"""

from __future__ import annotations

import numpy as np


def herding_order(embeddings: np.ndarray, m: int) -> np.ndarray:
    """Indices of the ``m`` herding exemplars among the rows of ``embeddings`` (N, h)."""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    mu = e.mean(axis=0)
    chosen: list[int] = []
    running = np.zeros_like(mu)
    available = np.ones(len(e), dtype=bool)
    for k in range(1, min(m, len(e)) + 1):
        gaps = np.linalg.norm(mu[None, :] - (running[None, :] + e) / k, axis=1)
        gaps[~available] = np.inf
        best = int(np.argmin(gaps))
        chosen.append(best)
        available[best] = False
        running += e[best]
    return np.asarray(chosen, dtype=np.int64)


def update_memory(memory: dict[int, np.ndarray], new_rows: dict[int, np.ndarray], embed, memory_size: int) -> dict[int, np.ndarray]:
    """Memory after a session: old classes cut to ⌊M/n⌋, new classes herded from their rows.

    ``memory``: class -> training rows in herding order; ``new_rows``: class ->
    all its training rows; ``embed(rows) -> (len(rows), h)`` the current encoder.
    """
    n_classes = len(memory) + len(new_rows)
    per_class = max(1, memory_size // max(n_classes, 1))
    out = {c: rows[:per_class] for c, rows in memory.items()}
    for c, rows in new_rows.items():
        out[c] = rows[herding_order(embed(rows), per_class)]
    return out
