"""The class-incremental split for other libraries: Avalanche and PyCIL.

Avalanche (``avalanche.benchmarks.generators.nc_benchmark``) expresses ARIC's
{8, 4, 4, 4, 4, 4, 4} steps as ``n_experiences=7, per_exp_classes={0: 8}``
(the remaining 24 classes split evenly) with ``fixed_class_order`` the class
order as integer labels; ``task_labels=False`` for class-incremental
learning. PyCIL's JSON config takes ``init_cls`` 8 and ``increment`` 4, its
``memory_size`` 2000 and, for a fixed order, ``shuffle`` false with the
labels remapped in that order (the mapping is written beside it).
"""

from __future__ import annotations

from pathlib import Path

from luminary.activity.layout import CLASSES
from luminary.activity.protocols import ProtocolConfig, class_order
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_write_json


def avalanche_arguments(protocol: ProtocolConfig) -> dict:
    """Keyword arguments of ``nc_benchmark`` (beside the datasets) for the class-incremental split."""
    steps = protocol.steps
    order = class_order(protocol.class_order, protocol.order_seed)
    rest = steps[1:]
    # the classes not named are split evenly over the other experiences; uneven steps name every one
    per_exp = {0: steps[0]} if len(set(rest)) <= 1 else {i: n for i, n in enumerate(steps)}
    return {"n_experiences": len(steps), "task_labels": False, "per_exp_classes": per_exp,
            "fixed_class_order": order, "class_ids_from_zero_in_each_exp": False,
            "class_names": [CLASSES[c] for c in order]}


def pycil_config(protocol: ProtocolConfig, model_name: str = "icarl", memory_size: int = 2000,
                 seed: int = 1993) -> dict:
    """A PyCIL ``exps/*.json`` config for the split (labels remapped to the class order)."""
    steps = protocol.steps
    if len(set(steps[1:])) > 1:
        raise LuminaryError(f"protocol.steps: {steps}: PyCIL needs one increment after the first step")
    order = class_order(protocol.class_order, protocol.order_seed)
    return {"prefix": "aric", "dataset": "aric", "memory_size": memory_size, "memory_per_class": 20,
            "fixed_memory": False, "shuffle": False, "init_cls": steps[0],
            "increment": steps[1] if len(steps) > 1 else 0, "model_name": model_name,
            "convnet_type": "resnet32", "device": ["0"], "seed": [seed],
            "class_order": order, "label_map": {CLASSES[c]: i for i, c in enumerate(order)}}


def export_split(protocol: ProtocolConfig, out: str | Path, model_name: str = "icarl") -> list[Path]:
    """Write ``avalanche_nc_benchmark.json`` and ``pycil_aric.json`` into folder ``out``."""
    out = Path(out)
    paths = [out / "avalanche_nc_benchmark.json", out / "pycil_aric.json"]
    atomic_write_json(paths[0], avalanche_arguments(protocol))
    atomic_write_json(paths[1], pycil_config(protocol, model_name))
    return paths
