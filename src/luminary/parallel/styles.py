"""Tensor-parallel styles by name: what a plan says about one module.

A plan maps module names to these names; :func:`build_style` turns a name into
a ``torch.distributed.tensor.parallel`` style for one module. ``nn.Linear``
keeps its weight as (out, in), so a column split is ``Shard(0)`` of the weight;
GPT-2's ``Conv1D`` keeps it as (in, out), so the same split is ``Shard(1)``.

| name | weight split | output |
| --- | --- | --- |
| colwise | output features | this rank's columns, a plain tensor |
| colwise_dtensor | output features | a DTensor (for code that reshapes with a global head count) |
| colwise_gather | output features | gathered (the LM head) |
| colwise_packed2, colwise_packed3 | this rank's part of each of 2 or 3 packed pieces ([q; k; v]) | local |
| rowwise | input features | summed over ranks (replicated) |
| vocab_embedding | vocabulary rows | summed over ranks; the token ids come in replicated |
| experts | each expert's intermediate dimension | summed over ranks (a MoE expert bank) |
| replicate | none | the module is left alone |
"""

from __future__ import annotations

from functools import partial

import torch

from torch import nn
from torch.distributed.tensor import DeviceMesh, Replicate, Shard, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel

from luminary.core.errors import LuminaryError
from luminary.parallel.experts import ExpertsParallel, placement

STYLES: dict[str, str] = {
    "colwise": "split output features; local output",
    "colwise_dtensor": "split output features; output stays a DTensor (global shapes)",
    "colwise_gather": "split output features; output gathered",
    "colwise_packed2": "output features packed as [a; b]: each rank takes its part of each; local output",
    "colwise_packed3": "output features packed as [q; k; v]: each rank takes its heads of each; local output",
    "rowwise": "split input features; output summed over ranks",
    "vocab_embedding": "split the vocabulary; output summed over ranks",
    "experts": "expert bank: intermediate dimension split; output summed over ranks",
    "replicate": "left whole",
}

SPLIT_DIM = {  # which weight dimension a style splits, by module kind
    ("linear", "colwise"): 0, ("linear", "rowwise"): 1,
    ("conv1d", "colwise"): 1, ("conv1d", "rowwise"): 0,
    ("embedding", "vocab_embedding"): 0, ("embedding", "colwise"): 1,
}


def base_style(style: str) -> str:
    return "colwise" if style.startswith("colwise") else style


def packed(style: str) -> int:
    """How many pieces a column style's output features are packed in (1 for a plain split)."""
    return int(style.removeprefix("colwise_packed")) if style.startswith("colwise_packed") else 1


def check_style(style: str, where: str) -> None:
    if style not in STYLES:
        raise LuminaryError(f"{where}: unknown tensor-parallel style '{style}' (known: {', '.join(STYLES)})")


def shard_shape(kind: str, style: str, shape: tuple[int, ...], tp_size: int) -> tuple[int, ...]:
    """The weight shape each rank holds."""
    dim = SPLIT_DIM.get((kind, base_style(style)))
    if dim is None:
        return tuple(shape)
    out = list(shape)
    out[dim] //= tp_size
    return tuple(out)


class _OwnedRowwise(RowwiseParallel):
    """``RowwiseParallel`` whose local output is a tensor of its own, not a view.

    ``DTensor.to_local`` hands back a view made inside an autograd Function;
    model code that adds to it in place (Falcon's ``mlp_output += attention_output``)
    then fails in a forward with gradients. One copy of the summed output
    (the hidden state's size) is the price.
    """

    @staticmethod
    def _prepare_output_fn(output_layouts, use_local_output, mod, outputs, device_mesh):
        out = RowwiseParallel._prepare_output_fn(output_layouts, use_local_output, mod, outputs, device_mesh)
        return out.clone() if use_local_output and out.requires_grad and torch.is_grad_enabled() else out


