"""Depth up-scaling by stacking (Model-GLUE's model_stack_llm).

``stack``: all layers of model A, then all of B (then C ...); ``interleave``:
layer i of each model in turn (A₀ B₀ A₁ B₁ ...). Tensors outside the layers
(embeddings, final norm, head) are the mean over the models. The result is a
deeper model of the same family (its config's layer count updated), written
tensor by tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir
from luminary.core.progress import progress_bar
from luminary.merge.merge import write_manifest_with
from luminary.merge.tensorio import StreamingWriter
from luminary.merge.vocab import write_tokenizer
from luminary.merge.zoo import ModelFolder

MODES = ("stack", "interleave")


def layer_order(counts: list[int], mode: str) -> list[tuple[int, int]]:
    """(model, layer) for each output layer."""
    if mode == "stack":
        return [(m, i) for m, n in enumerate(counts) for i in range(n)]
    if len(set(counts)) > 1:
        raise LuminaryError(f"interleave needs models of equal depth (got {counts} layers)")
    return [(m, i) for i in range(counts[0]) for m in range(len(counts))]


def run_stack(paths: list[str], out: str | Path, mode: str = "stack", overwrite: bool = False) -> dict:
    if mode not in MODES:
        raise LuminaryError(f"--mode: expected stack or interleave, got '{mode}'")
    if len(paths) < 2:
        raise LuminaryError("stack: give two or more models")
    models = [ModelFolder.open(p) for p in paths]
    try:
        first = models[0]
        for m in models[1:]:
            if m.architecture != first.architecture:
                raise LuminaryError(f"{m.path}: architecture {list(m.architecture)} differs from {first.path}'s")
            for name in first.outside:
                if name not in m.tensors or m.tensors.infos[name].shape != first.tensors.infos[name].shape:
                    raise LuminaryError(f"{m.path}: tensor '{name}' is missing or has another shape than in {first.path}")
            for i in m.layers:
                for suffix in m.layers[i]:
                    want = first.tensors.infos.get(first.layer_tensor(0, suffix))
                    if want is None or m.tensors.infos[m.layer_tensor(i, suffix)].shape != want.shape:
                        raise LuminaryError(f"{m.path}: layer tensor '{m.layer_tensor(i, suffix)}' does not fit "
                                            f"the layers of {first.path}; only one family can be stacked")
        order = layer_order([m.num_layers for m in models], mode)
        entries, jobs = [], []
        for name in first.outside:
            info = first.tensors.infos[name]
            entries.append((name, info.dtype, info.shape))
            jobs.append((name, None))
        for j, (m, i) in enumerate(order):
            for suffix in models[m].layers[i]:
                info = models[m].tensors.infos[models[m].layer_tensor(i, suffix)]
                entries.append((first.layer_tensor(j, suffix), info.dtype, info.shape))
                jobs.append((models[m].layer_tensor(i, suffix), m))
        config = dict(first.config)
        key = next((k for k in ("num_hidden_layers", "n_layer", "num_layers") if k in config), "num_hidden_layers")
        config[key] = len(order)
        with atomic_dir(out, overwrite=overwrite) as tmp:
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            write_tokenizer(tmp, first.path, [], None)
            writer = StreamingWriter(tmp, entries)
            with progress_bar(mode, len(jobs)) as bar:
                for (out_name, dtype, _), (src_name, m) in zip(entries, jobs):
                    if m is None:
                        tensor = torch.stack([x.tensors.get(src_name).float() for x in models]).mean(0).to(dtype)
                    else:
                        tensor = models[m].tensors.get(src_name)
                    writer.write(out_name, tensor)
                    bar.advance(1)
            writer.finish()
            write_manifest_with(tmp, writer.sha256)
    finally:
        for m in models:
            m.close()
    return {"layers": len(order), "mode": mode, "order": order}
