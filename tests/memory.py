"""What a block of torch code allocates, read through the dispatcher (for memory-bound tests)."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation returns, in elements.

    ``by_storage``: count the elements of the memory behind it, so that a view counts as the tensor it
    views (a zero-stride (2, n) view allocates nothing); else its own ``numel``.
    """

    def __init__(self, by_storage: bool = False):
        super().__init__()
        self.by_storage = by_storage
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                size = t.untyped_storage().nbytes() // t.element_size() if self.by_storage else t.numel()
                self.largest = max(self.largest, size)
        return out
