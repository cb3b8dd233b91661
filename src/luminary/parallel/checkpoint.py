"""Distributed checkpoints that reshard on load, beside a whole Hugging Face export.

A checkpoint written under a mesh is the spine's folder plus the shards:

    checkpoints/step_000120/
        config.json, model.safetensors, ...   whole model from rank 0 (loads with transformers)
        trainer_state/                          trainer.json, rng, extra state (no optimizer here)
        distributed/                            torch.distributed.checkpoint: model + optimizer shards
        MANIFEST.sha256                         over all of it, written last

All ranks write into one temporary folder whose name rank 0 chooses and
broadcasts; after a barrier rank 0 seals the manifest and renames the folder
into place, so a kill at any moment leaves the previous checkpoint the latest
complete one. ``get_state_dict`` / ``set_state_dict`` key everything by
parameter name, so the shards load into any world size and any dp × tp split,
and into one process with no process group at all. A single-process
checkpoint (whole weights and an optimizer state keyed by position) loads
under a mesh too, a LoRA run's (its adapter alone, in peft's file names) as well.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.tensor import DTensor, Shard, distribute_tensor
from torch.distributed.tensor.placement_types import _StridedShard
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, load_state, read_safetensors_folder, write_manifest
from luminary.core.modules import unwrap
from luminary.core.runs import TRAINER_STATE

SHARDS = "distributed"


def has_sharded_state(folder: str | Path) -> bool:
    return (Path(folder) / SHARDS / ".metadata").is_file()


def gather_full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on rank 0's CPU (collective; other ranks get {})."""
    return get_model_state_dict(unwrap(model), options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _packed(t: Any) -> bool:
    """A DTensor whose tensor-parallel part is packed (an expert bank's ``[gate; up]`` split apart)."""
    if not isinstance(t, DTensor):
        return False
    names = t.device_mesh.mesh_dim_names or ()
    return any(isinstance(p, _StridedShard) and n == "tp" for p, n in zip(t.placements, names))


def _relayout(t: DTensor, placements) -> DTensor:
    return distribute_tensor(t.full_tensor(), t.device_mesh, placements)


def _map(obj: Any, fn) -> Any:
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map(v, fn) for v in obj]
    return fn(obj)


def _contiguous(state: Any) -> Any:
    """Packed shards laid out as plain ones: DCP describes a shard by one offset and size."""
    def plain(t):
        if not _packed(t):
            return t
        names = t.device_mesh.mesh_dim_names
        return _relayout(t, [Shard(p.dim) if isinstance(p, _StridedShard) and n == "tp" else p
                             for p, n in zip(t.placements, names)])
    return _map(state, plain)


def save_sharded_state(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                       deployer: Any = None) -> None:
    """Model and optimizer shards into ``folder/distributed`` (collective)."""
    model_sd, optim_sd = get_state_dict(unwrap(model), optimizer)
    dcp.save(_contiguous({"model": model_sd, "optimizer": optim_sd}), checkpoint_id=str(Path(folder) / SHARDS))


def _map2(a: Any, b: Any, fn) -> Any:
    if isinstance(a, dict):
        return {k: _map2(a[k], b[k], fn) for k in a}
    if isinstance(a, list):
        return [_map2(x, y, fn) for x, y in zip(a, b)]
    return fn(a, b)


def _optimizer_by_name(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    """A ``state_dict()`` keyed by position, re-keyed by parameter name.

    Position i is the i-th parameter over the optimizer's groups; the same
    model and ``build_optimizer`` give the same order in every process.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    count = sum(len(g["params"]) for g in saved["param_groups"])
    if count != len(order):
        raise LuminaryError(f"optimizer state holds {count} parameters, the model has {len(order)}")
    return {
        "state": {order[int(i)]: s for i, s in saved["state"].items()},
        "param_groups": [{**g, "params": [order[int(i)] for i in g["params"]]} for g in saved["param_groups"]],
    }


def _check_fit(folder: Path, model: nn.Module, result: Any) -> None:
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise LuminaryError(f"{folder}: checkpoint does not fit the model "
                            f"(missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})")


def load_sharded_state(folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                       deployer: Any = None) -> None:
    """Restore model and optimizer from ``folder``, whatever mesh (or none) wrote it."""
    folder, model = Path(folder), unwrap(model)
    if has_sharded_state(folder):
        model_sd, optim_sd = get_state_dict(model, optimizer)
        layout = {"model": model_sd, "optimizer": optim_sd}
        state = _contiguous(layout)
        dcp.load(state, checkpoint_id=str(folder / SHARDS), no_dist=not dist.is_initialized())
        state = _map2(layout, state, lambda want, got: _relayout(got, want.placements) if _packed(want) else got)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        return
    weights = read_safetensors_folder(folder)  # a single-process checkpoint
    if hasattr(model, "from_adapter_names"):  # a LoRA model's: the adapter alone, in peft's file names
        weights = model.from_adapter_names(weights)
    optim_sd = _optimizer_by_name(model, optimizer, load_state(folder / TRAINER_STATE, "optimizer"))
    result = set_state_dict(model, optimizer, model_state_dict=weights, optim_state_dict=optim_sd,
                            options=StateDictOptions(full_state_dict=True, strict=False))
    _check_fit(folder, model, result)


@contextlib.contextmanager
def staged_checkpoint(folder: Path, deployer: Any) -> Iterator[Path]:
    """A temporary folder every rank writes into; rank 0 seals and renames it after a barrier."""
    stage = atomic_dir(folder, overwrite=True) if deployer.is_main else contextlib.nullcontext(None)
    with stage as tmp:
        box = [str(tmp) if tmp is not None else None]
        dist.broadcast_object_list(box, src=0)
        tmp = Path(box[0])
        yield tmp
        deployer.barrier()
        if deployer.is_main:
            write_manifest(tmp)
    deployer.barrier()


def save_distributed_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, deployer: Any,
                                write_main: Callable[[Path], None]) -> None:
    """``write_main(tmp)`` on rank 0 (the spine's checkpoint), then every rank's shards, then the rename."""
    with staged_checkpoint(folder, deployer) as tmp:
        if deployer.is_main:
            write_main(tmp)
        deployer.barrier()
        save_sharded_state(tmp, model, optimizer, deployer)
