"""Depth up-scaling by stacking (Model-GLUE's model_stack_llm).

``stack``: all layers of model A, then all of B (then C ...); ``interleave``:
layer i of each model in turn (A₀ B₀ A₁ B₁ ...). Tensors outside the layers
(embeddings, final norm, head) are the mean over the models (a linear merge
with equal weights; a layer is the linear merge of its one input, an exact
copy). The result is a deeper model of the same family (its config's layer
count updated), planned and written as every merge is (``luminary.merge.merge``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from luminary.core.errors import LuminaryError
from luminary.merge.card import model_card
from luminary.merge.merge import write_folder
from luminary.merge.methods import get_method
from luminary.merge.plan import MergePlan, TensorTask
from luminary.merge.zoo import ModelFolder

MODES = ("stack", "interleave")


def layer_order(counts: list[int], mode: str) -> list[tuple[int, int]]:
    """(model, layer) for each output layer."""
    if mode == "stack":
        return [(m, i) for m, n in enumerate(counts) for i in range(n)]
    if len(set(counts)) > 1:
        raise LuminaryError(f"interleave needs models of equal depth (got {counts} layers)")
    return [(m, i) for i in range(counts[0]) for m in range(len(counts))]


def _task(name: str, inputs: list[tuple[str, str]], info) -> TensorTask:
    """One output tensor: the mean of its inputs (linear, equal weights); one input is copied exactly."""
    return TensorTask(name, None, tuple(inputs), {"normalize": True}, ({"weight": 1.0},) * len(inputs),
                      info.shape, False, info.dtype)


def run_stack(paths: list[str], out: str | Path, mode: str = "stack", overwrite: bool = False,
              write_card: bool = True) -> dict:
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
        keys = [str(m.path) for m in models]
        tasks = [_task(name, [(k, name) for k in keys], first.tensors.infos[name]) for name in first.outside]
        for j, (m, i) in enumerate(order):
            for suffix in models[m].layers[i]:
                src = models[m].layer_tensor(i, suffix)
                tasks.append(_task(first.layer_tensor(j, suffix), [(keys[m], src)], models[m].tensors.infos[src]))
        config = dict(first.config)
        key = next((k for k in ("num_hidden_layers", "n_layer", "num_layers") if k in config), "num_hidden_layers")
        config[key] = len(order)
        plan = MergePlan(get_method("linear"), dict(zip(keys, models)), tasks, keys[0], len(order), None, None,
                         tasks[0].out_dtype, 0)
        recipe = yaml.safe_dump({"mode": mode, "models": [str(p) for p in paths]}, sort_keys=False)
        card = model_card(Path(out).name, mode, [str(p) for p in paths], recipe, folders=paths,
                          extra_tags=("stack",), kind="stack") if write_card else None
        write_folder(out, plan, config, first.path, overwrite=overwrite, description=mode, card=card)
    finally:
        for m in models:
            m.close()
    return {"layers": len(order), "mode": mode, "order": order}
