"""Redco on torch.distributed: automatic tensor-parallel plans, FSDP2 meshes, resharding checkpoints.

``auto_plan`` derives a plan from a model's data flow; ``luminary.parallel.apply``
applies it (tensor parallel, then FSDP2) inside the Deployer; checkpoints are
``torch.distributed.checkpoint`` folders that load at any world size.
See docs/parallel.md.
"""

from luminary.parallel.plan import Entry, Plan, auto_plan, memory_per_rank

__all__ = ["Entry", "Plan", "auto_plan", "memory_per_rank"]
