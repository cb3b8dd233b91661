"""The HTML report, opened in a real headless Chromium."""

import json
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_files(tmp_path, run_dir, cli):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    (folder / "analysis").mkdir()
    (folder / "analysis" / "memorization.json").write_text(json.dumps(
        {"k": 4, "l": 4, "samples": 3, "steps": [3, 6], "token_match": [[0.1, 0.2], [0.3, 0.9]],
         "full_match": [[0, 0], [0, 1]]}))
    (folder / "analysis" / "benchmark_code-completion.json").write_text(json.dumps(
        {"task": "code-completion", "steps": [3, 6], "scores": [0.0, 0.1],
         "metrics": {"exact_match": [0.0, 0.1], "edit_similarity": [0.2, 0.4]}}))
    result = cli("report", folder)
    assert result.returncode == 0, result.stderr
    page = (folder / "report" / "index.html").read_text()
    for name in ("loss", "lr", "grad_norm", "tokens", "val_loss", "memorization", "benchmark_code-completion"):
        assert f'src="{name}.png"' in page and (folder / "report" / f"{name}.png").stat().st_size > 1000
    assert "http" not in page  # nothing from the network
    assert "p2" in page  # phases listed


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_report_in_headless_chromium(tmp_path, run_dir):
    from playwright.sync_api import sync_playwright

    from luminary.analysis.report import write_report

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
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
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(images) >= 5
    assert all(complete and width > 0 for _, complete, width in images), images
    assert errors == [] and failed == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