class _Conv1DColwise(ColwiseParallel):
    """Column split of a transformers ``Conv1D`` (weight (in, out): ``Shard(1)``, bias ``Shard(0)``)."""

    def _partition_conv1d(self, name, module, mesh):
        for pname, param in list(module.named_parameters(recurse=False)):
            place = Shard(1) if pname == "weight" else Shard(0)
            module.register_parameter(pname, nn.Parameter(distribute_tensor(param, mesh, [place]),
                                                          requires_grad=param.requires_grad))

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(
            module, device_mesh, self._partition_conv1d,
            partial(self._prepare_input_fn, self.input_layouts, self.desired_input_layouts),
            partial(self._prepare_output_fn, self.output_layouts, self.use_local_output),
        )


class _PackedColwise(ColwiseParallel):
    """Column split of a layer whose output features are ``packs`` pieces laid end to end (GPT-2's
    ``c_attn`` = [q; k; v]): rank r holds the r-th part of each piece, so its output is its own heads'
    q, k and v. The weight is a ``_StridedShard`` DTensor (the order of the whole tensor is kept, so
    checkpoints and resharding see the usual layout); the output is handed on local. The bias stays
    replicated, and DTensor takes each rank's part of it in the addition: FSDP2 shards dimension 0 of
    a 1-D bias too, and its strided placement on top of this one does not give the whole gradient
    back (a dp 2 x tp 2 training step differs by 2e-2 in GPT-2's ``c_attn.bias``).
    """

    def __init__(self, packs: int, conv1d: bool):
        super().__init__()
        self.packs, self.dim = packs, 1 if conv1d else 0

    def _partition(self, name, module, mesh):
        for pname, param in list(module.named_parameters(recurse=False)):
            place = placement(self.dim, self.packs) if pname == "weight" else Replicate()
            module.register_parameter(pname, nn.Parameter(distribute_tensor(param, mesh, [place]),
                                                          requires_grad=param.requires_grad))

    @staticmethod
    def _local_output(mod, outputs, device_mesh):
        return outputs.to_local()

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(
            module, device_mesh, self._partition,
            partial(self._prepare_input_fn, self.input_layouts, self.desired_input_layouts),
            self._local_output,
        )


class _Conv1DRowwise(_OwnedRowwise):
    """Row split of a transformers ``Conv1D`` (weight ``Shard(0)``, bias replicated)."""

    def _partition_conv1d(self, name, module, mesh):
        for pname, param in list(module.named_parameters(recurse=False)):
            place = Shard(0) if pname == "weight" else Replicate()
            module.register_parameter(pname, nn.Parameter(distribute_tensor(param, mesh, [place]),
                                                          requires_grad=param.requires_grad))

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        self.desired_input_layouts = (Shard(-1),)
        return distribute_module(
            module, device_mesh, self._partition_conv1d,
            partial(self._prepare_input_fn, self.input_layouts, self.desired_input_layouts),
            partial(self._prepare_output_fn, self.output_layouts, self.use_local_output),
        )


def build_style(style: str, kind: str, split: dict | None = None) -> ParallelStyle | None:
    """The ParallelStyle for a module of ``kind`` (linear, conv1d, embedding, experts); None to leave it."""
    if style == "replicate":
        return None
    if style == "experts" and kind == "experts":
        return ExpertsParallel({n: tuple(v) for n, v in (split or {}).items()})
    conv = kind == "conv1d"
    col, row = (_Conv1DColwise, _Conv1DRowwise) if conv else (ColwiseParallel, _OwnedRowwise)
    if style == "colwise":
        return col()
    if style == "colwise_dtensor":
        return col(use_local_output=False)
    if style == "colwise_gather":
        return col(output_layouts=Replicate())
    if packed(style) > 1 and kind in ("linear", "conv1d"):
        return _PackedColwise(packed(style), conv)
    if style == "rowwise":
        return row()
    if style == "vocab_embedding" and kind == "embedding":
        return _OwnedRowwise(input_layouts=Replicate())
    raise LuminaryError(f"tensor-parallel style '{style}' does not apply to a {kind} module")
