"""One trainer for every capability: Redco's three functions on PyTorch.

``Deployer`` (where and how, from a run's ``deploy:`` section), ``Trainer``
(``collate_fn`` + ``loss_fn``), ``Predictor`` (``collate_fn`` + ``pred_fn``),
and ``fit_run``, the one path from a capability's config to a fitted model.
See docs/train.md.
"""

from luminary.core.deploy import CheckpointPolicy, DeployConfig
from luminary.train.deployer import Deployer
from luminary.train.losses import causal_lm_collate, causal_lm_loss
from luminary.train.optim import OptimizerConfig, build_optimizer
from luminary.train.predictor import Predictor
from luminary.train.schedules import ScheduleConfig, build_phased_schedule, build_schedule
from luminary.train.trainer import Callback, Evaluation, Trainer

__all__ = [
    "Callback",
    "CheckpointPolicy",
    "DeployConfig",
    "Deployer",
    "Evaluation",
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
