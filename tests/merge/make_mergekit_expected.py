"""Regenerate ``mergekit_expected.json``: mergekit 0.1.5's outputs on fixed small tensors.

Documentation of where the expected numbers of ``test_new_methods.py`` come from; not run by the
suite (CI has no mergekit). mergekit goes into a separate virtual environment, never luminary's::

    python3 -m venv /tmp/mk && /tmp/mk/bin/pip install torch==2.13.0 && /tmp/mk/bin/pip install mergekit==0.1.5
    /tmp/mk/bin/python tests/merge/make_mergekit_expected.py

The inputs are stored beside the outputs, so the test does not depend on torch's random streams.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mergekit.merge_methods.api import merge_tensors

OUT = Path(__file__).with_name("mergekit_expected.json")


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g) * 0.1
    models = {"base": base}
    for i, name in enumerate("abc"):
        delta = torch.randn(4, 6, generator=g) * 0.02 * (i + 1)
        if name != "a":  # RAM: some entries unchanged (|δ| ≤ ε) in some models
            delta[torch.randn(4, 6, generator=g) > 0.3] = 0
        models[name] = base + delta
    return models


# (case name, method, input names, base name or None, parameters)
CASES = [
    ("nuslerp", "nuslerp", ["a", "b"], None, {"weight": {"a": 1.0, "b": 3.0}}),
    ("nuslerp_base", "nuslerp", ["base", "a", "b"], "base", {"weight": {"a": 2.0, "b": 1.0}}),
    ("nuslerp_rows", "nuslerp", ["a", "b"], None, {"weight": {"a": 1.0, "b": 1.0}, "nuslerp_flatten": False}),
    ("nuslerp_columns", "nuslerp", ["base", "a", "b"], "base",
     {"weight": {"a": 1.0, "b": 2.0}, "nuslerp_flatten": False, "nuslerp_row_wise": True}),
    ("multislerp", "multislerp", ["a", "b", "c"], None, {"weight": {"a": 1.0, "b": 2.0, "c": 0.5}}),
    ("multislerp_base", "multislerp", ["base", "a", "b", "c"], "base", {"weight": {"a": 1.0, "b": 1.0, "c": 2.0}}),
    ("karcher", "karcher", ["base", "a", "b", "c"], None, {}),
    ("nearswap", "nearswap", ["base", "a"], "base", {"t": 0.01}),
    ("sce", "sce", ["base", "a", "b", "c"], "base", {}),
    ("sce_topk", "sce", ["base", "a", "b", "c"], "base", {"select_topk": 0.5}),
    ("breadcrumbs", "breadcrumbs", ["base", "a", "b"], "base",
     {"weight": {"a": 1.0, "b": 0.5}, "density": {"a": 0.5, "b": 0.7}, "gamma": {"a": 0.1, "b": 0.05}}),
    ("breadcrumbs_ties", "breadcrumbs_ties", ["base", "a", "b", "c"], "base",
     {"weight": {"a": 1.0, "b": 0.5, "c": 0.8}, "density": {"a": 0.6, "b": 0.6, "c": 0.4}}),
    ("ram", "ram", ["base", "a", "b", "c"], "base", {}),
    ("ramplus_tl", "ramplus_tl", ["base", "a", "b", "c"], "base", {"r": 0.5, "alpha": 0.3}),
    ("arcee_fusion", "arcee_fusion", ["base", "a"], "base", {}),
]


def main() -> None:
    models = inputs()
    results = {}
    for case, method, names, base, params in CASES:
        out = merge_tensors([models[n] for n in names], method, parameters=params, ids=names,
                            base_index=names.index(base) if base else None)
        results[case] = {"method": method, "inputs": names, "base": base, "parameters": params,
                         "output": out.tolist()}
    tensors = {k: v.tolist() for k, v in models.items()}
    OUT.write_text(json.dumps({"mergekit": "0.1.5", "torch": torch.__version__, "tensors": tensors,
                               "cases": results}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
