"""The Predictor: ``pred_fn`` over many examples, outputs in input order.

Examples are split among data-parallel ranks in contiguous parts; each part is
cut into batches and the last batch is padded by repeating its last example
(Redco's behaviour), so every rank runs the same number of forwards. Padding
is dropped and the parts are gathered back in order.

``length_key``: when given, examples are sorted by that length before
batching (batches of similar length need less padding) and the outputs are put
back into the input order.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from luminary.train.deployer import Deployer


def _split_outputs(preds: Any, n: int) -> list[Any]:
    if isinstance(preds, torch.Tensor):
        return list(preds.detach().cpu().unbind(0))[:n]
    if isinstance(preds, dict):
        parts = {k: _split_outputs(v, n) for k, v in preds.items()}
        return [{k: parts[k][i] for k in parts} for i in range(n)]
    return list(preds)[:n]


class Predictor:
    def __init__(
        self,
        deployer: Deployer,
        collate_fn: Callable[[list[Any]], Any],
        pred_fn: Callable[[torch.nn.Module, Any], Any],
        output_fn: Callable[[Any], list[Any]] | None = None,
    ):
        self.deployer = deployer
        self.collate_fn = collate_fn
        self.pred_fn = pred_fn
        self.output_fn = output_fn

    def predict(
        self,
        model: torch.nn.Module,
        examples: Sequence[Any],
        per_device_batch_size: int,
        length_key: Callable[[Any], int] | None = None,
    ) -> list[Any]:
        d = self.deployer
        n = len(examples)
        if n == 0:
            return []
        order = sorted(range(n), key=lambda i: length_key(examples[i])) if length_key else list(range(n))
        per_rank = math.ceil(n / d.dp_size)
        mine = order[d.dp_rank * per_rank : (d.dp_rank + 1) * per_rank]
        n_batches = math.ceil(per_rank / per_device_batch_size)
        outputs: list[Any] = []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for b in range(n_batches):
                ids = mine[b * per_device_batch_size : (b + 1) * per_device_batch_size]
                real = len(ids)
                chunk = [examples[i] for i in ids] or [examples[order[-1]]]
                chunk = chunk + [chunk[-1]] * (per_device_batch_size - len(chunk))
                batch = d.to_device(self.collate_fn(chunk))
                with d.forward_context():
                    preds = self.pred_fn(model, batch)
                preds = self.output_fn(preds) if self.output_fn else _split_outputs(preds, len(chunk))
                outputs.extend(list(preds)[:real])
        if was_training:
            model.train()
        gathered = [o for part in d.all_gather_objects(outputs) for o in part]
        result: list[Any] = [None] * n
        for position, out in zip(order, gathered):
            result[position] = out
        return result
