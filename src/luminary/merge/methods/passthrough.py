"""Passthrough: one input copied (optionally scaled); with ``slices`` it builds frankenmerges."""

from __future__ import annotations

from luminary.merge.methods.base import MergeMethod, Param


class Passthrough(MergeMethod):
    def __init__(self):
        super().__init__(name="passthrough", title="Passthrough", base="ignored", max_models=1,
                         params=(Param("scale", float, "model", default=None),))

    def merge(self, base, tensors, shared, per_model, generator):
        scale = per_model[0]["scale"]
        return tensors[0] if scale is None else tensors[0] * scale
