"""The network every method trains: a small MLP over frozen backbone features and a 32-way head.

ARIC ships features, not images, so the "backbone" here is the MLP encoder
φ(x) = ReLU(W₁x + b₁) over a backbone's feature; the head is linear
(logits Wφ + b) or cosine (logits τ·cos(w_c, φ), τ = 16 as CEC/FACT). The head
holds all 32 classes from the start and each session masks the classes not
seen yet (−∞ logits): the same as growing the head, with no reallocation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineHead(nn.Module):
    """logits = τ · cos(w_c, φ)."""

    def __init__(self, dim: int, n_classes: int, scale: float = 16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * dim ** -0.5)
        self.scale = scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, h) -> (B, C)
        return self.scale * F.normalize(z, dim=-1) @ F.normalize(self.weight, dim=-1).T


class FeatureNet(nn.Module):
    def __init__(self, in_dim: int, hidden: int, n_classes: int, head: str = "linear", scale: float = 16.0):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.head = CosineHead(hidden, n_classes, scale) if head == "cosine" else nn.Linear(hidden, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B, h)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d) -> (B, C)
        return self.head(self.encoder(x))
