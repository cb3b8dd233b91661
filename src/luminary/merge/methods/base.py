"""What every merge method declares: its parameters, whether it needs a base, how many inputs.

A method is a small object with a pure ``merge`` function: tensors and plain
values in, one tensor out; no disk, no device, no config. The planner resolves
each parameter for each tensor (``luminary.merge.params``) and checks it
against the declaration here before any tensor is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from luminary.core.errors import LuminaryError

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """A method parameter: ``shared`` (one value per tensor) or ``model`` (one per input model)."""

    name: str
    kind: type
    scope: Literal["shared", "model"]
    default: Any = REQUIRED
    bounds: tuple[float, float] | None = None

    def check(self, value: Any, where: str) -> Any:
        if value is None:
            if self.default is REQUIRED:
                raise LuminaryError(f"{where}: parameter '{self.name}' is required")
            return self.default
        if self.kind is bool:
            if not isinstance(value, bool):
                raise LuminaryError(f"{where}: parameter '{self.name}' must be true or false (got {value!r})")
            return value
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LuminaryError(f"{where}: parameter '{self.name}' must be a number (got {value!r})")
            value = float(value)
            if self.bounds and not (self.bounds[0] <= value <= self.bounds[1]):
                lo, hi = self.bounds
                raise LuminaryError(f"{where}: parameter '{self.name}' = {value} is outside [{lo}, {hi}]")
            return value
        if not isinstance(value, self.kind):
            raise LuminaryError(f"{where}: parameter '{self.name}' must be a {self.kind.__name__} (got {value!r})")
        return value


@dataclass(frozen=True)
class MergeMethod:
    """Base of the merge methods. ``base``: how the base model is used.

    - ``required``: the base is a separate input (task vectors, SLERP, model stock);
    - ``optional``: a separate input when ``base_model`` is given, else none (NuSLERP, Multi-SLERP);
    - ``ignored``: every model is an input alike (linear, passthrough, Karcher); a ``base_model``
      not listed under ``models`` becomes one more input, as mergekit adds it.
    """

    name: str
    title: str = ""
    paper: str = ""
    base: Literal["required", "optional", "ignored"] = "ignored"
    min_models: int = 1  # inputs other than the base
    max_models: int | None = None
    params: tuple[Param, ...] = field(default_factory=tuple)

    def merge(self, base: torch.Tensor | None, tensors: list[torch.Tensor], shared: dict[str, Any],
              per_model: list[dict[str, Any]], generator: torch.Generator) -> torch.Tensor:
        """The merged tensor. ``tensors`` may be modified in place (the executor owns them)."""
        raise NotImplementedError

    def check_models(self, n_models: int, has_base: bool, where: str) -> None:
        if self.base == "required" and not has_base:
            raise LuminaryError(f"{where}: merge_method '{self.name}' needs base_model (its task vectors are θ − θ_base)")
        if n_models < self.min_models:
            raise LuminaryError(f"{where}: merge_method '{self.name}' needs at least {self.min_models} model(s) "
                                f"besides the base, got {n_models}")
        if self.max_models is not None and n_models > self.max_models:
            raise LuminaryError(f"{where}: merge_method '{self.name}' takes at most {self.max_models} model(s) "
                                f"besides the base, got {n_models}")

    def check_weights(self, shared: dict[str, Any], per_model: list[dict[str, Any]], where: str) -> None:
        """Extra checks on resolved values (e.g. normalised weights must not sum to zero)."""


# torch's sum adds 16-bit floats in float32: the running sums of the stack-free methods do too
ACCUMULATE = {torch.bfloat16: torch.float32, torch.float16: torch.float32}


def owned_inputs(tensors: list[torch.Tensor], base: torch.Tensor | None = None) -> list[bool]:
    """Which inputs a method may overwrite (the executor owns them): those sharing memory with neither
    the base nor another input, and needing no gradient."""
    storages = [t.untyped_storage().data_ptr() for t in tensors]
    taken = storages + ([] if base is None else [base.untyped_storage().data_ptr()])
    return [taken.count(ptr) == 1 and not t.requires_grad for t, ptr in zip(tensors, storages)]


def deltas_in_place(base: torch.Tensor, tensors: list[torch.Tensor]) -> list[bool]:
    """Turn each input :func:`owned_inputs` allows (and of the base's shape and result dtype) into δᵢ, in
    its own buffer; returns which did."""
    owned = [mine and t.dtype == torch.result_type(base, t) and t.shape == base.shape
             for t, mine in zip(tensors, owned_inputs(tensors, base))]
    for t, mine in zip(tensors, owned):
        if mine:
            t.sub_(base)
    return owned
