"""The device mesh: data parallel × tensor parallel, from the world size.

Ranks are laid out with tensor parallelism innermost: rank = dp_rank × tp + tp_rank,
so the ``tp`` ranks that share a batch are neighbours (on one node under
``torchrun``). The process group is gloo on the CPU and NCCL on CUDA; the mesh
names its device type explicitly (a CPU mesh on a CUDA machine would otherwise
be built for CUDA, pytorch#132471).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from luminary.core.errors import LuminaryError


def init_mesh(world_size: int, tp_size: int, device: torch.device) -> DeviceMesh:
    """A ("dp", "tp") mesh over all processes; starts the process group if needed.

    The Deployer has checked that ``tp_size`` divides ``world_size`` (the message names deploy.tp).
    """
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    if dist.get_world_size() != world_size:
        raise LuminaryError(f"WORLD_SIZE {world_size} differs from the process group's {dist.get_world_size()}")
    return init_device_mesh(device.type, (world_size // tp_size, tp_size), mesh_dim_names=("dp", "tp"))
