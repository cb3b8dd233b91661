"""``run_merge``: a config in, a model folder out (written whole or not at all).

The output folder holds the merged weights (sharded safetensors), the
reference model's config (layer count, dtype and vocabulary size updated), its
generation config and tokenizer (or the joined vocabulary's), the resolved
config as ``merge_config.yaml`` and ``MANIFEST.sha256``. The shards' digests
are computed while they are written, so the manifest costs no second read.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from luminary.core.io import MANIFEST, atomic_dir, atomic_write_text, sha256_file
from luminary.merge.config import MergeConfig
from luminary.merge.executor import execute
from luminary.merge.plan import MergePlan, build_plan
from luminary.merge.tensorio import StreamingWriter
from luminary.merge.vocab import write_tokenizer
from luminary.merge.zoo import open_models

DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16",
               "torch.float64": "float64"}


def output_config(plan: MergePlan) -> dict[str, Any]:
    config = dict(plan.models[plan.reference].config)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if key in config:
            config[key] = plan.num_layers
            break
    if plan.vocab is not None:
        config["vocab_size"] = plan.vocab.size
    dtype = DTYPE_NAMES[str(plan.out_dtype)]
    for key in ("torch_dtype", "dtype"):
        if key in config:
            config[key] = dtype
    return config


def write_model(plan: MergePlan, folder: Path, config: MergeConfig | None = None) -> dict[str, str]:
    """Write the merged model into an existing (temporary) folder; returns the shard digests."""
    ref = plan.models[plan.reference]
    (folder / "config.json").write_text(json.dumps(output_config(plan), indent=2) + "\n")
    if (ref.path / "generation_config.json").is_file():
        shutil.copy2(ref.path / "generation_config.json", folder / "generation_config.json")
    source = plan.vocab.tokenizer_from if plan.vocab else ref.path
    write_tokenizer(folder, source, plan.vocab.added_tokens if plan.vocab else [],
                    config.chat_template if config else None)
    entries = [(t.name, plan.out_dtype, t.shape) for t in plan.tasks]
    writer = StreamingWriter(folder, entries, config.max_shard_size if config else 5 * 10**9)
    try:
        execute(plan, writer.write)
        writer.finish()
    finally:
        writer.abort()
    if config is not None:
        (folder / "merge_config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True),
                                                                 sort_keys=False))
    return writer.sha256


def write_manifest_with(folder: Path, known: dict[str, str]) -> None:
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST:
            lines.append(f"{known.get(rel) or sha256_file(path)}  {rel}")
    atomic_write_text(folder / MANIFEST, "\n".join(lines) + "\n")


def run_merge(config: MergeConfig, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Merge as ``config`` says into the folder ``out``; returns a small summary."""
    start = time.perf_counter()
    models = open_models(config.referenced_models())
    try:
        plan = build_plan(config, models)
        with atomic_dir(out, overwrite=overwrite) as tmp:
            digests = write_model(plan, tmp, config)
            write_manifest_with(tmp, digests)
    finally:
        for m in models.values():
            m.close()
    return {"out": str(out), "method": config.merge_method, "tensors": len(plan.tasks), "layers": plan.num_layers,
            "seconds": round(time.perf_counter() - start, 3)}
