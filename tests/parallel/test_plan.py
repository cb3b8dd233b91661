"""Automatic plans in one process: the rules, the numerical check, overrides, the CLI and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tests.parallel import tp_fixtures as tf
from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.parallel import auto_plan, memory_per_rank
from luminary.parallel.simulate import close, simulate
from luminary.parallel.probe import probe_inputs, run_probe


def families():
    return {name: build for name, build in tf.parity_models()}


def styles(plan, *names):
    return [plan.entries[n].style for n in names]


def test_llama_plan_equals_the_hand_written_one_in_transformers():
    import fnmatch

    model = build_model("llama-debug", tf.VOCAB, seed=0)
    plan = auto_plan(model, 2)
    hand = type(model.config).base_model_tp_plan  # written by transformers' authors
    compared = 0
    for name, entry in plan.entries.items():
        for pattern, style in hand.items():
            if fnmatch.fnmatchcase(name, "model." + pattern):
                assert entry.style == style, name
                compared += 1
    assert compared == 14  # q, k, v, o, gate, up, down in two layers
    assert plan.entries["model.embed_tokens"].style == "vocab_embedding"
    assert plan.entries["lm_head"].style == "colwise_gather"
    assert plan.entries["model.embed_tokens"].style != "replicate"


def test_order_is_the_data_flow_not_sorted_names():
    """Redco's code alternates over sorted names (down, gate, up); the data flow is gate, up, then down."""
    plan = auto_plan(build_model("llama-debug", tf.VOCAB, seed=0), 2)
    mlp = [n for n in plan.entries if n.startswith("model.layers.0.mlp.")]
    assert [n.rsplit(".", 1)[1] for n in mlp] == ["gate_proj", "up_proj", "down_proj"]
    assert sorted(mlp) != mlp
    assert styles(plan, *mlp) == ["colwise", "colwise", "rowwise"]


@pytest.mark.parametrize("name, local", [("llama", True), ("crystal", True), ("gpt_neox", True),
                                         ("opt", False), ("gpt2", False), ("t5", False), ("qwen3", False)])
def test_attention_outputs_stay_local_only_where_the_model_code_allows(name, local):
    model = families()[name]()
    plan = auto_plan(model, 2)
    attention = [n for n, e in plan.entries.items() if e.style.startswith("colwise") and e.style != "colwise_gather"
                 and any(k in n for k in ("attn", "attention", "Attention"))]
    assert attention
    assert {plan.entries[n].style for n in attention} == ({"colwise"} if local else {"colwise_dtensor"})
    mlp = [n for n, e in plan.entries.items() if e.style.startswith("colwise") and e.style != "colwise_gather"
           and n not in attention]
    assert mlp and {plan.entries[n].style for n in mlp} == {"colwise"}  # MLPs never need global shapes


def test_a_global_head_reshape_is_found_by_numbers_not_names():
    """The same Llama, module names unchanged, made to reshape with a global head count (OPT's way)."""
    model = build_model("llama-debug", tf.VOCAB, seed=0)
    heads, head_dim = model.config.num_attention_heads, model.config.head_dim

    def global_heads(module, args, out):
        b, t = out.shape[:2]
        return out.reshape(b, -1, heads, head_dim).reshape(b, t, -1)  # a no-op only for all heads

    hooks = [layer.self_attn.q_proj.register_forward_hook(global_heads) for layer in model.model.layers]
    plan = auto_plan(model, 2)
    assert plan.entries["model.layers.0.self_attn.q_proj"].style == "colwise_dtensor"
    assert plan.entries["model.layers.0.mlp.gate_proj"].style == "colwise"
    for h in hooks:
        h.remove()
    assert auto_plan(model, 2).entries["model.layers.0.self_attn.q_proj"].style == "colwise"


def test_the_simulation_reproduces_the_unsplit_forward():
    for name in ("llama", "opt"):
        model = families()[name]()
        probe = probe_inputs(model)
        reference = run_probe(model, probe)
        split = ("colwise", "colwise_dtensor", "rowwise")
        roles = {n: ("rowwise" if e.style == "rowwise" else "colwise")
                 for n, e in auto_plan(model, 2).entries.items() if e.style in split}
        out = simulate(model, roles, 2, probe)
        assert close(reference, out) == (name == "llama")  # OPT's global heads break local outputs


def test_gpt2_conv1d_and_position_table():
    plan = auto_plan(families()["gpt2"](), 2)
    assert plan.entries["transformer.wte"].style == "vocab_embedding"
    assert plan.entries["transformer.wpe"].style == "replicate"  # fed positions, not token ids
    assert plan.entries["transformer.h.0.mlp.c_fc"].kind == "conv1d"
    assert styles(plan, "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj") == ["colwise", "rowwise"]
    # Conv1D keeps its weight as (in, out): a column split halves the second dimension
    assert plan.rows()[[r["module"] for r in plan.rows()].index("transformer.h.0.mlp.c_fc")]["shard"] == [32, 64]


