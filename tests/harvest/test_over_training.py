"""Knowledge over training: every checkpoint of a release (or a run) harvested, with precision@n."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from luminary.core.io import verify_manifest
from luminary.harvest.precision import precision_at

# seeds of one token each for the 512-token test BPE: --max-ent-tokens 1 keeps 5 checkpoints fast
RELATIONS = {"relations": [{"name": "returns", "prompt": "<ENT0> returns <ENT1> .",
                            "seeds": [["self", "value"], ["return", "file"], ["def", "None"]],
                            "truth": "returns.tsv"}]}
TRUTH = "self\tvalue\nname\tstring\nfile\tdata\n"


@pytest.fixture
def harvest_cli(monkeypatch, cli):
    import luminary.cli.app as app_module
    from luminary.cli.harvest import register
    import typer

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    monkeypatch.setattr(app_module, "app", app)
    return cli


@pytest.fixture(scope="module")
def relations(tmp_path_factory):
    root = tmp_path_factory.mktemp("over_training")
    (root / "returns.tsv").write_text(TRUTH)
    path = root / "relations.yaml"
    path.write_text(yaml.safe_dump(RELATIONS))
    return path


@pytest.fixture(scope="module")
def harvested_release(tmp_path_factory, release_dir, relations):
    """A copy of the session release, harvested into its default place (analysis/harvest) with --html."""
    from luminary.harvest.over_training import harvest_checkpoints
    from luminary.harvest.run import HarvestConfig

    folder = tmp_path_factory.mktemp("harvested") / "rel"
    shutil.copytree(release_dir, folder)
    summary = harvest_checkpoints(relations, folder, cfg=HarvestConfig(n=4, max_ent_tokens=1, precision_at=3),
                                  html=True)
    return folder, summary


def test_precision_at_n_counts_missing_tuples_as_wrong_and_skips_seeds():
    truth = [["self", "value"], ["name", "String"]]
    found = [["self", "value"], ["Name", " string"], ["file", "data"]]
    assert precision_at(found, truth, n=2) == {"n": 2, "hits": 2, "found": 2, "precision": 1.0}
    assert precision_at(found, truth, n=4) == {"n": 4, "hits": 2, "found": 3, "precision": 0.5}
    assert precision_at(found, truth, n=2, seeds=[["self", "value"]]) == {"n": 2, "hits": 1, "found": 2,
                                                                          "precision": 0.5}


def test_truth_from_a_file_or_inline_and_a_bad_arity_is_one_line(tmp_path, relations, harvest_cli, release_dir):
    from luminary.harvest.relations import load_relations

    assert load_relations(relations).relations[0].truth == [["self", "value"], ["name", "string"], ["file", "data"]]
    bad = tmp_path / "bad.yaml"
    rel = json.loads(json.dumps(RELATIONS))
    rel["relations"][0]["truth"] = [["self"]]
    bad.write_text(yaml.safe_dump(rel))
    harvest_cli("harvest", bad, "--release", release_dir, "--out", tmp_path / "o").one_line_error(
        "truth tuple ['self']", "1 entities, not 2")
    harvest_cli("harvest", relations, "--out", tmp_path / "o").one_line_error("exactly one of --model M or --release R")
    harvest_cli("harvest", relations, "--release", tmp_path, "--out", tmp_path / "o").one_line_error(
        "neither a run folder nor a release")
    assert not (tmp_path / "o").exists()


def test_every_checkpoint_is_harvested_with_a_summary_over_checkpoints(harvested_release):
    folder, summary = harvested_release
    out = folder / "analysis" / "harvest"
    assert verify_manifest(out) == []
    steps = [e["step"] for e in json.loads((folder / "index.json").read_text())["checkpoints"]]
    assert [c["step"] for c in summary["checkpoints"]] == steps and len(steps) == 5
    rel = summary["relations"]["returns"]
    for i, c in enumerate(summary["checkpoints"]):
        assert c["name"] == f"ckpt_{i:03d}"
        tuples = json.loads((out / c["name"] / "returns" / "ent_tuples.json").read_text())
        assert len(tuples) == rel["tuples"][i] and 1 <= len(tuples) <= 4
        row = json.loads((out / c["name"] / "summary.json").read_text())[0]
        expected = precision_at([t["entities"] for t in tuples], json.loads(json.dumps(
            [["self", "value"], ["name", "string"], ["file", "data"]])), 3, RELATIONS["relations"][0]["seeds"])
        assert row["precision"] == expected and rel["precision"][i] == expected["precision"]
    assert json.loads((out / "summary.json").read_text()) == summary
    page = (out / "index.html").read_text()
    assert f"<title>harvest: {out}</title>" in page  # the final name, not the temporary folder's


def test_the_report_of_a_harvested_release_plots_it(harvested_release):
    from luminary.analysis.report import write_report

    folder, _ = harvested_release
    page = write_report(folder).read_text()
    assert 'src="harvest_returns.png"' in page and "precision@3" in page
    assert (folder / "report" / "harvest_returns.png").stat().st_size > 1000


def test_a_run_folder_is_harvested_too(tmp_path, run_dir, relations, harvest_cli):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    for extra in sorted((folder / "checkpoints").iterdir())[1:-1]:  # keep the first and last: fast
        shutil.rmtree(extra)
    result = harvest_cli("harvest", relations, "--release", folder, "--n", 3, "--max-ent-tokens", 1,
                         "--search", "beam")
    assert result.returncode == 0, result.stderr
    summary = json.loads((folder / "analysis" / "harvest" / "summary.json").read_text())
    assert [c["step"] for c in summary["checkpoints"]] == [3, 10]
    assert "ckpt_001" in result.stdout and "precision@10" in result.stdout
    assert not (folder / "analysis" / "harvest" / "index.html").exists()  # no --html


def test_the_release_page_shows_each_checkpoint_in_headless_chromium(harvested_release):
    from tests.harvest.test_page import CHROMIUM, open_page, rows

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is installed by .ci/run")
    folder, summary = harvested_release

    def drive(page):
        counts = []
        for i in range(len(summary["checkpoints"])):
            page.select_option("#view", str(i))
            counts.append(len(rows(page)))
        return counts, len(rows(page, "#over"))

    counts, over = open_page(folder / "analysis" / "harvest" / "index.html", drive)
    assert counts == summary["relations"]["returns"]["tuples"] and over == 5
