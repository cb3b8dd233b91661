"""Linear + cross-entropy in token chunks, never holding the whole logits tensor.

A causal LM's last step is ``logits = s · h Wᵀ`` (N tokens × V vocabulary)
followed by cross-entropy. At N = 16k tokens and V = 32k, the float32 logits
and their gradient are 2 GiB each, more than the rest of a 1B model's
activations at that point. Here the N tokens go through in chunks of C, and
each chunk's gradients are formed at once, while its logits are in memory
(the approach of Liger-Kernel's fused linear cross-entropy; Hsu et al. 2024,
arXiv:2410.10989):

    z = s · h_c Wᵀ                       (C × V, float32)
    ℓ_i = logsumexp(z_i) − z_{i, y_i}    (0 where y_i is ignored)
    G = s · (softmax(z) − onehot(y))     (rows of ignored targets are 0)
    ∂L/∂h_c = G W,   ∂L/∂W += Gᵀ h_c

so peak extra memory is one C × V block plus the N × d and V × d gradient
buffers. The backward pass only scales the stored gradients by the incoming
one. Matrix products run in whatever autocast dtype is active, as the
unfused ``lm_head`` would; log-sum-exp and softmax are float32 as in
``token_cross_entropy``.
"""

from __future__ import annotations

import torch

from luminary.core.errors import LuminaryError
from luminary.train.labels import IGNORE, shift_labels

LOGITS_PER_CHUNK = 1 << 25  # float32 elements in one chunk's logits: 128 MiB


def chunk_tokens(n_tokens: int, vocab: int) -> int:
    """Tokens per chunk: as many as keep a chunk's logits within ``LOGITS_PER_CHUNK``."""
    return max(1, min(n_tokens, LOGITS_PER_CHUNK // vocab))


def _chunk_loss_and_grad(h, weight, targets, scale, want_grad):
    """Summed loss of one chunk, and its logits' gradient ``G`` (None unless wanted)."""
    z = h @ weight.t()
    z = z.float() if z.element_size() < 4 else z  # at least float32, as token_cross_entropy
    if scale != 1.0:
        z.mul_(scale)
    valid = targets != IGNORE
    safe = torch.where(valid, targets, 0)
    lse = torch.logsumexp(z, dim=-1)
    picked = z.gather(1, safe[:, None]).squeeze(1)
    loss = ((lse - picked) * valid).sum()
    if not want_grad:
        return loss, None
    g = z.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
    g[torch.arange(len(safe), device=g.device), safe] -= 1.0
    g.mul_(valid.to(g.dtype)[:, None] * scale)
    return loss, g


def _over_chunks(hidden, weight, targets, scale, chunk, grad_h=None, grad_w=None) -> torch.Tensor:
    """The summed loss, chunk by chunk; fills ``grad_h`` and adds into ``grad_w`` where given."""
    total = torch.zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
    want_grad = grad_h is not None or grad_w is not None
    device = hidden.device.type  # the gradient products run in the autocast dtype, as lm_head's would
    product_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    for start in range(0, hidden.shape[0], chunk):
        h = hidden[start : start + chunk]
        loss, g = _chunk_loss_and_grad(h, weight, targets[start : start + chunk], scale, want_grad)
        total += loss
        if want_grad:
            g = g.to(product_dtype)
            if grad_h is not None:
                grad_h[start : start + chunk] = g @ weight
            if grad_w is not None:
                grad_w += g.t() @ h
    return total


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, scale, chunk):
        ctx.weight_dtype = weight.dtype
        grad_h = torch.empty_like(hidden) if hidden.requires_grad else None
        acc = torch.promote_types(weight.dtype, torch.float32)  # float32 at least, float64 stays
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if weight.requires_grad else None
        total = _over_chunks(hidden, weight, targets, scale, chunk, grad_h, grad_w)
        ctx.save_for_backward(grad_h, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        grad_h = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        grad_w = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return grad_h, grad_w, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    scale: float = 1.0,
    chunk: int | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of ``scale · hidden @ weight.T`` against ``targets``.

    hidden: (N, d); weight: (V, d); targets: (N,) with ``-100`` for no target.
    Equal, up to float rounding, to
    ``F.cross_entropy((scale * hidden @ weight.T).float(), targets, ignore_index=-100, reduction="sum")``.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} do not multiply")
    chunk = chunk or chunk_tokens(hidden.shape[0], weight.shape[0])
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, float(scale), chunk)
    return _over_chunks(hidden, weight, targets, scale, chunk)  # evaluation: no gradient buffers


def _output_head(model: torch.nn.Module,
                 field: str = "fused_cross_entropy") -> tuple[torch.nn.Module, torch.Tensor, float]:
    """The decoder body, the output projection's weight, and the logit multiplier."""
    config = model.config
    if getattr(config, "final_logit_softcapping", None):
        raise LuminaryError(f"{field}: {config.model_type} soft-caps its logits; set it to false")
    head = model.get_output_embeddings()
    body = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if head is None or body is None or getattr(head, "bias", None) is not None:
        raise LuminaryError(f"{field}: {type(model).__name__} has no bias-free output head to fuse")
    if type(head.weight).__name__ == "DTensor":
        raise LuminaryError(f"{field}: not supported on a sharded model (tp_size > 1 or torchrun); set it to false")
    return body, head.weight, float(getattr(config, "output_logits_scale", 1.0))


def check_fusable(model: torch.nn.Module, field: str = "fused_cross_entropy") -> None:
    """Refuse a model whose logits are not ``scale · body(x) @ Wᵀ``.

    Some causal LMs change the logits after the output projection (Cohere
    multiplies them by ``logit_scale``, Granite divides by ``logits_scaling``);
    the fused head would silently train them on another loss. A forward pass
    over eight tokens, both ways, decides.
    """
    body, weight, scale = _output_head(model, field)
    vocab = weight.shape[0]
    ids = (torch.arange(8, device=weight.device) * 7919 % vocab)[None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(input_ids=ids).logits.float()
            ours = (body(input_ids=ids).last_hidden_state @ weight.t()).float() * scale
    finally:
        model.train(was_training)
    if ours.shape != ref.shape or not torch.allclose(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max())):
        raise LuminaryError(f"{field}: {type(model).__name__}'s logits are not its output projection of the "
                            "last hidden state times a constant; set it to false")


def fused_causal_lm_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                         attention_mask: torch.Tensor | None = None,
                         chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token loss and target count, as ``token_cross_entropy``, through ``linear_cross_entropy``.

    Position t predicts label t + 1; the last position of each row gets no
    target, which keeps the hidden states contiguous (no copy of ``h[:, :-1]``).
    """
    body, weight, scale = _output_head(model)
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
    hidden = body(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state
    targets = shift_labels(labels)
    count = (targets != IGNORE).sum()
    loss = linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1), scale, chunk)
    return loss / count.clamp(min=1), count
