"""End to end: configs with gradients and filters, slices, shards, vocabularies, bad input, memory."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from luminary.core.io import verify_manifest
from luminary.merge import MergeConfig, run_merge
from luminary.models import build_model

from tests.merge.merge_helpers import state


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_gradient_and_filter_semantics(tmp_path, zoo, cli):
    a, b = state(zoo["a"]), state(zoo["b"])
    cfg = write(tmp_path / "m.yaml", {
        "merge_method": "linear",
        "models": [
            {"model": str(zoo["a"]), "parameters": {"weight": [0.0, 1.0]}},
            {"model": str(zoo["b"]), "parameters": {"weight": [{"filter": "self_attn", "value": 0.5}, {"value": 1.0}]}},
        ],
    })
    res = cli("merge", cfg, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    out = state(tmp_path / "out")
    # t = 0 for the embeddings and layer 0 (a has weight 0), t = 1 for layer 1
    assert torch.equal(out["model.embed_tokens.weight"], b["model.embed_tokens.weight"])
    assert torch.equal(out["model.layers.0.mlp.up_proj.weight"], b["model.layers.0.mlp.up_proj.weight"])
    # layer 1: attention weights 1 and 0.5 (the filter), MLP the average
    q = "model.layers.1.self_attn.q_proj.weight"
    assert torch.allclose(out[q], (a[q] + 0.5 * b[q]) / 1.5, atol=1e-7)
    avg = (a["model.layers.1.mlp.up_proj.weight"] + b["model.layers.1.mlp.up_proj.weight"]) / 2
    assert torch.allclose(out["model.layers.1.mlp.up_proj.weight"], avg, atol=1e-7)
    assert verify_manifest(tmp_path / "out") == []
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()
    assert (tmp_path / "out" / "tokenizer.json").is_file()


def test_mergekit_config_runs_unchanged(tmp_path, zoo, cli):
    text = textwrap.dedent(f"""\
        models:
          - model: {zoo['a']}
            parameters: {{weight: 0.5, density: [1, 0.5]}}
          - model: {zoo['b']}
            parameters: {{weight: 0.5, density: 0.5}}
        merge_method: dare_ties
        base_model: {zoo['base']}
        parameters:
          int8_mask: true
          normalize: false
        tokenizer_source: base
        dtype: float32
        """)
    (tmp_path / "mk.yaml").write_text(text)
    res = cli("merge", "--mergekit-config", tmp_path / "mk.yaml", "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    again = cli("merge", tmp_path / "mk.yaml", "--out", tmp_path / "again")
    assert again.returncode == 0
    one, two = state(tmp_path / "out"), state(tmp_path / "again")
    assert all(torch.equal(one[k], two[k]) for k in one)  # DARE masks are seeded


def test_slices_passthrough_and_shards(tmp_path, zoo):
    a, b = state(zoo["a"]), state(zoo["b"])
    cfg = MergeConfig.model_validate({
        "merge_method": "passthrough",
        "slices": [{"sources": [{"model": str(zoo["a"]), "layer_range": [0, 2]}]},
                   {"sources": [{"model": str(zoo["b"]), "layer_range": [1, 2]}]}],
        "max_shard_size": 200_000,
    })
    run_merge(cfg, tmp_path / "out")
    files = sorted((tmp_path / "out").glob("*.safetensors"))
    assert len(files) > 1 and (tmp_path / "out" / "model.safetensors.index.json").is_file()
    out = state(tmp_path / "out")
    assert torch.equal(out["model.layers.2.mlp.down_proj.weight"], b["model.layers.1.mlp.down_proj.weight"])
    assert torch.equal(out["model.layers.1.mlp.down_proj.weight"], a["model.layers.1.mlp.down_proj.weight"])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["num_hidden_layers"] == 3
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.equal(model.model.layers[2].mlp.down_proj.weight, b["model.layers.1.mlp.down_proj.weight"])


def test_vocabulary_mismatch_is_an_error_unless_chosen(tmp_path, zoo, stdlib_texts, tokenizer, cli):
    from luminary.data.tokenizer import train_bpe

    big = train_bpe(stdlib_texts, vocab_size=600)
    other = build_model("llama-debug", len(big), seed=3)
    other.save_pretrained(tmp_path / "other")
    big.save_pretrained(tmp_path / "other")
    base = {"merge_method": "linear",
            "models": [{"model": str(zoo["a"])}, {"model": str(tmp_path / "other")}]}
    res = cli("merge", write(tmp_path / "m.yaml", base), "--out", tmp_path / "out")
    assert res.returncode == 2 and "vocabularies differ" in res.stderr and "tokenizer_source" in res.stderr
    assert not (tmp_path / "out").exists()
    for source in ("base", "union"):
        res = cli("merge", write(tmp_path / f"{source}.yaml", {**base, "tokenizer_source": source}),
                  "--out", tmp_path / f"out-{source}")
        assert res.returncode == 0, res.stderr
    a, o = state(zoo["a"])["model.embed_tokens.weight"], state(tmp_path / "other")["model.embed_tokens.weight"]
    small_vocab, big_vocab = tokenizer.get_vocab(), big.get_vocab()
    for source, size in (("base", len(small_vocab)), ("union", len(set(small_vocab) | set(big_vocab)))):
        merged = state(tmp_path / f"out-{source}")["model.embed_tokens.weight"]
        assert merged.shape[0] == size
        for token in list(small_vocab)[:50]:
            i, j = small_vocab[token], big_vocab.get(token)
            want = a[i] if j is None else (a[i] + o[j]) / 2
            assert torch.allclose(merged[i], want, atol=1e-6)
    union_tok = __import__("transformers").AutoTokenizer.from_pretrained(tmp_path / "out-union")
    assert len(union_tok) == state(tmp_path / "out-union")["model.embed_tokens.weight"].shape[0]
    extra = [t for t in big_vocab if t not in small_vocab][0]
    row = union_tok.convert_tokens_to_ids(extra)
    assert torch.allclose(state(tmp_path / "out-union")["model.embed_tokens.weight"][row], o[big_vocab[extra]])


def one_line(res, *needles):
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("case, needles", [
    ("architecture", ["architecture", "cannot be merged"]),
    ("shape", ["shape", "cannot be merged"]),
    ("no_base", ["needs base_model"]),
    ("density", ["density", "outside [0.0, 1.0]"]),
    ("zero_weights", ["weights sum to zero"]),
    ("missing", ["not found"]),
    ("unknown_method", ["unknown method"]),
    ("unknown_key", ["unknown key"]),
    ("parameter_typo", ["models[1].parameters.wieght", "unknown parameter", "did you mean 'weight'"]),
    ("slice_parameter_typo", ["slices[0].sources[1].parameters.densty", "did you mean 'density'"]),
])
def test_bad_input_one_line_exit_2_no_output(tmp_path, zoo, odd_models, cli, case, needles):
    crystal, wide = odd_models
    a, b = str(zoo["a"]), str(zoo["b"])
    configs = {
        "architecture": {"merge_method": "linear", "models": [{"model": a}, {"model": str(crystal)}]},
        "shape": {"merge_method": "linear", "models": [{"model": a}, {"model": str(wide)}]},
        "no_base": {"merge_method": "ties", "models": [{"model": a}, {"model": b}]},
        "density": {"merge_method": "ties", "base_model": str(zoo["base"]),
                    "models": [{"model": a, "parameters": {"density": 1.5}}, {"model": b}]},
        "zero_weights": {"merge_method": "linear", "models": [{"model": a, "parameters": {"weight": 1.0}},
                                                              {"model": b, "parameters": {"weight": -1.0}}]},
        "missing": {"merge_method": "linear", "models": [{"model": a}, {"model": str(tmp_path / "nope")}]},
        "unknown_method": {"merge_method": "fancy", "models": [{"model": a}]},
        "unknown_key": {"merge_method": "linear", "models": [{"model": a}], "wieghts": 1},
        "parameter_typo": {"merge_method": "linear", "models": [{"model": a}, {"model": b, "parameters": {"wieght": 2}}]},
        "slice_parameter_typo": {"merge_method": "ties", "base_model": str(zoo["base"]), "slices": [{"sources": [
            {"model": a, "layer_range": [0, 2]}, {"model": b, "layer_range": [0, 2], "parameters": {"densty": 0.5}},
            {"model": str(zoo["base"]), "layer_range": [0, 2]}]}]},
    }
    out = tmp_path / "outputs" / "merged"
    res = cli("merge", write(tmp_path / "bad.yaml", configs[case]), "--out", out)
    one_line(res, *needles)
    assert not out.exists()
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


PEAK = """
import json, sys
from luminary.merge import MergeConfig, run_merge
configs, out = json.loads(sys.argv[1]), sys.argv[2]
kb = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
for i, cfg in enumerate(configs):  # the first is a warm-up: imports, thread pools, allocator arenas
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
    before = kb("VmRSS:")
    run_merge(MergeConfig.model_validate(cfg), f"{out}-{i}")
    print((kb("VmHWM:") - before) * 1024)
