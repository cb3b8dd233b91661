"""The config key ``modules`` on a multi-module model against mergekit 0.1.5: three tiny Qwen2.5-VL
models (text decoder, vision tower, projector) and mergekit's merges of them are stored in
``mergekit_modules.json`` (made by ``make_mergekit_modules.py``); luminary merges the same folders
and must give the same tensors (1e-6) and the same layer counts in the output config."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.merge.merge_helpers import fixture_tensors, rename, state, write_fixture_models

HERE = Path(__file__).parent
FIXTURE = json.loads((HERE / "mergekit_modules.json").read_text())
TENSORS = fixture_tensors(FIXTURE)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_fixture_models(FIXTURE, TENSORS, tmp_path_factory.mktemp("mk_vl_models"))


def run(config: dict, name: str, folders, tmp_path, cli):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(rename(config, folders)))
    return cli("merge", path, "--out", tmp_path / name, "--no-copy-tokenizer")


def expected(case: str) -> dict[str, torch.Tensor]:
    prefix = f"output/{case}/"
    return {k[len(prefix):]: v for k, v in TENSORS.items() if k.startswith(prefix)}


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert got[name].shape == tensor.shape, name
        assert torch.allclose(got[name], tensor, atol=1e-6, rtol=0), name


@pytest.mark.parametrize("case", ["per_module", "models_everywhere", "text_only_slices"])
def test_modules_match_mergekit(case, folders, tmp_path, cli):
    res = run(FIXTURE["cases"][case], case, folders, tmp_path, cli)
    assert res.returncode == 0, res.stderr
    assert_same(state(tmp_path / case), expected(case))
    config = json.loads((tmp_path / case / "config.json").read_text())
    layers = FIXTURE["layers"][case]
    assert config["text_config"]["num_hidden_layers"] == layers["text_config.num_hidden_layers"]
    assert config["vision_config"]["depth"] == layers["vision_config.depth"]


def test_projector_gradient_takes_its_last_value(folders, tmp_path, cli):
    # the projector is two "layers" of the same tensors (as in mergekit): luminary writes the second
    # (t = 1); mergekit writes one or the other by its scheduling, so this is held to a hand computation
    config = {"merge_method": "linear", "dtype": "float32",
              "modules": {"multi_modal_projector": {"parameters": {"weight": [0.2, 1.0]},
                                                    "models": [{"model": "b"},
                                                               {"model": "c", "parameters": {"weight": 1.0}}]}}}
    res = run(config, "projector", folders, tmp_path, cli)
    assert res.returncode == 0, res.stderr
    got = state(tmp_path / "projector")
    assert sorted(got) == sorted(n for n in expected("per_module") if n.startswith("visual.merger."))
    for name, tensor in got.items():
        b, c = (TENSORS[f"input/{m}/{name}"] for m in "bc")
        w = 0.2 if name.startswith("visual.merger.ln_q.") else 1.0  # before the layers: t = 0
        assert torch.allclose(tensor, (w * b + c) / (w + 1), atol=1e-6), name


def test_a_module_merge_method_of_its_own(folders, tmp_path, cli, monkeypatch):
    # luminary's own key: the text decoder by linear, the vision tower by task arithmetic, in one merge;
    # the output is the union of the two mergekit merges that each do one of them
    text = FIXTURE["cases"]["text_linear"]["modules"]["text_decoder"]
    vision = {**FIXTURE["cases"]["vision_task_arithmetic"]["modules"]["vision_tower"],
              "merge_method": "task_arithmetic"}
    config = {"merge_method": "linear", "dtype": "float32",
              "modules": {"text_decoder": text, "vision_tower": vision}}
    monkeypatch.setenv("LUMINARY_QUIET", "0")
    res = run(config, "own_method", folders, tmp_path, cli)
    assert res.returncode == 0, res.stderr
    assert "multi_modal_projector not listed" in " ".join((res.stdout + res.stderr).split())
    assert_same(state(tmp_path / "own_method"), {**expected("text_linear"), **expected("vision_task_arithmetic")})


def test_unknown_module_and_top_level_slices_are_one_line_errors(folders, tmp_path, cli):
    models = [{"model": "a"}, {"model": "b"}]
    bad = [({"merge_method": "linear", "modules": {"vision_model": {"models": models}}},
            ["modules.vision_model", "vision_tower"]),
           ({"merge_method": "linear", "modules": {"text_decoder": {"models": models, "merge_method": "lineer"}}},
            ["lineer"]),
           ({"merge_method": "passthrough", "slices": [{"sources": [{"model": "a", "layer_range": [0, 1]}]}]},
            ["slices", "modules"]),
           ({"merge_method": "linear", "modules": {"text_decoder": {"models": models,
                                                                    "parameters": {"wieght": 1.0}}}},
            ["modules.text_decoder.parameters.wieght"])]
    for i, (config, words) in enumerate(bad):
        run(config, f"bad{i}", folders, tmp_path, cli).one_line_error(*words)
        assert not (tmp_path / f"bad{i}").exists()


def test_output_config_writes_counts_and_vocab_where_the_model_keeps_them():
    # a multi-module plan sets only its modules' keys (never a top-level num_hidden_layers), and the
    # vocabulary size goes under text_config where the reference keeps it there
    from types import SimpleNamespace

    from luminary.merge.merge import output_config
    from luminary.merge.plan import MergePlan

    def config_of(layer_counts, top: dict) -> dict:
        ref = SimpleNamespace(config={**top, "dtype": "float32", "text_config": {"num_hidden_layers": 2, "vocab_size": 16},
                                      "vision_config": {"depth": 2}})
        plan = MergePlan(None, {"a": ref}, [], "a", 5, SimpleNamespace(size=24), None, torch.float32, 0,
                         layer_counts=layer_counts)
        return output_config(plan)

    out = config_of({"text_config.num_hidden_layers": 3}, {"num_hidden_layers": 7})
    assert out["num_hidden_layers"] == 7 and out["text_config"]["num_hidden_layers"] == 3
    assert out["vision_config"]["depth"] == 2 and out["text_config"]["vocab_size"] == 24 and "vocab_size" not in out
    out = config_of({}, {"num_hidden_layers": 7, "vocab_size": 16})  # only a projector: no layer count changes
    assert out["num_hidden_layers"] == 7 and out["text_config"]["num_hidden_layers"] == 2
    assert out["vocab_size"] == 24 and out["text_config"]["vocab_size"] == 24
    assert config_of(None, {"num_hidden_layers": 7})["num_hidden_layers"] == 5  # one module: the plan's count
