"""Automatic plans in one process: the rules, the numerical check, overrides, the CLI and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tests.parallel import tp_fixtures as tf
from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.parallel import auto_plan, memory_per_rank
from luminary.parallel.plan import Plan
from luminary.parallel.simulate import close, simulate
from luminary.parallel.probe import probe_inputs, run_probe


def families():
    return {name: build for name, build in tf.parity_models() + tf.issue17_models()}


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


@pytest.mark.parametrize("name, style, shares", [
    ("llama", "colwise", {}), ("crystal", "colwise", {}), ("gpt_neox", "colwise", {}),
    ("opt", "colwise", {"num_heads": 2}),  # reshapes with its own head count: each rank's module holds half
    ("gpt2", "colwise_packed3", {"num_heads": 2, "split_size": 16}),  # fused [q; k; v] split by global width
    ("t5", "colwise_dtensor", {}),  # a position bias over all heads is added to the scores
    ("qwen3", "colwise_dtensor", {}),  # per-head norms would see part of their gradient
    ("bart", "colwise", {}), ("phi", "colwise", {}),
    ("codegen", "colwise", {}),  # its [q; v; k] in 4 groups splits whole groups at tp 2
    ("falcon", "colwise", {"num_heads": 2, "num_kv_heads": 2}),  # per-head interleaved [q; k; v]
    ("falcon_new", "colwise", {"num_heads": 2, "num_kv_heads": 1}),  # per kv group interleaved
    # ALiBi built for all heads outside the attention: each rank's attention takes its heads of the table
    ("mpt", "colwise_packed3", {"n_heads": 2}), ("bloom", "colwise", {"num_heads": 2})])
def test_attention_heads_split_where_the_model_code_allows(name, style, shares):
    model = families()[name]()
    plan = auto_plan(model, 2)
    attention = [n for n, e in plan.entries.items() if e.style.startswith("colwise") and e.style != "colwise_gather"
                 and any(k in n for k in ("attn", "attention", "Attention"))]
    assert attention
    assert {plan.entries[n].style for n in attention} == {style}
    held = {k: v for values in plan.attributes.values() for k, v in values.items() if k in shares}
    assert held == shares
    assert ("heads split" in plan.entries[attention[0]].reason) == bool(shares)
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again.attributes == plan.attributes and again.head_tables == plan.head_tables
    alibi = {"mpt": "position_bias", "bloom": "alibi"}.get(name)
    assert {k for t in plan.head_tables.values() for k in t} == ({alibi} if alibi else set())
    if alibi:
        assert f"its rank's heads of {alibi}" in plan.entries[attention[0]].reason
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


# --- issue 17: position tables, head counts, any family from its folder, declared plans -------------
def issue17():
    return {name: build for name, build in tf.issue17_models()}


def test_a_position_table_handed_the_token_ids_stays_whole():
    """BART's decoder positions read only the shape of decoder_input_ids: numbers, not the input, tell."""
    plan = auto_plan(issue17()["bart"](), 2)
    assert plan.entries["model.decoder.embed_positions"].style == "replicate"
    assert "position table" in plan.entries["model.decoder.embed_positions"].reason
    assert plan.entries["model.encoder.embed_positions"].style == "replicate"
    # the scaled token embeddings (their output is the rows times embed_scale) still split
    assert styles(plan, "model.encoder.embed_tokens", "model.decoder.embed_tokens") == ["vocab_embedding"] * 2


