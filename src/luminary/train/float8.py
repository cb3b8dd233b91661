"""Float8 training for the blocks' linear layers, with dynamic tensorwise scaling.

Each matrix product of a converted linear layer runs on float8 operands
through ``torch._scaled_mm`` (H100-class GPUs do these at twice the bf16
rate). The recipe is the "tensorwise" one of Micikevicius et al. 2022,
"FP8 Formats for Deep Learning" (arXiv:2209.05433), as torchao's
Float8Linear uses it:

    s_t = F_max / max(|t|)          one scale per tensor, from its current amax
    t₈  = cast(clamp(s_t · t, ±F_max))
    y   = (x₈ W₈ᵀ) / (s_x s_W)                                   forward, e4m3
    ∂x  = (g₈ W₈) / (s_g s_W),   ∂W = (g₈ᵀ x₈) / (s_g s_x)       backward, g in e5m2

with F_max = 448 for e4m3 (activations, weights) and 57344 for e5m2
(gradients, which need the range more than the precision). The float32
master weights, the optimizer and everything outside the blocks' linear
layers (embeddings, norms, attention's softmax, the output head) are
unchanged. Layers are converted in place by giving them a subclass of
``nn.Linear``, so parameter names and checkpoints stay as they were.

On a GPU where torchao is installed (``pip install 'luminary[float8]'``), the
layers are torchao's ``Float8Linear`` (``convert_to_float8_training``, the same
recipe, kept by its authors for torch.compile and FSDP2); luminary's own layer
below is the fallback, and the one a CPU run uses. The two cast bit for bit
alike and multiply alike to float32 summation order
(``tests/train/test_float8_torchao.py``).

``_scaled_mm`` on CUDA wants the first operand row-major, the second
column-major, and the inner and output dimensions divisible by 16; the
operands here are laid out that way on every device (checked, so the CPU
tests hold the GPU's contract), and the token dimension is zero-padded to a
multiple of 16, since it is the inner dimension of the weight gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from luminary.core.errors import LuminaryError

E4M3 = torch.float8_e4m3fn
E5M2 = torch.float8_e5m2
EPS = 1e-12


def to_float8(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` in float8 scaled to fill the format, and the inverse scale ``1/s_t`` (float32 scalar).

    s_t is the float64 quotient rounded once to float32, as torchao's ``amax_to_scale``: torch computes
    ``fmax / amax`` in float32 as ``fmax · (1/amax)``, two roundings, one ulp off at times, and an
    entry that lands on a rounding boundary of the format then casts to its neighbour.
    """
    fmax = torch.finfo(dtype).max
    amax = t.detach().abs().amax().double()
    scale = (fmax / amax.clamp(min=EPS)).float()
    t8 = (t.float() * scale).clamp(-fmax, fmax).to(dtype)
    return t8, scale.reciprocal()


def _column_major(t: torch.Tensor) -> torch.Tensor:
    """The same matrix stored column by column."""
    return t.t().contiguous().t()


def _pad_rows(t: torch.Tensor, multiple: int = 16) -> torch.Tensor:
    extra = -t.shape[0] % multiple
    return F.pad(t, (0, 0, 0, extra)) if extra else t


def scaled_mm(a: torch.Tensor, b: torch.Tensor, inv_a: torch.Tensor, inv_b: torch.Tensor,
              out_dtype: torch.dtype) -> torch.Tensor:
    """``(a · inv_a) @ (b · inv_b)`` on float8 operands, holding CUDA's layout contract everywhere."""
    if a.stride(1) != 1 or b.stride(0) != 1:
        raise RuntimeError("scaled_mm: the first operand must be row-major and the second column-major")
    if a.shape[1] % 16 or b.shape[1] % 16:
        raise RuntimeError(f"scaled_mm: dimensions {tuple(a.shape)} @ {tuple(b.shape)} are not multiples of 16")
    if a.device.type == "cpu":
        # the CPU's _scaled_mm is a reference loop (2 s for 384 × 256 × 688); float8 values and
        # their products are exact in float32, so this is the same product, summed in another order
        return ((a.float() * inv_a) @ (b.float() * inv_b)).to(out_dtype)
    return torch._scaled_mm(a, b, scale_a=inv_a, scale_b=inv_b, out_dtype=out_dtype)