"""

MB = 2**20


def toy_model(folder, tensors: int, seed: int) -> str:
    from safetensors.torch import save_file

    folder.mkdir()
    gen = torch.Generator().manual_seed(seed)
    save_file({f"model.layers.{i}.mlp.weight": torch.randn(512, 512, generator=gen) for i in range(tensors)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architectures": ["Toy"], "num_hidden_layers": tensors}))
    return str(folder)


def test_peak_memory_is_a_few_tensors_not_the_model(tmp_path):
    """Peak RSS of a TIES merge does not grow with the number of tensors (1 MB each).

    Three models of 8 tensors, then three of 64: the second peak may exceed the
    first by a few MB at most, and stays far below one model (64 MB); buffering
    the output would add 56 MB, memory-mapping the inputs 168 MB."""
    ties = lambda fs: {"merge_method": "ties", "base_model": fs[0],
                       "models": [{"model": f, "parameters": {"weight": 0.5, "density": 0.5}} for f in fs[1:]]}
    configs = [ties([toy_model(tmp_path / f"{n}-{m}", n, m) for m in range(3)]) for n in (2, 8, 64)]
    res = subprocess.run([sys.executable, "-c", PEAK, json.dumps(configs), str(tmp_path / "out")],
                         capture_output=True, text=True, env={**__import__("os").environ, "LUMINARY_QUIET": "1"})
    assert res.returncode == 0, res.stderr
    _, small, large = (int(x) for x in res.stdout.split())
    print(f"peak RSS growth: {small / MB:.1f} MB (8 tensors), {large / MB:.1f} MB (64 tensors)")
    assert large < small + 8 * MB and large < 32 * MB
    assert len(state(tmp_path / "out-2")) == 64


def test_a_parameter_another_method_reads_is_ignored_with_a_warning(zoo, capsys, monkeypatch):
    from luminary.merge.config import MergeConfig
    from luminary.merge.methods import get_method
    from luminary.merge.plan import check_parameter_names

    config = MergeConfig.model_validate({"merge_method": "linear", "models": [
        {"model": str(zoo["a"]), "parameters": {"density": 0.5}}, {"model": str(zoo["b"])}]})
    monkeypatch.setenv("LUMINARY_QUIET", "0")
    check_parameter_names(config, get_method("linear"))
    assert "models[0].parameters.density: not read by merge_method 'linear'; ignored" in capsys.readouterr().err


def test_the_tokenizers_pad_token_reaches_config_and_generation_config(tmp_path, zoo, tokenizer, cli):
    """Issue 25: the inputs leave pad_token_id null while their tokenizer has a pad token; the merge
    writes its id into config.json and generation_config.json, where batched generation and lm-eval
    look for it. An id the reference's config already sets is kept."""
    assert tokenizer.pad_token_id is not None
    assert json.loads((zoo["a"] / "config.json").read_text()).get("pad_token_id") is None
    (zoo["a"] / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "pad_token_id": None}))
    text = f"models:\n  - model: {zoo['a']}\n  - model: {zoo['b']}\nmerge_method: linear\ndtype: float32\n"
    (tmp_path / "m.yaml").write_text(text)
    assert cli("merge", tmp_path / "m.yaml", "--out", tmp_path / "out").returncode == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    generation = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert config["pad_token_id"] == generation["pad_token_id"] == tokenizer.pad_token_id
    set_one = json.loads((zoo["a"] / "config.json").read_text()) | {"pad_token_id": 3}
    (zoo["a"] / "config.json").write_text(json.dumps(set_one))
    assert cli("merge", tmp_path / "m.yaml", "--out", tmp_path / "kept").returncode == 0
    assert json.loads((tmp_path / "kept" / "config.json").read_text())["pad_token_id"] == 3
