"""Tiny models and one small training setup shared by the parallel tests and their workers."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

VOCAB = 128


def parity_models():
    """(name, builder): the families of the parity checks, dropout off."""
    from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, MixtralConfig,
                              MixtralForCausalLM, OPTConfig, OPTForCausalLM, Qwen3Config, Qwen3ForCausalLM, T5Config,
                              T5ForConditionalGeneration)

    from luminary.models import build_model

    return [
        ("llama", lambda: build_model("llama-debug", VOCAB, seed=0)),
        ("crystal", lambda: build_model("crystal-debug", VOCAB, seed=0)),
        ("opt", lambda: _seeded(OPTForCausalLM, OPTConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
            max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
            bos_token_id=1, eos_token_id=2, pad_token_id=0))),
        ("gpt2", lambda: _seeded(GPT2LMHeadModel, GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=1, eos_token_id=2))),
        ("gpt_neox", lambda: _seeded(GPTNeoXForCausalLM, GPTNeoXConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, bos_token_id=1, eos_token_id=2))),
        ("qwen3", lambda: _seeded(Qwen3ForCausalLM, Qwen3Config(  # per-head q/k norms inside the split
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=64))),
        ("mixtral", lambda: _seeded(MixtralForCausalLM, MixtralConfig(  # an expert bank, packed [gate; up]
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64))),
        ("t5", lambda: _seeded(T5ForConditionalGeneration, T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
            decoder_start_token_id=0))),
    ]


def _seeded(cls, config):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls(config)


def _loud(cls, config):
    """Seeded, with every bias drawn from N(0, 0.5²): a wrong head order or a bias added twice shows."""
    model = _seeded(cls, config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def issue17_models():
    """(name, builder) of the families issue 17 names beyond the parity eight: those that passed a forward
    check and failed at the first backward (mpt, bart, falcon), and bloom, phi, codegen."""
    from transformers import (BartConfig, BartForConditionalGeneration, BloomConfig, BloomForCausalLM, CodeGenConfig,
                              CodeGenForCausalLM, FalconConfig, FalconForCausalLM, MptConfig, MptForCausalLM,
                              PhiConfig, PhiForCausalLM)

    falcon = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, bias=True,
                  hidden_dropout=0.0, attention_dropout=0.0)
    return [
        ("mpt", lambda: _loud(MptForCausalLM, MptConfig(  # masked_fill's mask meets a DTensor in the backward
            vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=64, no_bias=False))),
        ("bart", lambda: _loud(BartForConditionalGeneration, BartConfig(  # positions handed the ids
            vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
            eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None))),
        ("falcon_new", lambda: _loud(FalconForCausalLM, FalconConfig(  # grouped kv heads, in-place residual
            **falcon, new_decoder_architecture=True, num_kv_heads=2))),
        ("falcon", lambda: _loud(FalconForCausalLM, FalconConfig(**falcon, multi_query=False, parallel_attn=True))),
        ("bloom", lambda: _loud(BloomForCausalLM, BloomConfig(  # per-head interleaved [q; k; v], ALiBi
            vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, hidden_dropout=0.0, attention_dropout=0.0))),
        ("phi", lambda: _loud(PhiForCausalLM, PhiConfig(  # partial rotary, parallel attention and MLP
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=64, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0))),
        ("codegen", lambda: _loud(CodeGenForCausalLM, CodeGenConfig(  # fused qkv in mp_num = 4 groups
            vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0))),
    ]


def step_models():
    """Every family issue 17 names, for the three-step test: its own list and the parity families with
    fused or global-head attention."""
    parity = dict(parity_models())
    return issue17_models() + [(n, parity[n]) for n in ("gpt2", "gpt_neox", "opt", "t5")]


def refused_models():
    """(name, builder, the line it is refused with) at tp 2."""
    from transformers import FalconConfig, FalconForCausalLM

    falcon = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    return [
        ("falcon_multi_query", lambda: _seeded(FalconForCausalLM, FalconConfig(**falcon, multi_query=True)),
         "the model's multi_query (one key/value head) = 1 is not divisible by 2"),
        ("falcon_kv1", lambda: _seeded(FalconForCausalLM, FalconConfig(
            **falcon, new_decoder_architecture=True, num_kv_heads=1)),
         "the model's num_kv_heads = 1 is not divisible by 2"),
    ]



def parity_batch(encoder_decoder: bool):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (4, 9), generator=g)
    dec = torch.randint(0, VOCAB, (4, 6), generator=g) if encoder_decoder else None
    return ids, dec


def lm_loss(model, ids, dec=None):
    """Mean next-token cross-entropy and its target count (decoder ids for T5)."""
    from luminary.train.losses import token_cross_entropy

    if dec is not None:
        return token_cross_entropy(model(input_ids=ids, decoder_input_ids=dec, use_cache=False).logits, dec)
    return token_cross_entropy(model(input_ids=ids, use_cache=False).logits, ids)


# --- one small fine-tune, run the same way in one process and under torchrun ---------
STEPS, EVERY = 4, 2


def fit_examples(n: int = 40, length: int = 16) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(1, VOCAB, size=length).tolist() for _ in range(n)]


def predict_examples() -> list[list[int]]:
    return fit_examples(7, 10)


def pred_fn(model, batch):
    """Per-sequence mean next-token loss (a float per example)."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"]).logits[:, :-1].float()
    nll = F.cross_entropy(logits.transpose(1, 2), batch["labels"][:, 1:], reduction="none")
    return nll.mean(-1)


def make_trainer(workdir, tp_size: int = 1, model_seed: int = 0, dp_size: int = 1, activation_checkpointing=False,
                 float8=False):
    """crystal-debug, AdamW, clipping, global batch 8 = per_device × 2 (accumulation) × dp."""
    from luminary.models import build_model
    from luminary.train import Deployer, OptimizerConfig, Trainer
    from luminary.train.losses import causal_lm_collate, causal_lm_loss

    deployer = Deployer(workdir=workdir, seed=0, precision="fp32", tp=tp_size, verbose=False,
                        activation_checkpointing=activation_checkpointing, float8="emulated" if float8 else False)
    model = build_model("crystal-debug", VOCAB, seed=model_seed)
    trainer = Trainer(deployer, causal_lm_collate, causal_lm_loss, model, OptimizerConfig(lr=3e-3, weight_decay=0.1),
                      accumulate_grad_batches=2, max_grad_norm=1.0)
    return trainer, 8 // (2 * deployer.dp_size)


def digest(state: dict) -> str:
    """sha256 over a (nested) state dict's keys and tensor bytes, in key order."""
    h = hashlib.sha256()

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k in sorted(obj, key=str):
                walk(f"{prefix}/{k}", obj[k])
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}/{i}", v)
        elif isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{prefix}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(f"{prefix}={json.dumps(obj, default=str)}".encode())

    walk("", state)
    return h.hexdigest()


def full_digests(model, optimizer) -> tuple[str, str]:
    """Digests of the whole model and optimizer state, gathered from any mesh (rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    from luminary.core.modules import unwrap

    msd, osd = get_state_dict(unwrap(model), optimizer,
                              options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return digest(msd), digest(osd)
