"""Rebuild and show the batch of any step of a pretraining run.

The batch comes from the recipe alone (the run's own shards, no replay); its
hash is computed exactly as the Trainer logged it, so the two can be compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from luminary.core.errors import LuminaryError
from luminary.core.runs import read_metrics
from luminary.data.mixture import BLENDS, blend_drift
from luminary.train.data import batch_hash, example_digest


def inspect_step(run_dir: str | Path, step: int) -> dict[str, Any]:
    from luminary.pretrain.runner import open_run

    run_dir = Path(run_dir)
    recipe, data = open_run(run_dir)
    mixture = data.mixture
    if not 0 <= step < mixture.total_steps:
        raise LuminaryError(f"--step: {step} is outside the run's steps 0..{mixture.total_steps - 1}")
    batch = mixture.batch(step)
    digest = batch_hash([example_digest(e) for e in batch])
    logged = {r["step"]: r.get("batch_sha256") for r in read_metrics(run_dir / "metrics.jsonl")}
    rows = []
    for k, example in enumerate(batch):
        loc = mixture.locate(step * mixture.global_batch + k)
        text = data.tokenizer.decode(example["input_ids"][:40].tolist(), skip_special_tokens=False)
        rows.append({"index": loc.index, "source": example["source"], "epoch": loc.epoch, "window": loc.window,
                     "excerpt": text})
    p = mixture.phase_of_step(step)
    phase = mixture.phases[p]
    n = phase.steps * mixture.global_batch
    drift = {rule: round(blend_drift(np.asarray(phase.weights), blend(np.asarray(phase.weights), n)[0]), 4)
             for rule, blend in BLENDS.items()}
    return {
        "step": step,
        "phase": phase.name,
        "blend": mixture.blend_rule,
        "blend_drift": drift,  # max |c_d(j) − w_d·j| over the phase, under each rule
        "batch_sha256": digest,
        "logged_sha256": logged.get(step),
        "samples": rows,
    }