def test_t5_encoder_decoder_cross_attention_and_tied_embeddings():
    plan = auto_plan(families()["t5"](), 2)
    cross = "decoder.block.0.layer.1.EncDecAttention."
    assert styles(plan, cross + "q", cross + "k", cross + "v", cross + "o") == ["colwise_dtensor"] * 3 + ["rowwise"]
    assert plan.entries["encoder.block.0.layer.0.SelfAttention.relative_attention_bias"].style == "replicate"
    # shared, the two embeddings and the head hold one weight: split the same way
    assert styles(plan, "shared", "encoder.embed_tokens", "decoder.embed_tokens") == ["vocab_embedding"] * 3
    assert plan.entries["lm_head"].style == "colwise_gather"


def test_dimensions_that_do_not_divide_stay_whole():
    model = build_model("llama-debug", 129, seed=0, intermediate_size=171)
    plan = auto_plan(model, 2)
    assert styles(plan, "model.embed_tokens", "lm_head") == ["replicate", "replicate"]
    assert styles(plan, "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
                  "model.layers.0.mlp.down_proj") == ["replicate"] * 3
    assert plan.entries["model.layers.0.self_attn.q_proj"].style == "colwise"
    assert "171" in plan.entries["model.layers.0.mlp.gate_proj"].reason


def test_a_moe_router_that_leaks_into_the_residual_stays_whole():
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    model = Qwen2MoeForCausalLM(Qwen2MoeConfig(
        vocab_size=tf.VOCAB, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
        shared_expert_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2))
    plan = auto_plan(model, 2)
    shared = "model.layers.0.mlp.shared_expert."
    assert styles(plan, shared + "gate_proj", shared + "up_proj", shared + "down_proj") == [
        "colwise", "colwise", "rowwise"]
    assert plan.entries["model.layers.1.self_attn.q_proj"].style == "colwise"  # the next block is untouched


def test_deepseek_low_rank_attention_moves_the_split_past_the_bottleneck():
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    model = DeepseekV3ForCausalLM(DeepseekV3Config(
        vocab_size=tf.VOCAB, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2, n_group=1,
        topk_group=1, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8))
    plan = auto_plan(model, 2)
    a = "model.layers.0.self_attn."
    # the same as transformers' hand-written plan: q_b, kv_b column, o row, the low-rank inputs whole
    assert styles(plan, a + "q_a_proj", a + "kv_a_proj_with_mqa") == ["replicate", "replicate"]
    assert styles(plan, a + "q_b_proj", a + "kv_b_proj", a + "o_proj") == ["colwise", "colwise", "rowwise"]


def test_overrides_come_first_and_the_rest_adapts():
    model = build_model("llama-debug", tf.VOCAB, seed=0)
    plan = auto_plan(model, 2, {"model.layers.*.mlp.gate_proj": "replicate", "model.layers.*.mlp.up_proj": "replicate"})
    # the down projection now reads a replicated input, so it splits column-wise... and leaks: whole too
    assert styles(plan, "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj") == ["replicate"] * 2
    assert plan.entries["model.layers.0.mlp.down_proj"].style == "replicate"
    assert plan.entries["model.layers.0.self_attn.o_proj"].style == "rowwise"
    with pytest.raises(LuminaryError, match="matches no"):
        auto_plan(model, 2, {"model.layers.*.nothing": "colwise"})
    with pytest.raises(LuminaryError, match="unknown tensor-parallel style"):
        auto_plan(model, 2, {"lm_head": "diagonal"})


def test_memory_per_rank_by_hand():
    model = build_model("crystal-debug", 512, seed=0)
    plan = auto_plan(model, 2)
    mem = memory_per_rank(model, plan, dp_size=1)
    total = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    # split: embedding (shared with the head), q/k/v/gate/up with their biases, o/down weights
    d, f, v, layers = 64, 172, 512, 2
    split = v * d + layers * (3 * (d * d + d) + 2 * (f * d + f) + d * d + d * f)
    assert mem["params_total"] == total
    assert mem["params_per_rank"] == total - split // 2
    assert memory_per_rank(model, plan, dp_size=4)["params_per_rank"] == mem["params_per_rank"] / 4


def test_cli_plan_prints_a_table_and_writes_json(cli, tmp_path):
    out = tmp_path / "plan.json"
    res = cli("parallel", "plan", "crystal-debug", "--tp", "2", "--vocab", "512", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "model.layers.0.self_attn.q_proj" in res.stdout and "colwise" in res.stdout
    data = json.loads(out.read_text())
    assert data["tp_size"] == 2 and data["memory"]["params_per_rank"] < data["memory"]["params_total"]
    from luminary.parallel.report import read_plan

    assert read_plan(out).styles() == auto_plan(build_model("crystal-debug", 512, seed=0), 2).styles()


def test_cli_plan_overrides_from_a_config(cli, tmp_path):
    cfg = tmp_path / "parallel.yaml"
    cfg.write_text("deploy:\n  tp: 2\n  tp_overrides:\n    lm_head: replicate\n    model.embed_tokens: replicate\n")
    res = cli("parallel", "plan", "llama-debug", "--vocab", "128", "--config", cfg, "--out", tmp_path / "p.json")
    assert res.returncode == 0, res.stderr
    rows = {r["module"]: r["style"] for r in json.loads((tmp_path / "p.json").read_text())["modules"]}
    assert rows["lm_head"] == "replicate" and rows["model.layers.0.mlp.down_proj"] == "rowwise"


@pytest.mark.parametrize("args, needle", [
    (("llama-debug", "--tp", "3"), "tp: the model's num_attention_heads = 4 is not divisible by 3"),
    (("llama-debug", "--tp", "128"), "not divisible by 128"),
])
def test_cli_plan_bad_input_is_one_line(cli, args, needle):
    res = cli("parallel", "plan", *args)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]


