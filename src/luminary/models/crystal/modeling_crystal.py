"""The Crystal decoder (LLM360 CrystalCoder) as a transformers PreTrainedModel.

Pre-norm decoder blocks: x + Attn(LN(x)), then x + SwiGLU(LN(x)). What differs
from LLaMA is listed in ``configuration_crystal.py``; the numbers come from the
CrystalCoder training parameters (``specs/crystal.md``). Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` with ``scale=1/d_head``
(μP). The file is the model and nothing else: no device, distribution or
training logic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_crystal import CrystalConfig  # relative: the folder's own copy under trust_remote_code

try:  # transformers >= 5: init functions that skip weights already loaded
    from transformers import initialization as init
except ImportError:  # pragma: no cover
    init = nn.init

# transformers renamed the cache field of model outputs from ``past_key_values``
# to ``cache`` during 5.x; luminary supports both.
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): GPT-J's pairs of neighbours."""
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def apply_partial_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         interleaved: bool = False) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` dimensions of each head; pass the rest.

    x: (B, H, T, D); cos, sin: (B, 1, T, R) with R <= D, laid out as the
    rotation pairs them (``CrystalRotary``).
    """
    r = cos.shape[-1]
    x_rot, x_pass = x[..., :r], x[..., r:]
    x_rot = x_rot * cos + (rotate_every_two(x_rot) if interleaved else rotate_half(x_rot)) * sin
    return torch.cat((x_rot, x_pass), dim=-1)


class CrystalRotary(nn.Module):
    """cos/sin tables for ``rotary_dim`` dimensions: θ_i = base^(−2i/R).

    The frequencies are computed in each call rather than kept as a buffer, so a
    model built on the meta device and then loaded needs no special init.
    """

    def __init__(self, config: CrystalConfig):
        super().__init__()
        self.dim, self.base = config.rotary_dim, config.rope_theta
        self.interleaved = getattr(config, "rotary_interleaved", False)

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        device = position_ids.device
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=torch.float32, device=device) / self.dim))
        freqs = position_ids[:, :, None].float() * inv_freq[None, None, :]  # (B, T, R/2)
        # halves: (f0 ... f(R/2-1), f0 ... f(R/2-1)); interleaved: (f0, f0, f1, f1, ...)
        emb = freqs.repeat_interleave(2, dim=-1) if self.interleaved else torch.cat((freqs, freqs), dim=-1)
        emb = emb[:, None]  # (B, 1, T, R)
        return emb.cos().to(dtype), emb.sin().to(dtype)


class CrystalAttention(nn.Module):
    def __init__(self, config: CrystalConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        d, bias = config.hidden_size, config.use_bias
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, d, bias=bias)
        self.v_proj = nn.Linear(d, d, bias=bias)
        self.o_proj = nn.Linear(d, d, bias=bias)
        # μP: scores q·k / d_head instead of q·k / √d_head.
        self.scaling = 1.0 / self.head_dim if config.scale_qk_dot_by_d else self.head_dim**-0.5
        self.interleaved = getattr(config, "rotary_interleaved", False)

    def forward(self, x, cos, sin, mask, cache):
        B, T, _ = x.shape
        shape = (B, T, -1, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        q, k = apply_partial_rotary(q, cos, sin, self.interleaved), apply_partial_rotary(k, cos, sin, self.interleaved)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, scale=self.scaling)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)
        y = y.transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(y)


class CrystalMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) ⊙ up(x)), with biases."""

    def __init__(self, config: CrystalConfig):
        super().__init__()
        d, f, bias = config.hidden_size, config.intermediate_size, config.use_bias
        self.gate_proj = nn.Linear(d, f, bias=bias)
        self.up_proj = nn.Linear(d, f, bias=bias)
        self.down_proj = nn.Linear(f, d, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class CrystalDecoderLayer(nn.Module):
    def __init__(self, config: CrystalConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CrystalAttention(config, layer_idx)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CrystalMLP(config)

    def forward(self, x, cos, sin, mask, cache):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class CrystalPreTrainedModel(PreTrainedModel):
    config_class = CrystalConfig
    config: CrystalConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["CrystalDecoderLayer"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Truncated normal at ±2σ: hidden σ, embedding σ, residual outputs σ/√(2L)."""
        cfg = self.config
        std = cfg.initializer_range
        if isinstance(module, nn.Embedding):
            s = cfg.embedding_init_std
            init.trunc_normal_(module.weight, mean=0.0, std=s, a=-2 * s, b=2 * s)
        elif isinstance(module, nn.Linear):
            s = std
            if getattr(module, "_is_residual_output", False):
                s = std / math.sqrt(2 * cfg.num_hidden_layers)
            init.trunc_normal_(module.weight, mean=0.0, std=s, a=-2 * s, b=2 * s)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def mup_param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer groups for μP: hidden matrices get ``lr_mult = width_scale``.

        Embeddings (tied with the output) keep the base learning rate; biases and
        LayerNorm parameters keep it too and take no weight decay. The trainer
        multiplies each group's scheduled learning rate by its ``lr_mult``.
        """
        hidden, embed, no_decay = [], [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if "embed_tokens" in name:
                embed.append(p)
            elif p.ndim < 2:
                no_decay.append(p)
            else:
                hidden.append(p)
        groups = [
            {"params": hidden, "weight_decay": weight_decay, "lr_mult": self.config.width_scale, "name": "hidden"},
            {"params": embed, "weight_decay": weight_decay, "lr_mult": 1.0, "name": "embedding"},
            {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0, "name": "no_decay"},
        ]
        return [g for g in groups if g["params"]]


def _attention_mask(
    attention_mask: torch.Tensor | None, q_len: int, past: int, dtype: torch.dtype
) -> torch.Tensor | None:
    """Boolean (B, 1, T_q, T_k) mask, causal and padding; None means plain causal.

    An all-ones mask is dropped in eager mode only: under ``torch.compile`` the
    test would be a graph break, so the mask is built as given (as transformers does).
    """
    if attention_mask is None:
        return None
    if past == 0 and not torch.compiler.is_compiling() and bool(attention_mask.all()):
        return None
    keys = attention_mask.shape[-1]
    device = attention_mask.device
    q_pos = torch.arange(q_len, device=device)[:, None] + past  # (T_q, 1)
    k_pos = torch.arange(keys, device=device)[None, :]  # (1, T_k)
    causal = k_pos <= q_pos
    mask = causal[None, None] & attention_mask[:, None, None, :].bool()
    # a padded query row would attend to nothing; let it see itself (its output is ignored)
    mask = mask | (k_pos == q_pos)[None, None]
    return mask


class CrystalModel(CrystalPreTrainedModel):
    def __init__(self, config: CrystalConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(CrystalDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rotary = CrystalRotary(config)
        for layer in self.layers:
            layer.self_attn.o_proj._is_residual_output = True
            layer.mlp.down_proj._is_residual_output = True
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        use_cache=None,
        cache=None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        cache = cache if cache is not None else past_key_values
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        x = inputs_embeds * self.config.embeddings_scale  # μP embedding multiplier
        B, T = x.shape[:2]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None and not self.training:
            try:
                cache = DynamicCache(config=self.config)
            except TypeError:  # pragma: no cover - older cache signature
                cache = DynamicCache()
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            if attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            else:
                position_ids = torch.arange(past, past + T, device=x.device)[None].expand(B, T)
        cos, sin = self.rotary(position_ids, x.dtype)
        mask = _attention_mask(attention_mask, T, past, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, cache)
        x = self.norm(x)
        return BaseModelOutputWithPast(last_hidden_state=x, **{_CACHE_FIELD: cache})


class CrystalForCausalLM(CrystalPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: CrystalConfig):
        super().__init__(config)
        self.model = CrystalModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        labels=None,
        use_cache=None,
        logits_to_keep: int = 0,
        cache=None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        h = out.last_hidden_state
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        logits = self.lm_head(h) * self.config.output_logits_scale  # μP output multiplier
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: getattr(out, _CACHE_FIELD)})


# Every folder a Crystal model is saved to carries these two files and an ``auto_map``
# (transformers' convention), so it loads with ``trust_remote_code=True`` where luminary is not installed.
CrystalConfig.register_for_auto_class()
CrystalModel.register_for_auto_class("AutoModel")
CrystalForCausalLM.register_for_auto_class("AutoModelForCausalLM")
