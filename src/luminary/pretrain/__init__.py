"""The Crystal recipe runner: phased code/prose pretraining through luminary.train."""

from luminary.pretrain.runner import open_run, pretrain

__all__ = ["open_run", "pretrain"]
