"""One trainer for every capability: Redco's three functions on PyTorch.

``Deployer`` (where and how), ``Trainer`` (``collate_fn`` + ``loss_fn``),
``Predictor`` (``collate_fn`` + ``pred_fn``). See docs/train.md.
"""

from luminary.train.deployer import Deployer
from luminary.train.losses import causal_lm_collate, causal_lm_loss
from luminary.train.optim import OptimizerConfig, build_optimizer
from luminary.train.predictor import Predictor
from luminary.train.schedules import ScheduleConfig, build_phased_schedule, build_schedule
from luminary.train.trainer import Callback, CheckpointPolicy, Trainer

__all__ = [
    "Callback",
    "CheckpointPolicy",
    "Deployer",
    "OptimizerConfig",
    "Predictor",
    "ScheduleConfig",
    "Trainer",
    "build_optimizer",
    "build_phased_schedule",
    "build_schedule",
    "causal_lm_collate",
    "causal_lm_loss",
]
