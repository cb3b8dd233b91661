"""LLM360's released layouts, built tiny here: CrystalCoder's Hugging Face folder and Amber's Llama folder.

The CrystalCoder reference below computes the logits straight from the
released layout, written from LLM360's own descriptions (GPT-2's Conv1D
tensors, [q; k; v] in ``c_attn``, ``silu(c_fc2) · c_fc``, GPT-J's interleaved
rotary on ``rotary_dim`` dimensions, μP multipliers), one rotation pair at a
time: it shares no code with luminary's crystal, so a wrong mapping, a wrong
rotary layout or a missing multiplier shows.
"""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from luminary.core.errors import LuminaryError
from luminary.models.loading import load_model
from luminary.release.llm360 import convert_amber, convert_crystalcoder

CC = dict(vocab_size=64, n_embd=32, n_head=2, n_layer=2, n_inner=40, n_positions=32, rotary_dim=4,
          layer_norm_epsilon=1e-5, mup_embeddings_scale=14.6, mup_output_alpha=2.22, mup_width_scale=0.0625,
          mup_scale_qk_dot_by_d=True, tie_word_embeddings=True, activation_function="swiglu",
          position_embedding_type="rotary", model_type="crystalcoder", bos_token_id=1, eos_token_id=2,
          architectures=["CrystalCoderLMHeadModel"],
          auto_map={"AutoModelForCausalLM": "modeling_crystalcoder.CrystalCoderLMHeadModel"})


class NotWeights:  # what a Trainer's training_args.bin holds: an object, never to be unpickled
    pass


def crystalcoder_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d, f, v, p = CC["n_embd"], CC["n_inner"], CC["vocab_size"], CC["n_positions"]

    def r(*shape, s=0.2):
        return torch.randn(*shape, generator=g) * s

    t = {"transformer.wte.weight": r(v, d, s=0.1)}
    for i in range(CC["n_layer"]):
        h = f"transformer.h.{i}."
        t |= {h + "ln_1.weight": 1 + r(d, s=0.1), h + "ln_1.bias": r(d, s=0.1),
              h + "attn.c_attn.weight": r(d, 3 * d), h + "attn.c_attn.bias": r(3 * d),
              h + "attn.bias": torch.tril(torch.ones(p, p, dtype=torch.bool)).view(1, 1, p, p),
              h + "attn.masked_bias": torch.tensor(-1e4),
              h + "attn.c_proj.weight": r(d, d), h + "attn.c_proj.bias": r(d),
              h + "ln_2.weight": 1 + r(d, s=0.1), h + "ln_2.bias": r(d, s=0.1),
              h + "mlp.c_fc.weight": r(d, f), h + "mlp.c_fc.bias": r(f),
              h + "mlp.c_fc2.weight": r(d, f), h + "mlp.c_fc2.bias": r(f),
              h + "mlp.c_proj.weight": r(f, d), h + "mlp.c_proj.bias": r(d)}
    t |= {"transformer.ln_f.weight": 1 + r(d, s=0.1), "transformer.ln_f.bias": r(d, s=0.1)}
    return t


