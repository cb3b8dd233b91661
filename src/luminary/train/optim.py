"""AdamW with parameter groups.

Groups come from the model when it defines ``mup_param_groups(weight_decay)``
(Crystal's μP learning-rate multipliers); otherwise matrices decay and biases,
norms and other vectors do not. Each group carries ``lr_mult``: the trainer
sets ``group["lr"] = schedule(step) × lr_mult`` before every update. The fused
kernel is used where the device supports it.
"""

from __future__ import annotations

import inspect

import torch
from pydantic import Field

from luminary.core.config import Config


class OptimizerConfig(Config):
    lr: float = Field(3e-4, ge=0, description="peak learning rate, used when no schedule is given")
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    fused: bool | None = Field(None, description="fused AdamW kernel; default: where supported")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    if hasattr(model, "mup_param_groups"):
        return model.mup_param_groups(weight_decay)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def _fused_supported(params: list[torch.Tensor]) -> bool:
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    devices = {p.device.type for p in params}
    return devices <= {"cuda"} or (devices <= {"cpu"} and hasattr(torch, "_fused_adamw_"))


def build_optimizer(model: torch.nn.Module, config: OptimizerConfig | None = None) -> torch.optim.AdamW:
    config = config or OptimizerConfig()
    groups = param_groups(model, config.weight_decay)
    params = [p for g in groups for p in g["params"]]
    fused = _fused_supported(params) if config.fused is None else config.fused
    kwargs = {"fused": True} if fused else {}
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, **kwargs)
    for group in optimizer.param_groups:
        group.setdefault("lr_mult", 1.0)
    return optimizer
