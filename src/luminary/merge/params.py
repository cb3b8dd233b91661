"""Merge parameters as mergekit reads them: scalars, gradients, tensor-name filters.

A setting is one of

- a scalar (``weight: 0.5``);
- a gradient, a list of numbers interpolated over the layers of a slice:
  at layer position t = i / (L − 1) (t = 0 for tensors outside the layers),
  with s = t·(n − 1), the value is (1 − frac(s))·v[⌊s⌋] + frac(s)·v[⌊s⌋ + 1];
- a list of ``{filter: SUBSTRING, value: SETTING}``: the first entry whose
  filter is a substring of the tensor name (no filter, or ``*``, matches all)
  gives the value.

Settings are looked up from the most specific place to the least: the model's
own ``parameters`` in a slice or in ``models``, the slice's ``parameters``,
then the top-level ``parameters``; the first place that yields a value wins
(mergekit ``parameter_resolver.py``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Union

from luminary.core.errors import LuminaryError

Scalar = Union[bool, int, float, str]
Setting = Any  # Scalar | list[Scalar] | dict(filter, value) | list[dict(filter, value)]


def evaluate(setting: Setting, tensor_name: str, t: float) -> Any:
    """The value of one setting for ``tensor_name`` at layer position ``t`` (None: no value here)."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, (bool, int, float, str)):
        return setting
    if isinstance(setting, list):
        if not setting:
            return None
        if all(isinstance(e, (bool, int, float, str)) for e in setting):
            if not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in setting):
                return setting[int(t * (len(setting) - 1))]
            scaled = t * (len(setting) - 1)
            i0 = int(scaled)
            i1 = min(len(setting) - 1, i0 + 1)
            frac = scaled - i0
            return (1 - frac) * setting[i0] + frac * setting[i1]
        for cond in setting:
            if not isinstance(cond, dict) or "value" not in cond:
                raise LuminaryError(f"parameter setting {setting!r}: a list mixes numbers and {{filter, value}} entries")
            flt = cond.get("filter")
            if flt is None or flt == "*" or (tensor_name and flt in tensor_name):
                return evaluate(cond["value"], tensor_name, t)
        return None
    raise LuminaryError(f"parameter setting {setting!r}: expected a number, a list or {{filter, value}}")


def resolve(name: str, places: Iterable[Mapping[str, Setting] | None], tensor_name: str, t: float) -> Any:
    """The first value found for parameter ``name`` in ``places`` (most specific first)."""
    for place in places:
        if place and name in place:
            value = evaluate(place[name], tensor_name, t)
            if value is not None:
                return value
    return None
