"""mergekit-yaml's options on ``luminary merge run`` and ``luminary merge mergekit-yaml CONFIG OUT``."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from luminary.cli.merge import parse_kmb
from luminary.core.errors import LuminaryError
from luminary.core.io import verify_manifest

from tests.merge.merge_helpers import state

pytestmark = pytest.mark.filterwarnings("ignore")


def linear(tmp_path: Path, zoo, name: str = "m.yaml", **extra) -> Path:
    cfg = {"merge_method": "linear", "models": [{"model": str(zoo["a"]), "parameters": {"weight": 0.6}},
                                                {"model": str(zoo["b"]), "parameters": {"weight": 0.4}}], **extra}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def same(x: Path, y: Path) -> bool:
    a, b = state(x), state(y)
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_parse_kmb_as_mergekit():
    assert parse_kmb("5B") == 5 * 10**9 and parse_kmb("500M") == 5 * 10**8 and parse_kmb("100k") == 10**5
    assert parse_kmb("12345") == 12345 and parse_kmb(7) == 7
    for bad in ("", "1.5B", "B", "5G", "-3", "0"):
        with pytest.raises(LuminaryError, match="--out-shard-size"):
            parse_kmb(bad)


def test_out_shard_size_shards_with_an_index(tmp_path, zoo, cli):
    cfg = linear(tmp_path, zoo)
    assert cli("merge", "run", cfg, "--out", tmp_path / "one").returncode == 0
    res = cli("merge", "run", cfg, "--out", tmp_path / "sharded", "--out-shard-size", "20K")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "sharded"
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    n = len(shards)
    assert n > 2 and shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards) and index["metadata"]["total_size"] > 0
    assert same(out, tmp_path / "one") and verify_manifest(out) == []
    model = AutoModelForCausalLM.from_pretrained(out)
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()
    cli("merge", "run", cfg, "--out", tmp_path / "bad", "--out-shard-size", "5G").one_line_error("--out-shard-size")


def test_mergekit_yaml_positional_form(tmp_path, zoo, cli):
    cfg = linear(tmp_path, zoo)
    res = cli("merge", "mergekit-yaml", cfg, tmp_path / "mk", "--out-shard-size", "5B", "--lazy-unpickle")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "mk" / "model.safetensors").is_file() and (tmp_path / "mk" / "README.md").is_file()
    assert cli("merge", cfg, "--out", tmp_path / "run").returncode == 0
    assert same(tmp_path / "mk", tmp_path / "run")
    cli("merge", "mergekit-yaml", cfg, tmp_path / "mk").one_line_error("already exists")
    assert cli("merge", "mergekit-yaml", cfg, tmp_path / "mk", "--overwrite").returncode == 0


def test_copy_tokenizer(tmp_path, zoo, cli):
    cfg = linear(tmp_path, zoo)
    assert cli("merge", cfg, "--out", tmp_path / "with", "--copy-tokenizer").returncode == 0
    assert (tmp_path / "with" / "tokenizer.json").is_file()
    assert cli("merge", cfg, "--out", tmp_path / "without", "--no-copy-tokenizer").returncode == 0
    assert not any((tmp_path / "without").glob("tokenizer*")) and verify_manifest(tmp_path / "without") == []
    assert same(tmp_path / "with", tmp_path / "without")


def test_write_model_card_option(tmp_path, zoo, cli):
    cfg = linear(tmp_path, zoo)
    assert cli("merge", cfg, "--out", tmp_path / "card").returncode == 0
    assert (tmp_path / "card" / "README.md").is_file()
    assert cli("merge", cfg, "--out", tmp_path / "nocard", "--no-write-model-card").returncode == 0
    assert not (tmp_path / "nocard" / "README.md").exists() and verify_manifest(tmp_path / "nocard") == []


def test_allow_crimes(tmp_path, zoo, cli, odd_models):
    renamed = tmp_path / "renamed"
    shutil.copytree(zoo["b"], renamed)
    config = json.loads((renamed / "config.json").read_text())
    config["architectures"] = ["MistralForCausalLM"]
    (renamed / "config.json").write_text(json.dumps(config))
    (renamed / "MANIFEST.sha256").unlink(missing_ok=True)
    cfg = linear(tmp_path, {"a": zoo["a"], "b": renamed})
    cli("merge", cfg, "--out", tmp_path / "refused").one_line_error("--allow-crimes", "architecture")
    cli("merge", cfg, "--out", tmp_path / "refused", "--no-allow-crimes").one_line_error("--allow-crimes")
    assert not (tmp_path / "refused").exists()
    assert cli("merge", cfg, "--out", tmp_path / "crime", "--allow-crimes").returncode == 0
    assert cli("merge", linear(tmp_path, zoo, "plain.yaml"), "--out", tmp_path / "plain").returncode == 0
    assert same(tmp_path / "crime", tmp_path / "plain")
    # different tensors are still refused
    crystal, _ = odd_models
    cli("merge", linear(tmp_path, {"a": zoo["a"], "b": crystal}, "odd.yaml"), "--out", tmp_path / "odd",
        "--allow-crimes").one_line_error()


@pytest.mark.parametrize("flags", [
    ["--lazy-unpickle"], ["--no-lazy-unpickle"], ["--trust-remote-code"], ["--clone-tensors"],
    ["--low-cpu-memory"], ["--read-to-gpu"], ["--multi-gpu"], ["--async-write", "--write-threads", "2"],
    ["-v", "-v"], ["-j", "1"], ["--quiet"], ["--safe-serialization"], ["--transformers-cache", "/nonexistent"],
    ["--lora-merge-cache", "/nonexistent", "--lora-merge-dtype", "float16"], ["--no-cuda"], ["--device", "cpu"],
])
def test_accepted_options_change_nothing(tmp_path, zoo, cli, flags):
    cfg = linear(tmp_path, zoo)
    res = cli("merge", cfg, "--out", tmp_path / "x", "--no-write-model-card", *flags)
    assert res.returncode == 0, res.stderr
    ref = tmp_path / "ref"
    assert cli("merge", cfg, "--out", ref, "--no-write-model-card").returncode == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(p.name for p in ref.iterdir())
    assert same(tmp_path / "x", ref)


@pytest.mark.parametrize("flags,needle", [
    (["--unsafe-truncate-embeddings"], "--unsafe-truncate-embeddings"),
    (["--no-safe-serialization"], "safetensors only"),
    (["--device", "xpu"], "--device"),
])
def test_refused_options(tmp_path, zoo, cli, flags, needle):
    cli("merge", linear(tmp_path, zoo), "--out", tmp_path / "x", *flags).one_line_error(needle)
    assert not (tmp_path / "x").exists()


def test_cuda(tmp_path, zoo, cli):
    cfg = linear(tmp_path, zoo)
    assert cli("merge", cfg, "--out", tmp_path / "cpu").returncode == 0
    auto = cli("merge", cfg, "--out", tmp_path / "auto", "--device", "auto")
    assert auto.returncode == 0, auto.stderr
    if torch.cuda.is_available():
        for flags in (["--cuda"], ["--gpu-rich"]):
            res = cli("merge", cfg, "--out", tmp_path / flags[0][2:], *flags)
            assert res.returncode == 0 and "on cuda" in res.stdout
            a, b = state(tmp_path / flags[0][2:]), state(tmp_path / "cpu")
            assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    else:
        assert same(tmp_path / "auto", tmp_path / "cpu")
        cli("merge", cfg, "--out", tmp_path / "gpu", "--cuda").one_line_error("--cuda", "no CUDA device")
        cli("merge", cfg, "--out", tmp_path / "gpu", "--gpu-rich").one_line_error("--cuda")
        cli("merge", "mergekit-yaml", cfg, tmp_path / "gpu", "--cuda").one_line_error("--cuda")
        assert not (tmp_path / "gpu").exists()


def test_random_seed(tmp_path, zoo, cli):
    def dare(name, seed):
        cfg = {"merge_method": "dare_linear", "base_model": str(zoo["base"]), "seed": seed,
               "models": [{"model": str(zoo["a"]), "parameters": {"weight": 1.0, "density": 0.5}},
                          {"model": str(zoo["b"]), "parameters": {"weight": 1.0, "density": 0.5}}]}
        (tmp_path / name).write_text(yaml.safe_dump(cfg))
        return tmp_path / name

    assert cli("merge", dare("s7.yaml", 7), "--out", tmp_path / "s7").returncode == 0
    assert cli("merge", dare("s0.yaml", 0), "--out", tmp_path / "flag", "--random-seed", "7").returncode == 0
    assert cli("merge", dare("s0b.yaml", 0), "--out", tmp_path / "s0").returncode == 0
    assert same(tmp_path / "flag", tmp_path / "s7") and not same(tmp_path / "s0", tmp_path / "s7")


def test_threads_option_leaves_the_callers_thread_count(tmp_path, cli, zoo):
    import torch
    import yaml

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # so that -j 1 would show
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump({"merge_method": "linear", "models": [{"model": str(zoo["a"])}]}))
    try:
        assert cli("merge", "run", config, "--out", tmp_path / "out", "-j", "1").returncode == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
