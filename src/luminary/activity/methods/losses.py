"""The training objectives, each over the logits of the classes seen so far.

- Cross-entropy, optionally class-balanced (Cui et al. 2019, "Class-Balanced
  Loss Based on Effective Number of Samples"): w_c = (1 − β) / (1 − β^{n_c}),
  n_c the session's training count of class c, rescaled so Σ_c w_c equals
  the number of classes; β = 0.999.
- LwF distillation (Li & Hoiem 2016): T² · KL(softmax(o_old/T) ‖ softmax(o/T))
  over the old classes' logits, T = 2, weight λ = 3, added to a cross-entropy
  over the new classes' logits only (as PyCIL's ``lwf.py``).
- iCaRL's loss (Rebuffi et al. 2017): binary cross-entropy over the seen
  classes, targets one-hot for the new classes and σ(old model's logits) for
  the old ones (classification and distillation in one term).
- Supervised contrastive (Khosla et al. 2020), for the companion paper's base
  session: for anchor i with positives P(i) (same label, other view),
  L = −(1/|P(i)|) Σ_{p∈P(i)} log exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def class_balanced_weights(counts: np.ndarray, beta: float = 0.999) -> np.ndarray:
    """Per-class weights from counts (0 where a class has none)."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    weights[present] *= present.sum() / weights[present].sum()
    return weights


def masked_logits(logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Logits of unseen classes set to −∞ (``seen``: (C,) bool)."""
    return logits.masked_fill(~seen, float("-inf"))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, seen: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(masked_logits(logits.float(), seen), y, weight=weight)


def lwf_distillation(logits: torch.Tensor, old_logits: torch.Tensor, old: torch.Tensor,
                     temperature: float = 2.0) -> torch.Tensor:
    """T² · KL between the old and the current model's tempered softmax over the old classes."""
    t = temperature
    log_p = F.log_softmax(logits.float()[:, old] / t, dim=-1)
    q = F.softmax(old_logits.float()[:, old] / t, dim=-1)
    return F.kl_div(log_p, q, reduction="batchmean") * t * t


def icarl_loss(logits: torch.Tensor, y: torch.Tensor, old_logits: torch.Tensor | None, seen: torch.Tensor,
               old: torch.Tensor) -> torch.Tensor:
    """BCE over the seen classes: one-hot targets, σ(old logits) on the old classes."""
    targets = F.one_hot(y, logits.shape[-1]).float()
    if old_logits is not None and bool(old.any()):
        targets[:, old] = torch.sigmoid(old_logits.float()[:, old])
    per = F.binary_cross_entropy_with_logits(logits.float()[:, seen], targets[:, seen], reduction="none")
    return per.sum(dim=-1).mean()


def supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon over (B, h) embeddings (L2-normalised here) with labels (B,)."""
    z = F.normalize(z.float(), dim=-1)
    sim = z @ z.T / temperature
    eye = torch.eye(len(y), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=-1, keepdim=True)
    positive = (y[:, None] == y[None, :]) & ~eye
    n_pos = positive.sum(dim=-1)
    has = n_pos > 0
    mean_pos = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=-1)[has] / n_pos[has]
    return -mean_pos.mean() if bool(has.any()) else z.sum() * 0.0
