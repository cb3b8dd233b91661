"""A small recipe end to end, its batches rebuilt from the recipe, and bad recipes."""

import json

import pytest
import yaml

from luminary.core.runs import read_metrics

def write(tmp_path, data, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_small_recipe_end_to_end(tmp_path, cli, recipe):
    run = tmp_path / "run"
    recipe["deploy"]["checkpoints"]["best"] = {"metric": "val_loss.code"}
    result = cli("pretrain", write(tmp_path, recipe), "--out", run)
    assert result.returncode == 0, result.stderr
    assert "code val loss" in result.stdout and "completion" in result.stdout
    # what the model learned, honestly: greedy beside a seeded sample, and the first and final checkpoints'
    # code-completion score; then the final checkpoint's path and the next command
    out = result.stdout
    assert "greedy:" in out and "sampled (temperature 0.8, top-k 50, seed 0):" in out
    assert "code completion, next line of 24 standard-library test functions (greedy): edit similarity" in out
    assert f"final checkpoint: {run / 'checkpoints'}" in out and f"next: luminary release {run} --out" in out
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(12))
    assert [r["phase"] for r in records] == ["p1"] * 6 + ["p2"] * 6
    lock = json.loads((run / "recipe.lock.json").read_text())
    # realised samples per phase within one of weight × samples
    for phase, cfg in zip(lock["phases"], recipe["phases"]):
        for source, weight in cfg["weights"].items():
            assert abs(phase["samples_per_source"][source] - weight * phase["samples"]) < 1
    # target tokens counted in the batches: every window position but the first, less <fim_pad>
    planned = {s: sum(p["tokens_per_source"][s] for p in lock["phases"]) for s in ("prose", "code")}
    seen = records[-1]["source_tokens"]
    assert seen["prose"] == planned["prose"]  # no FIM on prose: 64 targets per sample
    assert planned["code"] - 8 * 6 * 64 < seen["code"] <= planned["code"]  # FIM pads only in p2's code
    assert sum(r["target_tokens"] for r in records) == sum(seen.values())
    assert all(r["tokens"] == 8 * 65 for r in records)  # inputs, as fed: T + 1 per window
    evaluated = [r["step"] + 1 for r in records if "val_loss" in r]
    assert evaluated == [4, 6, 8, 12]
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == \
        [f"step_{s:06d}" for s in evaluated]
    best = json.loads((run / "checkpoints" / "best.json").read_text())  # reachable from a recipe
    code_loss = {r["step"] + 1: r["val_loss"]["code"] for r in records if "val_loss" in r}
    assert best["step"] == min(code_loss, key=code_loss.get) and best["value"] == min(code_loss.values())
    # every step's batch, rebuilt from the recipe alone, hashes to what the trainer logged
    for step in range(12):
        shown = cli("data", "inspect", run, "--step", step, "--json")
        assert shown.returncode == 0, shown.stderr
        report = json.loads(shown.stdout)
        assert report["batch_sha256"] == report["logged_sha256"] == records[step]["batch_sha256"]
    assert "<fim_prefix>" in "".join(json.loads(cli("data", "inspect", run, "--step", 9, "--json").stdout)
                                     ["samples"][k]["excerpt"] for k in range(8))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "step_000012")
    assert type(model).__name__ == "CrystalForCausalLM"
    # a finished run resumed does nothing more
    again = cli("pretrain", write(tmp_path, recipe), "--out", run, "--resume")
    assert again.returncode == 0, again.stderr
    assert len(read_metrics(run / "metrics.jsonl")) == 12


def test_inspect_outside_the_run(tmp_path, cli, recipe):
    run = tmp_path / "run"
    recipe["phases"] = recipe["phases"][:1]
    recipe["phases"][0]["steps"] = 2
    assert cli("pretrain", write(tmp_path, recipe), "--out", run).returncode == 0
    bad = cli("data", "inspect", run, "--step", 2)
    assert bad.returncode == 2 and "--step" in bad.stderr


def bad(recipe, path, value):
    node = recipe
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return recipe


@pytest.mark.parametrize(
    "path, value, needle",
    [
        ("phases.0.weights.docs", 0.5, "phases[0].weights.docs: unknown source"),
        ("phases.0.weights.prose", -0.5, "must be >= 0"),
        ("phases.1.weights", {"prose": 0.0, "code": 0.0}, "all weights are zero"),
        ("phases.0.steps", 0, "positive length"),
        ("sources.code.path", "/nonexistent/folder", "sources.code.path"),
        ("model.vocab_size", 100, "model.vocab_size"),
        ("train.micro_batch", 3, "multiple of"),
        ("phases.0.schedule.peak_lr", "continue", "phases[0].schedule"),
        ("model.preset", "crystal-tiniest", "model: unknown preset or family 'crystal-tiniest'"),
        ("model.overrides", {"num_hiden_layers": 1}, "model.overrides.num_hiden_layers: not a field of"),
        ("model.overrides", {"num_attention_heads": 3}, "not divisible by num_attention_heads 3"),
    ],
)
def test_bad_recipes_one_line_exit_2_nothing_written(tmp_path, cli, recipe, path, value, needle):
    result = cli("pretrain", write(tmp_path, bad(recipe, path, value)), "--out", tmp_path / "run")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_empty_source_folder(tmp_path, cli, recipe):
    (tmp_path / "empty").mkdir()
    recipe["sources"]["code"]["path"] = str(tmp_path / "empty")
    result = cli("pretrain", write(tmp_path, recipe), "--out", tmp_path / "run")
    assert result.returncode == 2 and "sources.code.path" in result.stderr
    assert not (tmp_path / "run").exists()


