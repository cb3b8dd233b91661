"""The merge methods luminary knows, by name: one explicit list (mergekit names and defaults).

``tests/merge/test_methods.py`` checks that every module of this folder is used here.
"""

from __future__ import annotations

from luminary.core.errors import LuminaryError
from luminary.merge.methods.arcee_fusion import ArceeFusion
from luminary.merge.methods.base import MergeMethod
from luminary.merge.methods.linear import Linear
from luminary.merge.methods.model_stock import ModelStock
from luminary.merge.methods.nearswap import NearSwap
from luminary.merge.methods.passthrough import Passthrough
from luminary.merge.methods.ram import Ram
from luminary.merge.methods.sce import Sce
from luminary.merge.methods.slerp import Slerp
from luminary.merge.methods.spherical import Karcher, MultiSlerp, NuSlerp
from luminary.merge.methods.task_arithmetic import TaskArithmetic

TIES = "https://arxiv.org/abs/2306.01708"
DARE = "https://arxiv.org/abs/2311.03099"
BREADCRUMBS = "https://arxiv.org/abs/2312.06795"
DELLA = "https://arxiv.org/abs/2406.11617"

METHODS: dict[str, MergeMethod] = {m.name: m for m in [
    Linear(),
    Passthrough(),
    Slerp(),
    ModelStock(),
    TaskArithmetic("task_arithmetic", "Task arithmetic", "https://arxiv.org/abs/2212.04089",
                   sparsification=None, consensus=None, normalize=False, rescale=False),
    TaskArithmetic("ties", "TIES", TIES, sparsification="magnitude", consensus="sum", normalize=True, rescale=False),
    TaskArithmetic("dare_linear", "DARE (linear)", DARE, sparsification="bernoulli", consensus=None,
                   normalize=False, rescale=True),
    TaskArithmetic("dare_ties", "DARE (TIES)", DARE, sparsification="bernoulli", consensus="sum",
                   normalize=False, rescale=True),
    TaskArithmetic("breadcrumbs", "Model Breadcrumbs", BREADCRUMBS, sparsification="magnitude_outliers",
                   consensus=None, normalize=False, rescale=False),
    TaskArithmetic("breadcrumbs_ties", "Model Breadcrumbs (TIES)", BREADCRUMBS, sparsification="magnitude_outliers",
                   consensus="sum", normalize=False, rescale=False),
    TaskArithmetic("della", "DELLA", DELLA, sparsification="della", consensus="sum", normalize=True, rescale=True),
    TaskArithmetic("della_linear", "DELLA (linear)", DELLA, sparsification="della", consensus=None,
                   normalize=False, rescale=True),
    NuSlerp(),
    MultiSlerp(),
    Karcher(),
    NearSwap(),
    Sce(),
    ArceeFusion(),
    Ram(plus=False),
    Ram(plus=True),
]}


def get_method(name: str) -> MergeMethod:
    if name not in METHODS:
        raise LuminaryError(f"merge_method: unknown method '{name}' (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]