def test_cli_plan_bad_config_names_the_field(cli, tmp_path):
    cfg = tmp_path / "parallel.yaml"
    cfg.write_text("deploy: {tp: 2, tp_overrides: {lm_head: diagonal}}\n")
    res = cli("parallel", "plan", "llama-debug", "--config", cfg)
    assert res.returncode == 2 and "overrides" in res.stderr and "diagonal" in res.stderr


def test_tp_size_must_divide_the_world_before_any_process_group(monkeypatch):
    from luminary.train import Deployer

    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(LuminaryError, match="deploy.tp: 2 does not divide the 3 processes"):
        Deployer(tp=2)
    import torch.distributed as dist

    assert not dist.is_initialized()


def train_config(tmp_path, tokenizer_dir, tp_size: int):
    """A one-step fine-tuning config of llama-debug (4 heads) with ``deploy.tp``."""
    (tmp_path / "a.txt").write_text("def f(x):\n    return x\n" * 50)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"model: llama-debug\ntokenizer: {tokenizer_dir}\n"
                   f"data: {{path: {tmp_path / 'a.txt'}, seq_len: 16}}\n"
                   f"train: {{per_device_batch_size: 2, max_steps: 1}}\ndeploy: {{tp: {tp_size}}}\n")
    return cfg


def test_train_cli_with_tp_in_one_process_is_exit_2(cli, tmp_path, tokenizer_dir):
    res = cli("train", train_config(tmp_path, tokenizer_dir, 2), "--out", tmp_path / "run")
    res.one_line_error("deploy.tp: 2 does not divide the 1 processes of this run")
    assert not (tmp_path / "run").exists()


def test_clip_across_meshes_equals_torch_in_one_process():
    from luminary.parallel.apply import clip_grad_norm_across_meshes

    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn_like(p) * 3
        q.grad = p.grad.clone()
    ours = float(clip_grad_norm_across_meshes([p.grad for p in a], 1.0))
    theirs = float(torch.nn.utils.clip_grad_norm_(b, 1.0))
    assert ours == pytest.approx(theirs, rel=1e-6)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)


def test_expert_bank_split_by_data_flow_and_packing_by_numbers():
    model = families()["mixtral"]()
    plan = auto_plan(model, 2)
    bank = plan.entries["model.layers.0.mlp.experts"]
    assert bank.style == "experts" and bank.roles == {"gate_up_proj": "column", "down_proj": "row"}
    assert bank.split == {"gate_up_proj": (1, 2), "down_proj": (2, 1)}  # [gate; up] split apart
    banks = [n for n, e in plan.entries.items() if e.kind == "experts"]
    probe = probe_inputs(model)
    reference = run_probe(model, probe)
    flat = {"gate_up_proj": (1, 1), "down_proj": (2, 1)}
    assert not close(reference, simulate(model, {}, 2, probe, {n: flat for n in banks}))
    assert close(reference, simulate(model, {}, 2, probe, {n: bank.split for n in banks}))
    row = next(r for r in plan.rows() if r["module"] == "model.layers.0.mlp.experts")
    assert row["params"]["gate_up_proj"]["shard"] == [4, 48, 32] and row["params"]["down_proj"]["shard"] == [4, 32, 24]


def test_train_cli_checks_heads_before_any_process_group(cli, tmp_path, tokenizer_dir):
    res = cli("train", train_config(tmp_path, tokenizer_dir, 3), "--out", tmp_path / "run")
    res.one_line_error("deploy.tp: the model's num_attention_heads = 4 is not divisible by 3")
    assert not (tmp_path / "run").exists()


def test_pretrain_checks_heads_before_any_process_group(tmp_path, monkeypatch, tokenizer_dir):
    import torch.distributed as dist

    from luminary.pretrain.runner import pretrain
    from tests.conftest import fill_recipe
    from tests.pretrain.conftest import RECIPE

    data = fill_recipe(RECIPE, tmp_path, tokenizer_dir, ["x = 1\n"])
    data["deploy"]["tp"] = 3
    monkeypatch.setenv("WORLD_SIZE", "3")  # a head count is the first thing to fail, not the rendezvous
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(data))
    with pytest.raises(LuminaryError, match="deploy.tp: the model's num_attention_heads = 4 is not divisible by 3"):
        pretrain(path, out=tmp_path / "run")
    assert not dist.is_initialized() and not (tmp_path / "run").exists()
