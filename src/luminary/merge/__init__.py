"""Model-GLUE: merging, mergeability clustering, selective merging, mixture and stacking of a model zoo.

See docs/merging.md. Entry points: :func:`run_merge` (one config, streaming),
``luminary.merge.cluster``, ``luminary.merge.search``, ``luminary.merge.mixture``,
``luminary.merge.stack`` and ``luminary.merge.glue``.
"""

from luminary.merge.config import MergeConfig, load_merge_config
from luminary.merge.merge import run_merge

__all__ = ["MergeConfig", "load_merge_config", "run_merge"]
