"""The target network θ̄ of soft Q-learning.

θ̄ is a frozen copy of the policy that gives the value targets V̄ of the
path-consistency losses. Before each optimizer update (Guo et al. 2022, as in
their ``_pre_steps``) it is moved towards the policy θ by

- Polyak averaging:  θ̄ ← (1 − τ) θ̄ + τ θ   (τ = 0.001 in the paper), so after
  n updates with policies θ_0 … θ_{n−1}:
      θ̄_n = (1 − τ)^n θ̄_0 + Σ_k τ (1 − τ)^{n−1−k} θ_k;
- or a hard copy θ̄ ← θ every k steps.

No gradient reaches θ̄: its tensors do not require grad and it is evaluated
under ``torch.no_grad``. :class:`TargetNetwork` has ``state_dict`` /
``load_state_dict`` so that ``Trainer(state={"target": ...})`` checkpoints it;
``luminary.rl.sql.SQLCallback`` calls :meth:`TargetNetwork.update` at the
start of every step.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Literal

import torch

from luminary.core.errors import LuminaryError
from luminary.core.modules import unwrap


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name; an FSDP2 model's in their sharded form.

    FSDP2 leaves a root module's parameters gathered after a forward pass
    with no backward (θ̄ only ever runs those), so they are resharded first.
    """
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    out = dict(model.named_parameters())
    out.update(model.named_buffers())
    return out


class TargetNetwork:
    """A frozen copy of ``model``, updated by Polyak averaging or copied every ``every`` steps."""

    def __init__(self, model: torch.nn.Module, update: Literal["polyak", "copy"] = "polyak", tau: float = 1e-3,
                 every: int = 1, copy: bool = True):
        """``copy``: θ̄ is a deep copy of ``model``; False: ``model`` is θ̄ itself, made apart with the
        policy's weights (under a mesh, the Deployer makes it, sharded as the policy is)."""
        if update not in ("polyak", "copy"):
            raise LuminaryError(f"target.update: expected 'polyak' or 'copy', got {update!r}")
        if update == "polyak" and not 0.0 < tau <= 1.0:
            raise LuminaryError(f"target.tau: must be in (0, 1], got {tau}")
        if every < 1:
            raise LuminaryError(f"target.every: must be >= 1, got {every}")
        self.update_kind, self.tau, self.every = update, tau, every
        self.model = (deepcopy(unwrap(model)) if copy else unwrap(model)).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Move θ̄ towards θ = ``model`` before the update of ``step``."""
        source, mine = _tensors(unwrap(model)), _tensors(self.model)
        if self.update_kind == "copy":
            if step % self.every == 0:
                for name, tensor in mine.items():
                    tensor.copy_(source[name])
            return
        floats = [n for n, t in mine.items() if t.is_floating_point()]
        plain = [n for n in floats if not hasattr(mine[n], "device_mesh")]
        if plain:
            torch._foreach_lerp_([mine[n] for n in plain], [source[n].detach() for n in plain], self.tau)
        for name in floats:  # sharded weights, each on its own mesh and placements as the policy's
            if hasattr(mine[name], "device_mesh"):
                mine[name].lerp_(source[name].detach(), self.tau)
        for name, tensor in mine.items():
            if not tensor.is_floating_point():  # integer buffers are copied
                tensor.copy_(source[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """θ̄ whole, on the CPU (a sharded θ̄ is gathered: every rank calls this)."""
        return {name: _whole(t).detach().cpu().clone() for name, t in _tensors(self.model).items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from luminary.models.source import place

        mine = _tensors(self.model)
        if set(state) != set(mine):
            raise LuminaryError("target network: the checkpointed state does not fit the policy")
        for name, tensor in mine.items():
            place(tensor, state[name])


def _whole(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t
