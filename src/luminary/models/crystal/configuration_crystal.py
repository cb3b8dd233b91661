"""Configuration of the Crystal architecture (LLM360 CrystalCoder).

Crystal is LLaMA-shaped with these differences (``specs/crystal.md``):
LayerNorm with bias, biases on every linear layer, rotary embeddings on 25% of
each head's dimensions, tied input/output embeddings, and μP: the embedding
output is multiplied by 14.6, the logits by ``output_logits_alpha ×
width_scale`` (2.22 × 0.0625 = 0.13875), attention scores are scaled by
1/d_head instead of 1/√d_head, and hidden matrices train with learning rate ×
``width_scale``.

``rotary_interleaved``: rotate dimension pairs (2i, 2i + 1), GPT-J's
``rotate_every_two`` with each frequency repeated in place, as CrystalCoder's
released weights were trained (its Megatron scripts' ``--rotary-interleave-repeat``);
False (the default of a fresh model): NeoX's halves (i, i + R/2), ``rotate_half``.
"""

from __future__ import annotations

from transformers import PretrainedConfig


class CrystalConfig(PretrainedConfig):
    model_type = "crystal"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(
        self,
        vocab_size: int = 32032,
        hidden_size: int = 4096,
        intermediate_size: int = 10922,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        max_position_embeddings: int = 2048,
        rotary_pct: float = 0.25,
        rope_theta: float = 10000.0,
        rotary_interleaved: bool = False,
        layer_norm_eps: float = 1e-5,
        use_bias: bool = True,
        embeddings_scale: float = 14.6,
        width_scale: float = 0.0625,
        output_logits_alpha: float = 2.22,
        scale_qk_dot_by_d: bool = True,
        initializer_range: float = 0.01825,
        embedding_init_std: float = 0.073,
        use_cache: bool = True,
        tie_word_embeddings: bool = True,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rotary_pct = rotary_pct
        self.rope_theta = rope_theta
        self.rotary_interleaved = rotary_interleaved
        self.layer_norm_eps = layer_norm_eps
        self.use_bias = use_bias
        self.embeddings_scale = embeddings_scale
        self.width_scale = width_scale
        self.output_logits_alpha = output_logits_alpha
        self.scale_qk_dot_by_d = scale_qk_dot_by_d
        self.initializer_range = initializer_range
        self.embedding_init_std = embedding_init_std
        self.use_cache = use_cache
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        """Rotated dimensions per head: ``rotary_pct`` of the head, rounded down to even."""
        return int(self.head_dim * self.rotary_pct) // 2 * 2

    @property
    def output_logits_scale(self) -> float:
        return self.output_logits_alpha * self.width_scale
