"""Block-level and model-level mixtures of Llama-family experts (Model-GLUE §5), as transformers models.

Both are registered with the Auto classes (``luminary.models.registry``), so a
folder written by ``luminary moe`` loads with ``AutoModelForCausalLM`` and no
remote code. Decoder layers are transformers' own ``LlamaDecoderLayer``.

- Block level (``luminary_block_moe``): layers below ``num_dense_layers`` are
  the base model's; from there on each layer is a mixture of E whole decoder
  layers. A gate per layer reads the pooled sequence state p (mean over valid
  tokens, or the first token): g = renormalised top-k of softmax(W_g p), and
  the layer's output is Σ_e g_e · layer_e(h).
- Model level (``luminary_model_moe``): one gate on the pooled state after
  layer ``num_dense_layers`` picks the expert models (top-k, k = 1 by default)
  that run the remaining layers, final norm and head; logits = Σ_e g_e · logits_e.

The gate acts per sequence, so these models recompute the whole sequence each
step (no KV cache; ``use_cache`` is off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, LlamaConfig
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import (
    LlamaDecoderLayer,
    LlamaPreTrainedModel,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
)


# Fields as class annotations: transformers 5.2x configs are dataclasses (fields), older 5.x
# ones take unknown keyword arguments as attributes; both read these.
class BlockMixtureConfig(LlamaConfig):
    model_type = "luminary_block_moe"
    num_experts: int = 2
    experts_per_token: int = 1
    num_dense_layers: int = 0
    pooling: str = "mean"


class ModelMixtureConfig(LlamaConfig):
    model_type = "luminary_model_moe"
    num_experts: int = 2
    experts_per_token: int = 1
    num_dense_layers: int = 0
    pooling: str = "mean"


def route(gate: nn.Linear, pooled: torch.Tensor, k: int) -> torch.Tensor:
    """(B, E) mixing weights: softmax, top-k, renormalised (zero outside the top k)."""
    probs = F.softmax(gate(pooled).float(), dim=-1)
    top, idx = probs.topk(k, dim=-1)
    return torch.zeros_like(probs).scatter(-1, idx, top / top.sum(-1, keepdim=True))


def pool(h: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "first":
        return h[:, 0]
    m = mask[..., None].to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


class _Trunk(LlamaPreTrainedModel):
    """Embeddings, dense layers, rotary tables and the attention mask shared by both mixtures."""

    def _trunk_init(self, config):
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_dense_layers))
        self.rotary_emb = LlamaRotaryEmbedding(config=config)

    def _prepare(self, input_ids, attention_mask):
        h = self.embed_tokens(input_ids)
        B, T = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=h.device)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        causal = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        allowed = causal[None, None] & attention_mask[:, None, None, :].bool()
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=h.device)[None, None]
        mask = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device).masked_fill(~allowed, torch.finfo(h.dtype).min)
        extra = dict(attention_mask=mask, position_ids=positions,
                     position_embeddings=self.rotary_emb(h, position_ids=positions))
        for layer in self.layers:
            h = layer(h, **extra)
        return h, attention_mask, extra


class BlockMoELayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(LlamaDecoderLayer(config, layer_idx) for _ in range(config.num_experts))
        self.k, self.pooling = config.experts_per_token, config.pooling

    def forward(self, h, token_mask, extra):
        weights = route(self.gate, pool(h, token_mask, self.pooling), self.k)  # (B, E)
        out = torch.zeros_like(h)
        for e, expert in enumerate(self.experts):
            rows = weights[:, e] > 0
            if rows.any():
                sub = {k: (v[rows] if k == "attention_mask" or k == "position_ids" else tuple(x[rows] for x in v))
                       for k, v in extra.items()}
                out[rows] += weights[rows, e, None, None].to(h.dtype) * expert(h[rows], **sub)
        return out


class BlockMixtureForCausalLM(_Trunk, GenerationMixin):
    config_class = BlockMixtureConfig

    def __init__(self, config: BlockMixtureConfig):
        super().__init__(config)
        self._trunk_init(config)
        self.moe_layers = nn.ModuleList(BlockMoELayer(config, i)
                                        for i in range(config.num_dense_layers, config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> CausalLMOutputWithPast:
        h, token_mask, extra = self._prepare(input_ids, attention_mask)
        for layer in self.moe_layers:
            h = layer(h, token_mask, extra)
        logits = self.lm_head(self.norm(h))
        return CausalLMOutputWithPast(loss=_loss(logits, labels), logits=logits)


class ExpertBranch(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i)
                                    for i in range(config.num_dense_layers, config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(self, h, extra):
        for layer in self.layers:
            h = layer(h, **extra)
        return self.lm_head(self.norm(h))


class ModelMixtureForCausalLM(_Trunk, GenerationMixin):
    config_class = ModelMixtureConfig

    def __init__(self, config: ModelMixtureConfig):
        super().__init__(config)
        self._trunk_init(config)
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(ExpertBranch(config) for _ in range(config.num_experts))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> CausalLMOutputWithPast:
        h, token_mask, extra = self._prepare(input_ids, attention_mask)
        weights = route(self.gate, pool(h, token_mask, self.config.pooling), self.config.experts_per_token)
        logits = None
        for e, expert in enumerate(self.experts):
            if (weights[:, e] > 0).any():
                part = weights[:, e, None, None].to(h.dtype) * expert(h, extra)
                logits = part if logits is None else logits + part
        return CausalLMOutputWithPast(loss=_loss(logits, labels), logits=logits)


def _loss(logits, labels):
    if labels is None:
        return None
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=-100)
