"""Model Stock (Jang et al. 2024, arXiv:2403.19522).

With offsets dᵢ = θᵢ − θ_base (flattened, or per row with ``filter_wise``),
cos = the mean over pairs i < j of ⟨dᵢ, dⱼ⟩ / max(‖dᵢ‖‖dⱼ‖, 1e-6) (clamped
to [−1, 1]), N the number of fine-tuned models:

    t = N·cos / (1 + (N − 1)·cos),  θ = t·mean(θᵢ) + (1 − t)·θ_base,

and t = 0 (the base) where |1 + (N − 1)·cos| < 1e-6.
"""

from __future__ import annotations

import torch

from luminary.merge.methods.base import MergeMethod, Param


class ModelStock(MergeMethod):
    def __init__(self):
        super().__init__(name="model_stock", title="Model Stock", paper="https://arxiv.org/abs/2403.19522",
                         base="required", min_models=2, params=(Param("filter_wise", bool, "shared", default=False),))

    def merge(self, base, tensors, shared, per_model, generator):
        shape = base.shape
        if shared["filter_wise"]:
            w0 = base.unsqueeze(0) if base.dim() == 1 else base
            ws = [w.unsqueeze(0) if w.dim() == 1 else w for w in tensors]
        else:
            w0, ws = base.reshape(-1), [w.reshape(-1) for w in tensors]
        offsets = [w - w0 for w in ws]  # fresh buffers: the inputs are left as they are (one may be the base)
        norms = [torch.norm(d, dim=-1) for d in offsets]
        n = len(ws)
        cosines = []
        for i in range(n):
            for j in range(i + 1, n):
                last = (i, j) == (n - 2, n - 1)  # the last use of both offsets: the product goes in place
                product = offsets[i].mul_(offsets[j]) if last else offsets[i] * offsets[j]
                cosines.append((product.sum(dim=-1) / (norms[i] * norms[j]).clamp(min=1e-6)).clamp(-1, 1))
                del product
        cos = torch.stack(cosines).mean(dim=0).unsqueeze(-1)
        denominator = 1 + (n - 1) * cos
        singular = denominator.abs() < 1e-6
        t = torch.where(singular, torch.zeros_like(cos), n * cos / torch.where(singular, torch.ones_like(cos), denominator))
        # t·mean(θᵢ) + (1 − t)·θ_base in the two offset buffers, spent now: the same products and sums as
        # written out, without a fresh tensor for each (each would be mapped and faulted in anew)
        out, scratch = offsets[-1], offsets[-2]
        torch.add(ws[0], ws[1], out=out)
        for w in ws[2:]:
            out.add_(w)
        out.div_(n).mul_(t)
        out.add_(torch.mul(w0, 1 - t, out=scratch))
        return out.reshape(shape)
