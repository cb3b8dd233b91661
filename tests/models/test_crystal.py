"""Crystal against a direct computation of its formulas (specs/crystal.md)."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

import luminary  # noqa: F401  (registers crystal)
from luminary.models import build_model
from luminary.models.crystal.modeling_crystal import apply_partial_rotary


def reference_logits(model, ids):
    """Crystal's forward written out from the spec, one formula per line."""
    cfg = model.config
    sd = model.state_dict()
    H, D, L = cfg.num_attention_heads, cfg.head_dim, cfg.num_hidden_layers
    R = int(D * 0.25) // 2 * 2  # rotary on 25% of each head
    T = ids.shape[1]
    x = sd["model.embed_tokens.weight"][ids] * 14.6  # μP embedding multiplier
    pos = torch.arange(T, dtype=torch.float32)
    inv = 1.0 / (10000 ** (torch.arange(0, R, 2, dtype=torch.float32) / R))
    ang = pos[:, None] * inv[None]  # (T, R/2)

    def rope(v):  # v: (H, T, D); rotate pairs (i, i + R/2) by angle pos·θ_i
        a, b, rest = v[..., : R // 2], v[..., R // 2 : R], v[..., R:]
        c, s = ang.cos(), ang.sin()
        return torch.cat([a * c - b * s, b * c + a * s, rest], -1)

    def ln(v, p):
        return F.layer_norm(v, (v.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], 1e-5)

    def lin(v, p):
        return v @ sd[p + ".weight"].T + sd[p + ".bias"]

    for i in range(L):
        p = f"model.layers.{i}."
        h = ln(x, p + "input_layernorm")
        q, k, v = (lin(h, p + f"self_attn.{n}_proj")[0].view(T, H, D).transpose(0, 1) for n in "qkv")
        q, k = rope(q), rope(k)
        scores = q @ k.transpose(-1, -2) / D  # μP: 1/d_head, not 1/sqrt(d_head)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf)
        att = (scores.softmax(-1) @ v).transpose(0, 1).reshape(1, T, H * D)
        x = x + lin(att, p + "self_attn.o_proj")
        h = ln(x, p + "post_attention_layernorm")
        x = x + lin(F.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = ln(x, "model.norm")
    return x @ sd["model.embed_tokens.weight"].T * (2.22 * cfg.width_scale)  # tied output, μP logit scale


def test_forward_matches_the_spec_formulas():
    model = build_model("crystal-debug", 97, seed=0, width_scale=0.5).eval()
    ids = torch.randint(0, 97, (1, 12))
    assert model.config.rotary_dim == 4  # 25% of head_dim 16
    with torch.no_grad():
        ours = model(input_ids=ids).logits
        ref = reference_logits(model, ids)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_partial_rotary_leaves_the_rest_alone():
    x = torch.randn(1, 2, 5, 16)
    cos, sin = torch.randn(1, 1, 5, 4).cos(), torch.randn(1, 1, 5, 4).sin()
    y = apply_partial_rotary(x, cos, sin)
    assert torch.equal(y[..., 4:], x[..., 4:])
    assert not torch.allclose(y[..., :4], x[..., :4])


def test_tied_embeddings_and_init():
    model = build_model("crystal-tiny", 500, seed=0)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    emb = model.model.embed_tokens.weight
    assert emb.abs().max() <= 2 * 0.073 + 1e-6  # truncated at ±2σ
    assert abs(emb.std().item() - 0.073 * 0.88) < 0.01  # std of a ±2σ truncated normal
    down = model.model.layers[0].mlp.down_proj.weight
    assert down.abs().max() <= 2 * 0.01825 / math.sqrt(2 * 4) + 1e-6
    assert torch.all(model.model.layers[0].self_attn.q_proj.bias == 0)


def test_forward_backward_and_mup_groups():
    model = build_model("crystal-debug", 64, seed=0, width_scale=0.25)
    ids = torch.randint(0, 64, (2, 9))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    groups = {g["name"]: g for g in model.mup_param_groups(0.1)}
    assert groups["hidden"]["lr_mult"] == 0.25 and groups["embedding"]["lr_mult"] == 1.0
    assert groups["no_decay"]["weight_decay"] == 0.0
    hidden_ids = {id(p) for p in groups["hidden"]["params"]}
    assert id(model.model.layers[0].self_attn.q_proj.weight) in hidden_ids
    assert id(model.model.layers[0].self_attn.q_proj.bias) not in hidden_ids


def test_save_and_load_through_auto_class(tmp_path):
    model = build_model("crystal-debug", 80, seed=1).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "CrystalForCausalLM"
    ids = torch.randint(0, 80, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_generate_with_cache_equals_recomputation():
    model = build_model("crystal-debug", 50, seed=2).eval()
    ids = torch.randint(0, 50, (1, 5))
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    seq = ids
    with torch.no_grad():
        for _ in range(8):
            nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    assert torch.equal(out, seq)


def test_left_padding_gives_the_same_continuation():
    model = build_model("crystal-debug", 50, seed=3).eval()
    ids = torch.randint(1, 50, (1, 4))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1]])
    a = model.generate(ids, max_new_tokens=5, do_sample=False)[:, 4:]
    b = model.generate(padded, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)[:, 7:]
    assert torch.equal(a, b)


@pytest.mark.parametrize("preset", ["llama-debug", "crystal-debug"])
def test_presets_build(preset):
    model = build_model(preset, 100, seed=0)
    assert model.config.vocab_size == 100
