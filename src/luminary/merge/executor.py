"""Run a merge plan tensor by tensor: read, merge, write, with reading and writing overlapped.

At any moment memory holds the inputs of the task being merged, the inputs of
the next task (read ahead on a thread) and the output being written (on
another thread): a few tensors, never the model. Reads are positioned reads
and writes go straight into pre-headed shards (``luminary.merge.tensorio``).

glibc's allocator raises its mmap threshold after the first large free and
then serves tensor-sized blocks from per-thread heaps that it rarely returns;
over hundreds of tensors read on one thread and freed on another the resident
size creeps up by tens of tensors. :func:`return_large_blocks` fixes the
threshold (512 KiB), so every tensor buffer is its own mapping, returned to the
system when freed (tests/merge/test_merge.py measures the peak).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import torch

from luminary.core.progress import progress_bar
from luminary.merge.methods.task_arithmetic import derive_generator
from luminary.merge.plan import MergePlan, TensorTask

Sink = Callable[[str, torch.Tensor], None]
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@functools.cache
def return_large_blocks(threshold: int = 512 * 1024) -> bool:
    """Make glibc map (and unmap on free) every block above ``threshold``; False where not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def load_inputs(plan: MergePlan, task: TensorTask) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """The base tensor and the input tensors of one task, in the compute dtype, vocabulary joined."""
    sources = ([task.base] if task.base else []) + list(task.inputs)
    tensors = {model: plan.models[model].tensors.get(name) for model, name in sources}
    if task.vocab:
        tensors = plan.vocab.apply(tensors)
    if plan.dtype is not None or plan.device != "cpu":
        tensors = {m: t.to(plan.device, plan.dtype or t.dtype) for m, t in tensors.items()}
    base = tensors[task.base[0]] if task.base else None
    return base, [tensors[model] for model, _ in task.inputs]


def merge_task(plan: MergePlan, task: TensorTask, base, inputs) -> torch.Tensor:
    generator = derive_generator(plan.seed, task.name)
    out = (task.method or plan.method).merge(base, inputs, task.shared, list(task.per_model), generator)
    return out.to("cpu", task.out_dtype or plan.out_dtype).contiguous()


def execute(plan: MergePlan, sink: Sink, description: str = "merging") -> None:
    """Merge every task of ``plan`` and hand each result to ``sink`` in plan order."""
    tasks = plan.tasks
    return_large_blocks()
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer, \
            progress_bar(description, len(tasks)) as bar:
        pending_read: Future | None = reader.submit(load_inputs, plan, tasks[0]) if tasks else None
        pending_write: Future | None = None
        for i, task in enumerate(tasks):
            base, inputs = pending_read.result()
            pending_read = reader.submit(load_inputs, plan, tasks[i + 1]) if i + 1 < len(tasks) else None
            out = merge_task(plan, task, base, inputs)
            del base, inputs
            if pending_write is not None:
                pending_write.result()
            pending_write = writer.submit(sink, task.name, out)
            del out
            bar.advance(1, info=task.name)
        if pending_write is not None:
            pending_write.result()
