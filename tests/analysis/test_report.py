"""The HTML report, opened in a real headless Chromium."""

import json
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# what `luminary harvest RELATIONS --release FOLDER` leaves in FOLDER/analysis/harvest/summary.json
HARVEST = {"kind": "checkpoints", "precision_at": 10,
           "checkpoints": [{"name": "ckpt_000", "step": 3}, {"name": "ckpt_001", "step": 6}],
           "relations": {"returns": {"tuples": [4, 9], "top": [None, None], "precision": [0.0, 0.3],
                                     "hits": [0, 3]},
                         "defines": {"tuples": [2, 5], "top": [None, None]}}}


MEMORIZATION = {"k": 4, "l": 4, "samples": 3, "steps": [3, 6], "token_match": [[0.1, 0.2], [0.3, 0.9]],
                "full_match": [[0, 0], [0, 1]],
                "match_histogram": [[[3, 0, 0, 0, 0], [2, 1, 0, 0, 0]], [[1, 1, 1, 0, 0], [0, 0, 0, 1, 2]]]}


def add_memorization(folder: Path) -> None:
    (folder / "analysis").mkdir(exist_ok=True)
    (folder / "analysis" / "memorization.json").write_text(json.dumps(MEMORIZATION))


def add_harvest(folder: Path) -> None:
    (folder / "analysis" / "harvest").mkdir(parents=True, exist_ok=True)
    (folder / "analysis" / "harvest" / "summary.json").write_text(json.dumps(HARVEST))


def test_report_files(tmp_path, run_dir, cli):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    (folder / "analysis").mkdir()
    add_memorization(folder)
    (folder / "analysis" / "benchmark_code-completion.json").write_text(json.dumps(
        {"task": "code-completion", "steps": [3, 6], "scores": [0.0, 0.1],
         "metrics": {"exact_match": [0.0, 0.1], "edit_similarity": [0.2, 0.4]}}))
    add_harvest(folder)
    result = cli("report", folder)
    assert result.returncode == 0, result.stderr
    page = (folder / "report" / "index.html").read_text()
    for name in ("loss", "lr", "grad_norm", "tokens", "val_loss", "memorization_token_match",
                 "memorization_full_match", "memorization_distribution", "benchmark_code-completion",
                 "harvest_returns", "harvest_defines"):
        assert f'src="{name}.png"' in page and (folder / "report" / f"{name}.png").stat().st_size > 1000
        assert f'href="{name}.csv"' in page  # the numbers behind each plot
        rows = (folder / "report" / f"{name}.csv").read_text().splitlines()
        assert len(rows) >= 3, name
    loss = (folder / "report" / "loss.csv").read_text().splitlines()
    assert loss[0] == "step,loss,smoothed" and len(loss) == 1 + len((folder / "metrics.jsonl").read_text().splitlines())
    assert "<h1>tiny-release</h1>" in page and "<title>luminary report: tiny-release</title>" in page
    assert "parameters</th><td>" in page and "target tokens seen" in page and "tokens per source" in page
    assert "http" not in page  # nothing from the network
    assert "p2" in page  # phases listed
    assert "harvest_returns.png\" alt=\"Harvested knowledge over checkpoints: returns (tuples and precision@10)" in page
    assert "defines (tuples" not in page  # no ground truth: no precision panel named


def test_report_plots_the_harvest_panels(tmp_path, run_dir, monkeypatch):
    """Two panels (tuples, precision) with ground truth, one without."""
    import luminary.analysis.report as report

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    add_harvest(folder)
    panels = {}
    monkeypatch.setattr(report, "_panels_plot",
                        lambda path, title, steps, metrics, phases: panels.__setitem__(path.name, (steps, metrics)))
    report.write_report(folder)
    assert panels["harvest_returns.png"] == ([3, 6], {"tuples harvested": [4, 9], "precision@10": [0.0, 0.3]})
    assert panels["harvest_defines.png"] == ([3, 6], {"tuples harvested": [2, 5]})


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_report_in_headless_chromium(tmp_path, run_dir):
    from playwright.sync_api import sync_playwright

    from luminary.analysis.report import write_report

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    add_harvest(folder)
    add_memorization(folder)
    page_path = write_report(folder)
    errors, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])")
        links = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        # each grid row of figures fills the grid's width: no empty space beside a figure
        rows = page.eval_on_selector_all(".grid", """grids => grids.map(g => {
            const width = g.getBoundingClientRect().width, rows = {};
            for (const f of g.children) { const r = f.getBoundingClientRect();
                rows[Math.round(r.top)] = (rows[Math.round(r.top)] || 0) + r.width; }
            return Object.values(rows).map(w => w / width); })""")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(images) >= 7
    assert {"harvest_returns.png", "harvest_defines.png"} <= {src for src, _, _ in images}
    assert all(complete and width > 0 for _, complete, width in images), images
    assert len(links) > 10 and all((Path(page_path).parent / href).exists() for href in links), links
    assert any("checkpoints/" in href for href in links)
    assert rows and all(share > 0.95 for grid in rows for share in grid), rows
    assert errors == [] and failed == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_smoothing_is_the_bias_corrected_moving_average_by_hand():
    from luminary.analysis.report import smooth

    # w = 0.5: m = 0.5·2 = 1 -> 1/(1-0.5) = 2; m = 0.5·1 + 0.5·4 = 2.5 -> 2.5/0.75; m = 1.25 + 0 -> 1.25/0.875
    assert smooth([2.0, 4.0, 0.0], weight=0.5) == pytest.approx([2.0, 2.5 / 0.75, 1.25 / 0.875])
    assert smooth([3.0] * 60) == pytest.approx([3.0] * 60)  # a constant stays itself from the first point


def test_seen_chunks_follow_the_release_layout():
    """chunk j holds what was trained on after checkpoint j-1 and up to checkpoint j."""
    from luminary.analysis.report import seen_chunks

    assert seen_chunks(3, 3) == [[True, False, False], [True, True, False], [True, True, True]]


def test_a_release_report_links_every_checkpoint_and_chunk(tmp_path, release_dir):
    import re

    from luminary.analysis.report import write_report

    folder = tmp_path / "release"
    shutil.copytree(release_dir, folder)
    page = write_report(folder).read_text()
    index = json.loads((folder / "index.json").read_text())
    hrefs = re.findall(r'href="([^"]+)"', page)
    for entry in index["checkpoints"]:
        assert f"../{entry['checkpoint']}/" in hrefs and f"../{entry['chunk']}" in hrefs
    assert all((folder / "report" / h).exists() for h in hrefs)
    assert "release" in page and f"checkpoints</th><td>{len(index['checkpoints'])}" in page