class _Float8Matmul(torch.autograd.Function):
    """``x @ wᵀ`` for x (M, K) and w (N, K) in float8, gradients in float8 too."""

    @staticmethod
    def forward(ctx, x, w, out_dtype):
        m = x.shape[0]
        # the token dimension M is the inner one of the weight gradient: zero rows up to a
        # multiple of 16 (they add nothing), padded before the cast as float8 has no pad kernel
        x8, inv_x = to_float8(_pad_rows(x), E4M3)
        w8, inv_w = to_float8(w, E4M3)
        ctx.save_for_backward(x8, inv_x, w8, inv_w)
        ctx.dtypes, ctx.m = (x.dtype, w.dtype), m
        return scaled_mm(x8, w8.t(), inv_x, inv_w, out_dtype)[:m]

    @staticmethod
    def backward(ctx, grad):
        x8, inv_x, w8, inv_w = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        g8, inv_g = to_float8(_pad_rows(grad.contiguous()), E5M2)
        needs_x, needs_w, _ = ctx.needs_input_grad
        grad_x = scaled_mm(g8, _column_major(w8), inv_g, inv_w, x_dtype)[: ctx.m] if needs_x else None
        # a frozen weight (LoRA's base layer) takes no gradient: its product is skipped
        grad_w = (scaled_mm(g8.t().contiguous(), _column_major(x8), inv_g, inv_x, torch.float32).to(w_dtype)
                  if needs_w else None)
        return grad_x, grad_w, None


class Float8Linear(nn.Linear):
    """``nn.Linear`` whose product runs in float8 while training with gradients."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        device = x.device.type
        out_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        y = _Float8Matmul.apply(x.reshape(-1, x.shape[-1]), self.weight, out_dtype)
        y = y.reshape(*x.shape[:-1], -1)
        return y + self.bias.to(y.dtype) if self.bias is not None else y


def torchao_converter():
    """torchao's ``convert_to_float8_training``, or None where torchao is not installed or does not
    import with this torch (a build for another release)."""
    try:
        from torchao.float8 import convert_to_float8_training
    except Exception:  # noqa: BLE001 -- ImportError, or an incompatible build's own error
        return None
    return convert_to_float8_training


def adapter_layer(name: str) -> bool:
    """A LoRA adapter's own layer (peft's ``lora_A`` / ``lora_B`` / ``lora_embedding_*``), by its name."""
    return any(part.startswith("lora_") for part in name.split("."))


def float8_layers(model: nn.Module) -> list[str]:
    """The ``nn.Linear`` layers inside the model's blocks whose widths are multiples of 16, by name.

    Under peft the blocks' layers are the ``base_layer`` of each ``lora.Linear``, frozen: they
    multiply in float8. The adapter's ``lora_A`` (r × in) and ``lora_B`` (out × r) stay in full
    precision: they are what trains and what is exported, their products are r/in of the base's
    (float8 would save next to nothing), and a rank that is not a multiple of 16 would not fit
    ``_scaled_mm`` anyway.
    """
    from luminary.core.modules import list_blocks

    blocks = list_blocks(model)
    if not blocks:
        raise LuminaryError(f"float8: {type(model).__name__} has no list of blocks to convert")
    return [f"{block}.{name}" for block in blocks for name, module in model.get_submodule(block).named_modules()
            if type(module) is nn.Linear and module.in_features % 16 == 0 and module.out_features % 16 == 0
            and not adapter_layer(name)]


def convert_to_float8(model: nn.Module, device: torch.device | str | None = None,
                      backend: Literal["auto", "torchao", "luminary"] = "auto") -> list[str]:
    """Give every ``nn.Linear`` inside the model's blocks the float8 product; returns their names.

    Layers whose input or output width is not a multiple of 16 stay as they are.
    ``device``: where it will train; a CUDA device must do float8 products (sm89+).
    ``backend``: ``auto`` takes torchao's Float8Linear (the same tensorwise recipe,
    ``tests/train/test_float8_torchao.py``) on a GPU where torchao is installed, and
    :class:`Float8Linear` otherwise (on the CPU torch's float8 product is a reference loop,
    which :func:`scaled_mm` replaces by the same product in float32).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        raise LuminaryError("float8: needs a GPU of compute capability 8.9 or later (Ada, Hopper)")
    names = float8_layers(model)
    converter = torchao_converter() if backend != "luminary" else None
    if backend == "torchao" and converter is None:
        raise LuminaryError("float8: torchao is not installed or does not import with this torch "
                            "(pip install 'luminary[float8]')")
    if converter is not None and (backend == "torchao" or device.type == "cuda"):
        chosen = set(names)
        converter(model, module_filter_fn=lambda module, fqn: fqn in chosen)
        return names
    for name in names:
        model.get_submodule(name).__class__ = Float8Linear
    return names
