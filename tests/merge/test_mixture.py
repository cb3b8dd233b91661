"""Mixtures: copies of one expert equal the dense model under any gate; gates and warnings."""

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from luminary.merge.mixture import MixtureConfig, run_mixture

IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7], [1, 2, 3, 4, 5, 6, 7]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def logits(folder):
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model, model(input_ids=IDS, attention_mask=MASK).logits


@pytest.mark.parametrize("level, gate_mode, arch", [
    ("ffn", "random", "MixtralForCausalLM"),
    ("ffn", "hidden", "MixtralForCausalLM"),
    ("block", "cheap_embed", "BlockMixtureForCausalLM"),
    ("model", "random", "ModelMixtureForCausalLM"),
])
def test_copies_of_one_expert_equal_the_dense_model(tmp_path, zoo, level, gate_mode, arch):
    prompts = {"positive_prompts": ["def f(x):", "import os"], "negative_prompts": ["class A:"]}
    experts = [{"model": str(zoo["a"]), **prompts} for _ in range(3)]
    config = MixtureConfig(level=level, base_model=str(zoo["a"]), experts=experts, gate_mode=gate_mode,
                           experts_per_token=2, num_dense_layers=1 if level != "ffn" else 0, seed=3)
    summary = run_mixture(config, tmp_path / "moe")
    model, mixed = logits(tmp_path / "moe")
    assert type(model).__name__ == arch
    _, dense = logits(zoo["a"])
    real = MASK.bool()
    assert torch.allclose(mixed[real], dense[real], atol=1e-4), (mixed[real] - dense[real]).abs().max()
    if gate_mode != "random":  # identical prompts for every expert: a singular gate, and a warning
        assert summary["warnings"] and summary["condition_numbers"][0] > 1e3


def test_distinct_experts_route_by_their_prompts(tmp_path, zoo):
    """Different experts: the output mixes them (not equal to either), gates well conditioned."""
    experts = [{"model": str(zoo[k]), "positive_prompts": [p]} for k, p in
               (("a", "def f(x): return x"), ("b", "The quick brown dog."), ("c", "1 2 3 4 5 6"))]
    config = MixtureConfig(base_model=str(zoo["base"]), experts=experts, gate_mode="hidden", experts_per_token=1)
    summary = run_mixture(config, tmp_path / "moe")
    assert not summary["warnings"]
    model, mixed = logits(tmp_path / "moe")
    assert model.config.num_local_experts == 3 and model.config.num_experts_per_tok == 1
    for k in "abc":
        assert not torch.allclose(mixed, logits(zoo[k])[1], atol=1e-3)
    from safetensors.torch import load_file
    w = load_file(str(tmp_path / "moe" / "model.safetensors"))
    from tests.merge.merge_helpers import state
    b = state(zoo["b"])
    assert torch.equal(w["model.layers.1.block_sparse_moe.experts.1.w2.weight"], b["model.layers.1.mlp.down_proj.weight"])
    gate = w["model.layers.0.block_sparse_moe.gate.weight"]
    assert torch.allclose(gate.norm(dim=1), torch.ones(3), atol=1e-5)


def test_cli_moe_bad_input(tmp_path, zoo, cli, odd_models):
    crystal, _ = odd_models
    cfg = {"base_model": str(zoo["a"]), "experts": [{"model": str(zoo["b"])}, {"model": str(crystal)}],
           "gate_mode": "random"}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("moe", tmp_path / "m.yaml", "--out", tmp_path / "out")
    assert res.returncode == 2 and "Llama/Mistral" in res.stderr and not (tmp_path / "out").exists()
    cfg["experts"][1] = {"model": str(zoo["c"])}
    cfg["gate_mode"] = "hidden"
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("moe", tmp_path / "m.yaml", "--out", tmp_path / "out")
    assert res.returncode == 2 and "positive_prompts" in res.stderr
