"""Model families (llama from transformers, crystal of luminary's own), tiny presets, safe loading.

The names below are imported on first use (PEP 562), so that ``import
luminary.models.registry`` (run by ``import luminary``) does not import
transformers' model code.
"""

import importlib

_LAZY = {
    "load_model": "luminary.models.loading",
    "load_tokenizer": "luminary.models.loading",
    "PRESETS": "luminary.models.presets",
    "build_config": "luminary.models.presets",
    "build_model": "luminary.models.source",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'luminary.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