def test_megatron_blend_from_the_recipe_and_the_drift_of_both(tmp_path, cli, recipe):
    from luminary.data.mixture import megatron_blend

    run = tmp_path / "run"
    recipe["phases"] = recipe["phases"][:1]
    recipe["phases"][0]["steps"] = 2
    recipe["blend"] = "megatron"
    assert cli("pretrain", write(tmp_path, recipe), "--out", run).returncode == 0
    lock = json.loads((run / "recipe.lock.json").read_text())
    assert lock["blend"] == "megatron"
    report = json.loads(cli("data", "inspect", run, "--step", 0, "--json").stdout)
    assert report["blend"] == "megatron" and set(report["blend_drift"]) == {"tijdeman", "megatron"}
    expected = megatron_blend([0.9, 0.1], 8)[0]  # sources in recipe order: prose, code
    assert [s["source"] for s in report["samples"]] == [["prose", "code"][d] for d in expected]
    assert "largest drift from the weights" in cli("data", "inspect", run, "--step", 0).stdout


def test_a_run_written_by_an_older_luminary_resumes(tmp_path, cli, recipe):
    """run.json from before the deploy section (seed and checkpoints at the top) is the same run."""
    run = tmp_path / "run"
    recipe["phases"] = recipe["phases"][:1]
    recipe["phases"][0]["steps"] = 2
    path = write(tmp_path, recipe)
    assert cli("pretrain", path, "--out", run).returncode == 0
    info = json.loads((run / "run.json").read_text())
    config = info["config"]
    deploy = config.pop("deploy")
    config.pop("blend")
    config["seed"] = deploy["seed"]
    config["checkpoints"] = {"count": deploy["checkpoints"]["count"], "every": None, "phase_ends": True}
    for phase in config["phases"]:
        phase.pop("checkpoint_at_end")
    (run / "run.json").write_text(json.dumps(info))
    assert cli("pretrain", path, "--out", run, "--resume").returncode == 0
    recipe["deploy"]["seed"] = 6
    cli("pretrain", write(tmp_path, recipe, "other.yaml"), "--out", run, "--resume").one_line_error(
        "deploy.seed is 5 there and 6 here")


@pytest.mark.parametrize("sources, fimmed", [(None, {"code"}), ("all", {"code", "prose"}),
                                             ({"prose": 1.0}, {"prose"})])
def test_fim_goes_to_code_sources_unless_told(tmp_path, recipe, sources, fimmed):
    """CrystalCoder FIMs its code source only; ``fim.sources`` chooses otherwise."""
    from luminary.core.config import validate
    from luminary.pretrain.prepare import prepare
    from luminary.pretrain.recipe import Recipe

    if sources is not None:
        recipe["phases"][1]["fim"]["sources"] = sources
    prepared = prepare(validate(Recipe, recipe, "recipe"), tmp_path / "run")
    mixture, fim = prepared.mixture, prepared.mixture.fim_tokens
    seen = {"code": 0, "prose": 0}
    for i in range(6 * 8, 12 * 8):  # phase p2
        sample = mixture.sample(i)
        assert len(sample["input_ids"]) == 65
        seen[sample["source"]] += int(fim.prefix in sample["input_ids"])
    assert {name for name, n in seen.items() if n} == fimmed
    rates = prepared.lock["phases"][1]["fim"]["sources"]
    assert {name for name, rate in rates.items() if rate > 0} == fimmed


def test_a_fim_source_that_is_not_a_source_is_refused(tmp_path, cli, recipe):
    recipe["phases"][1]["fim"]["sources"] = ["kode"]
    cli("pretrain", write(tmp_path, recipe), "--out", tmp_path / "run").one_line_error(
        "phases[1].fim.sources.kode: unknown source")
    assert not (tmp_path / "run").exists()


def test_a_run_from_before_fim_sources_keeps_its_fim():
    """Before ``fim.sources``, FIM went to every source and cut each document: such a run.json
    resumes with exactly that, and only phases that had FIM are touched."""
    from luminary.pretrain.recipe import upgrade_recipe

    old = {"deploy": {"seed": 1}, "phases": [{"name": "a", "fim": {"rate": 0.0, "spm": 0.5}},
                                             {"name": "b", "fim": {"rate": 0.9, "spm": 0.5}}]}
    new = upgrade_recipe(old)
    assert new["phases"][0]["fim"] == {"rate": 0.0, "spm": 0.5}
    assert new["phases"][1]["fim"] == {"rate": 0.9, "spm": 0.5, "sources": "all", "truncate": "document"}
    assert old["phases"][1]["fim"] == {"rate": 0.9, "spm": 0.5}  # the input is left alone
