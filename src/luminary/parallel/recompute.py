"""Activation checkpointing: keep each block's input, recompute its inside in backward.

A decoder block saves a dozen activations for its backward pass (norm
outputs, q/k/v, attention output, the MLP's up and gate projections); at
sequence T and width d that is O(T·d·k) per block with k ≈ 10–20. With
checkpointing it saves only its input (T·d) and runs its forward a second
time during backward: about a third more compute for a block's memory cut
by an order of magnitude (Chen et al. 2016, arXiv:1604.06174; torchtitan's
``activation_checkpoint.mode: full``).

Applied from outside, as parallelism is: each block (an element of the
outermost ModuleLists, the same units FSDP2 shards) gets a subclass of its
own class whose ``forward`` runs under non-reentrant
``torch.utils.checkpoint``. Parameter names, ``state_dict`` and
``save_pretrained`` are unchanged; ``copy.deepcopy`` keeps the behaviour.
Only training forwards with gradients are checkpointed; evaluation and
generation run the block as it is.

Why not torch's ``checkpoint_wrapper`` (``torch.distributed.algorithms.
_checkpoint``): it puts each block inside a ``CheckpointWrapper``, so every
parameter's name gains ``_checkpoint_wrapped_module.``; its hooks mend only
``state_dict``. The tensor-parallel plan, FSDP2's units, optimizer state
keyed by name and the resume checks all read ``named_parameters``, and a run
with and without checkpointing must resume from each other's checkpoints.
The recomputation itself is torch's (``torch.utils.checkpoint``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from luminary.core.errors import LuminaryError
from luminary.core.modules import subclass_blocks

_SUBCLASSES: dict[type, type] = {}


def _is_cache(value) -> bool:
    from transformers.cache_utils import Cache

    return isinstance(value, Cache)


def _drop_empty_caches(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """An empty KV cache only collects this forward's keys and values; replaying the block would
    write them twice. Training needs no cache, so an empty one is passed as None; a filled one
    (real past tokens) is an error."""
    def clean(value):
        if not _is_cache(value):
            return value
        if value.get_seq_length() > 0:
            raise LuminaryError("activation_checkpointing: a training forward got a filled KV cache; "
                                "call the model with use_cache=False")
        return None

    return tuple(clean(a) for a in args), {k: clean(v) for k, v in kwargs.items()}


def _checkpointed(cls: type) -> type:
    def forward(self, *args, **kwargs):
        inner = super(sub, self).forward
        if not (self.training and torch.is_grad_enabled()):
            return inner(*args, **kwargs)
        args, kwargs = _drop_empty_caches(args, kwargs)
        return checkpoint(inner, *args, use_reentrant=False, **kwargs)

    sub = type(f"Checkpointed{cls.__name__}", (cls,), {"forward": forward, "__module__": cls.__module__})
    return sub


def apply_activation_checkpointing(model: nn.Module) -> list[str]:
    """Checkpoint every block of ``model`` in place; returns the blocks' names."""
    return subclass_blocks(model, _checkpointed, _SUBCLASSES, "activation_checkpointing")


def is_checkpointed(block: nn.Module) -> bool:
    return isinstance(block, tuple(_SUBCLASSES.values()))



def compile_around_checkpoints(fn):
    """``torch.compile(fn)`` for a function that runs checkpointed blocks, traced as one graph.

    Dynamo traces a checkpointed block as a higher-order op and breaks the
    graph at any write to state outside it, because eager checkpointing would
    replay that write when it recomputes the block in backward. Since
    transformers 5.25 the attention layers of most families (through the
    ``kernels`` package's ``use_kernelized_func``) set a context variable on
    entry and restore it on exit: a write with no net effect, yet five graph
    breaks for a five-block Llama. The compiled function therefore traces with
    dynamo's ``skip_fwd_side_effects_in_bwd_under_checkpoint``: such writes run
    once, in forward, as they do without checkpointing. The flag is set only
    while ``fn`` runs, never globally, and is skipped on a torch without it.
    """
    import functools

    import torch._dynamo

    compiled = torch.compile(fn)
    flag = "skip_fwd_side_effects_in_bwd_under_checkpoint"
    if not hasattr(torch._dynamo.config, flag):
        return compiled

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch._dynamo.config.patch(**{flag: True}):
            return compiled(*args, **kwargs)

    return run
