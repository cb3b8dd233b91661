"""The ``parallel:`` section of a run config: tensor-parallel degree and style overrides.

    parallel:
      tp_size: 2
      overrides:                        # module-name glob -> style (luminary.parallel.styles)
        "model.layers.*.mlp.*": replicate
        lm_head: colwise_gather

Overrides are fixed before the automatic plan reads the data flow, so the
layers after an overridden one adapt to it (an MLP left whole makes its down
projection whole too).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from luminary.core.config import Config
from luminary.parallel.styles import STYLES


class ParallelConfig(Config):
    tp_size: int = Field(1, ge=1, description="tensor-parallel degree; the rest of the world is data parallel")
    overrides: dict[str, str] = Field(default_factory=dict, description="module-name glob -> style")

    @field_validator("overrides")
    @classmethod
    def _known_styles(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern, style in value.items():
            if style not in STYLES:
                raise ValueError(f"'{pattern}': unknown style '{style}' (known: {', '.join(STYLES)})")
        return value