def test_every_head_count_field_is_checked():
    from luminary.parallel.plan import check_heads, head_counts

    for name, build, needle in tf.refused_models():
        model = build()
        with pytest.raises(LuminaryError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            check_heads(model, 2)
    new = issue17()["falcon_new"]().config  # 4 query heads, 2 key/value heads: tp 2 fine, tp 4 not
    check_heads(new, 2)
    with pytest.raises(LuminaryError, match="num_kv_heads = 2 is not divisible by 4"):
        check_heads(new, 4)
    mpt = issue17()["mpt"]().config
    assert head_counts(mpt)["n_heads"] == 4
    from transformers import GPTBigCodeConfig

    assert head_counts(GPTBigCodeConfig(n_head=4))["multi_query (one key/value head)"] == 1


def test_falcon_runs_eager_attention_on_the_cpu_under_tp():
    from luminary.parallel.apply import eager_attention

    model = issue17()["falcon_new"]()
    assert model.config._attn_implementation == "sdpa"  # Falcon refuses set_attn_implementation("eager")
    eager_attention(model)
    assert {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")} == {"eager"}


def test_plan_loads_a_folder_through_the_auto_class_its_config_names(cli, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from luminary.parallel.report import auto_class_for, build_for_plan

    folders = {"bart": issue17()["bart"](), "t5": families()["t5"](), "gpt2": families()["gpt2"](),
               "bert": BertForSequenceClassification(BertConfig(
                   vocab_size=tf.VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, num_labels=3))}
    for name, model in folders.items():
        model.save_pretrained(tmp_path / name)
    assert {n: auto_class_for(tmp_path / n).__name__ for n in folders} == {
        "bart": "AutoModelForSeq2SeqLM", "t5": "AutoModelForSeq2SeqLM", "gpt2": "AutoModelForCausalLM",
        "bert": "AutoModelForSequenceClassification"}
    assert type(build_for_plan(str(tmp_path / "bart"))).__name__ == "BartForConditionalGeneration"
    res = cli("parallel", "plan", tmp_path / "t5", "--tp", "2", "--out", tmp_path / "t5.json")
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "t5.json").read_text())
    assert data["model"] == "T5ForConditionalGeneration"
    assert any(r["module"].startswith("encoder.block.0") and r["style"] != "replicate" for r in data["modules"])


def test_a_declared_plan_is_applied_as_given_and_the_differences_are_printed(cli, tmp_path):
    declared = tmp_path / "mine.json"
    declared.write_text(json.dumps({"lm_head": "replicate", "model.layers.*.mlp.gate_proj": "colwise",
                                    "model.layers.*.mlp.up_proj": "colwise", "model.layers.*.mlp.down_proj": "rowwise"}))
    res = cli("parallel", "plan", "llama-debug", "--vocab", "128", "--plan", declared, "--out", tmp_path / "p.json")
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "p.json").read_text())
    rows = {r["module"]: r for r in data["modules"]}
    assert rows["lm_head"]["style"] == "replicate" and rows["lm_head"]["reason"] == "declared: replicate"
    assert rows["model.layers.0.self_attn.q_proj"]["style"] == "colwise"  # the automatic plan filled the rest
    assert [d["module"] for d in data["declared"]["differences"]] == ["lm_head"]
    assert data["declared"]["differences"][0]["automatic"] == "colwise_gather"
    assert "where the automatic plan alone differs" in res.stdout
    # transformers' own plan for Llama, shipped with the config: applied, and the automatic plan agrees
    res = cli("parallel", "plan", "llama-debug", "--vocab", "128", "--out", tmp_path / "s.json")
    shipped = json.loads((tmp_path / "s.json").read_text())["declared"]
    assert shipped["source"] == "transformers' LlamaForCausalLM.tp_plan" and shipped["differences"] == []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lm_head": "diagonal"}))
    cli("parallel", "plan", "llama-debug", "--plan", bad).one_line_error("bad.json", "unknown tensor-parallel style")


def test_cli_check_refuses_a_plan_whose_training_step_differs(cli, tmp_path):
    """--check runs one training step under torchrun (2 CPU processes here, then 4) against one process.
    Qwen3 with local attention outputs declared: its forward is exact, but each rank's per-head norm
    weights see only their heads' gradient. A forward check passes it; the training step does not."""
    families()["qwen3"]().save_pretrained(tmp_path / "qwen3")
    declared = tmp_path / "local.json"
    declared.write_text(json.dumps({"model.layers.*.self_attn.[qkv]_proj": "colwise"}))
    res = cli("parallel", "plan", tmp_path / "qwen3", "--tp", "2", "--plan", declared, "--check")
    res.one_line_error("Qwen3ForCausalLM: a training step under dp 1 x tp 2 differs from one process in the "
                       "gradient of model.layers.", "_norm.weight", "deploy.tp_overrides")


def test_a_rank_gets_its_own_heads_of_the_alibi_table():
    """BLOOM's table is (batch · heads, 1, T), batch outer: rank r's part is, for every row of the batch,
    the slopes of heads r·h .. (r+1)·h − 1 times the positions (Press et al. 2022, ALiBi)."""
    import torch
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes, build_alibi_tensor

    from luminary.parallel.simulate import slice_head_table

    batch, heads, length, tp = 3, 8, 5, 4
    table = build_alibi_tensor(torch.ones(batch, length, dtype=torch.long), heads, torch.float32)
    slopes = _get_alibi_slopes(heads, torch.device("cpu"))
    h = heads // tp
    for rank in range(tp):
        mine = slopes[rank * h:(rank + 1) * h, None, None] * torch.arange(length)  # (h, 1, T)
        assert torch.equal(slice_head_table(table, 0, heads, tp, rank), mine.repeat(batch, 1, 1))
    mpt = slopes[:, None, None] * torch.arange(length)  # MPT's (heads, 1, T)
    assert torch.equal(slice_head_table(mpt, 0, heads, tp, 1), mpt[h:2 * h])