def reference_logits(t: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    d, heads, rot = CC["n_embd"], CC["n_head"], CC["rotary_dim"]
    hd = d // heads
    B, T = ids.shape

    def ln(x, name):
        return F.layer_norm(x, (d,), t[name + ".weight"], t[name + ".bias"], CC["layer_norm_epsilon"])

    def rotate(x):  # (B, T, H, hd): GPT-J pairs (2i, 2i+1) of the first `rot` dims, angle pos * 10000^(-2i/rot)
        out = x.clone()
        for pos in range(T):
            for i in range(rot // 2):
                angle = pos * 10000.0 ** (-2 * i / rot)
                a, b = x[:, pos, :, 2 * i], x[:, pos, :, 2 * i + 1]
                out[:, pos, :, 2 * i] = a * math.cos(angle) - b * math.sin(angle)
                out[:, pos, :, 2 * i + 1] = b * math.cos(angle) + a * math.sin(angle)
        return out

    x = t["transformer.wte.weight"][ids] * CC["mup_embeddings_scale"]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(CC["n_layer"]):
        h = f"transformer.h.{i}."
        qkv = ln(x, h + "ln_1") @ t[h + "attn.c_attn.weight"] + t[h + "attn.c_attn.bias"]
        q, k, v = (part.reshape(B, T, heads, hd) for part in qkv.split(d, dim=-1))
        q, k = rotate(q), rotate(k)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / hd  # μP: 1/d_head
        weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        y = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, d)
        x = x + y @ t[h + "attn.c_proj.weight"] + t[h + "attn.c_proj.bias"]
        z = ln(x, h + "ln_2")
        m = F.silu(z @ t[h + "mlp.c_fc2.weight"] + t[h + "mlp.c_fc2.bias"]) * (
            z @ t[h + "mlp.c_fc.weight"] + t[h + "mlp.c_fc.bias"])
        x = x + m @ t[h + "mlp.c_proj.weight"] + t[h + "mlp.c_proj.bias"]
    x = ln(x, "transformer.ln_f")
    return x @ t["transformer.wte.weight"].T * CC["mup_output_alpha"] * CC["mup_width_scale"]


def save_sharded_bin(folder, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Two pickle shards and their index, as the release ships, plus a Trainer's training_args.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    names = sorted(tensors)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    for file, keys in shards.items():
        torch.save({k: tensors[k] for k in keys}, folder / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "training_args.bin").write_bytes(pickle.dumps(NotWeights()))


@pytest.fixture(scope="module")
def crystalcoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llm360") / "CrystalCoder"
    tensors = crystalcoder_tensors()
    save_sharded_bin(folder, tensors, CC)
    return folder, tensors


def test_a_crystalcoder_folder_converts_to_crystal_with_the_same_logits(crystalcoder, tmp_path):
    folder, tensors = crystalcoder
    result = convert_crystalcoder(folder, tmp_path / "crystal", allow_pickle=True)
    assert result["tensors"] == 3 + 18 * CC["n_layer"] and result["rotary"] == "interleaved"
    model = load_model(tmp_path / "crystal").eval()
    assert model.config.model_type == "crystal" and model.config.rotary_interleaved
    ids = torch.randint(0, CC["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(input_ids=ids).logits
    want = reference_logits(tensors, ids)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), float((got - want).abs().max())
    # the same weights with NeoX's halves are another model: the option is not a no-op
    convert_crystalcoder(folder, tmp_path / "halves", rotary="halves", allow_pickle=True)
    with torch.no_grad():
        other = load_model(tmp_path / "halves")(input_ids=ids).logits
    assert (other - want).abs().max() > 1e-3
    assert (tmp_path / "crystal" / "modeling_crystal.py").is_file()  # loads without luminary too


def test_crystalcoder_bad_input_is_one_line(crystalcoder, tmp_path, cli):
    folder, tensors = crystalcoder
    with pytest.raises(LuminaryError, match="pickle weights are refused"):
        convert_crystalcoder(folder, tmp_path / "a")
    with pytest.raises(LuminaryError, match="--rotary: expected one of interleaved, halves"):
        convert_crystalcoder(folder, tmp_path / "b", rotary="neox", allow_pickle=True)
    wrong = tmp_path / "wrong"
    save_sharded_bin(wrong, {**tensors, "transformer.h.0.mlp.c_fc.weight": tensors["transformer.h.0.mlp.c_fc.weight"][:, :8]},
                     CC)
    with pytest.raises(LuminaryError, match=r"transformer.h.0.mlp.c_fc.weight has shape \[32, 8\], config.json makes it \[32, 40\]"):
        convert_crystalcoder(wrong, tmp_path / "c", allow_pickle=True)
    extra = tmp_path / "extra"
    save_sharded_bin(extra, {**tensors, "transformer.wpe.weight": torch.zeros(4, 32)}, CC)
    with pytest.raises(LuminaryError, match="transformer.wpe.weight has no place in crystal"):
        convert_crystalcoder(extra, tmp_path / "d", allow_pickle=True)
    llama = tmp_path / "llama"
    save_sharded_bin(llama, tensors, {**CC, "model_type": "llama"})
    with pytest.raises(LuminaryError, match="not 'crystalcoder'"):
        convert_crystalcoder(llama, tmp_path / "e", allow_pickle=True)
    assert not any((tmp_path / n).exists() for n in "abcde")
    result = cli("convert", "crystalcoder", folder, "--out", tmp_path / "f")
    result.one_line_error("pickle weights are refused", "--allow-pickle")


def test_the_cli_converts_and_names_the_next_command(crystalcoder, tmp_path, cli):
    folder, _ = crystalcoder
    result = cli("convert", "crystalcoder", folder, "--out", tmp_path / "c", "--allow-pickle")
    assert result.returncode == 0, result.stderr
    assert "rotary interleaved" in result.stdout and f"next: luminary generate {tmp_path / 'c'}" in result.stdout


def test_an_amber_llama_folder_reads_as_it_is_and_converts(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    ref = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                       num_attention_heads=4, max_position_embeddings=32)).eval()
    folder = tmp_path / "Amber"
    save_sharded_bin(folder, ref.state_dict(), ref.config.to_dict())
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref(input_ids=ids).logits
        got = load_model(folder, allow_pickle=True)(input_ids=ids).logits  # the index's shards, not training_args
    assert torch.equal(got, want)
    convert_amber(folder, tmp_path / "amber", allow_pickle=True)
    assert (tmp_path / "amber" / "model.safetensors").is_file()
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "amber")(input_ids=ids).logits, want)


def test_crystal_7b_counts_what_the_released_shapes_give():
    """CrystalCoder's released config.json shapes: 32 blocks of 201,377,108, a 32,032 × 4,096 embedding
    (tied), the final norm."""
    from luminary.models import build_model

    block = (4096 * 3 * 4096 + 3 * 4096) + (4096 * 4096 + 4096) + 2 * (4096 * 10922 + 10922) \
        + (10922 * 4096 + 4096) + 4 * 4096
    assert block == 201_377_108
    released = 32 * block + 32032 * 4096 + 2 * 4096
    assert released == 6_575_278_720
    with torch.device("meta"):
        model = build_model("crystal-7b", 32032, seed=0)
    assert sum(p.numel() for p in model.parameters()) == released
