"""The harvest's browsing page (``--html``), driven in a real headless Chromium from file://."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from luminary.harvest.page import write_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TUPLES = [(["alpha", "bravo"], -1.0), (["charlie", "delta"], -1.5), (["echo", "</script>alpha"], -2.0),
          (["golf", "hotel"], -0.5)]


def write_relation(folder: Path, tuples, weight=1.0) -> None:
    folder.mkdir(parents=True)
    (folder / "prompts.json").write_text(json.dumps([{"prompt": "<ENT0> knows <ENT1> .", "weight": weight,
                                                      "raw_weight": -3.0}]))
    (folder / "ent_tuples.json").write_text(json.dumps([{"entities": e, "score": s} for e, s in tuples]))


@pytest.fixture
def over_checkpoints(tmp_path):
    """A harvest over two checkpoints, as ``harvest_checkpoints`` lays it out, written by hand."""
    out = tmp_path / "kg"
    for i, tuples in enumerate([TUPLES[:1], sorted(TUPLES, key=lambda t: -t[1])]):
        write_relation(out / f"ckpt_{i:03d}" / "knows", tuples)
        (out / f"ckpt_{i:03d}" / "summary.json").write_text(json.dumps(
            [{"relation": "knows", "tuples": len(tuples),
              "precision": {"n": 2, "hits": i, "found": 1, "precision": i / 2}}]))
    (out / "summary.json").write_text(json.dumps({
        "kind": "checkpoints", "precision_at": 2,
        "checkpoints": [{"name": "ckpt_000", "step": 3}, {"name": "ckpt_001", "step": 10}],
        "relations": {"knows": {"tuples": [1, 4], "top": [None, None], "precision": [0.0, 0.5], "hits": [0, 1]}}}))
    return out


def test_the_page_is_one_self_contained_file(over_checkpoints):
    page = write_page(over_checkpoints, {"knows": [["golf", "hotel"]]}).read_text()
    assert "http" not in page and "src=" not in page and "@import" not in page and "url(" not in page
    assert "</script>alpha" not in page  # an entity cannot close the inline script
    assert page.count("</script>") == 2


def open_page(path: Path, run):
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url) if not r.url.startswith("file:") else None)
        page.goto(Path(path).resolve().as_uri())
        page.wait_for_load_state("load")
        try:
            return run(page)
        finally:
            browser.close()
            assert errors == [] and requests == [], (errors, requests)


def rows(page, table="#tuples"):
    return page.eval_on_selector_all(f"{table} tbody tr", "rs => rs.filter(r => r.offsetParent !== null)"
                                                          ".map(r => Array.from(r.cells).map(c => c.textContent))")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_sort_search_and_checkpoints_in_headless_chromium(over_checkpoints):
    path = write_page(over_checkpoints, {"knows": [["golf", "hotel"]]})

    def drive(page):
        seen = {}
        first = rows(page)  # the last checkpoint, best score first
        seen["initial"] = [r[1] for r in first]
        seen["truth"] = [r[4] for r in first]
        seen["prompts"] = rows(page, "#prompts")
        page.click("th[data-key=score]")  # ascending
        seen["ascending"] = [r[1] for r in rows(page)]
        page.click("th[data-key=ent0]")  # alphabetical by first entity
        seen["by_ent0"] = [r[1] for r in rows(page)]
        page.fill("#search", "ALPHA")
        seen["search"] = [r[1:3] for r in rows(page)]
        seen["count"] = page.text_content("#count")
        page.fill("#search", "")
        seen["over"] = rows(page, "#over")
        page.select_option("#view", "0")
        seen["first_ckpt"] = [r[1] for r in rows(page)]
        seen["precision"] = page.text_content("#precision")
        return seen

    seen = open_page(path, drive)
    assert seen["initial"] == ["golf", "alpha", "charlie", "echo"]
    assert seen["truth"] == ["\u2713", "", "", ""]
    assert seen["prompts"] == [["<ENT0> knows <ENT1> .", "1.000", "-3.000"]]
    assert seen["ascending"] == ["echo", "charlie", "alpha", "golf"]
    assert seen["by_ent0"] == ["alpha", "charlie", "echo", "golf"]
    assert seen["search"] == [["alpha", "bravo"], ["echo", "</script>alpha"]] and seen["count"] == "(2 of 4)"
    assert [r[:4] for r in seen["over"]] == [["ckpt_000", "3", "1", "0.000"], ["ckpt_001", "10", "4", "0.500"]]
    assert seen["first_ckpt"] == ["alpha"] and "0.000 (0 of 2)" in seen["precision"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_a_one_model_harvest_page_hides_the_checkpoint_view(tmp_path):
    write_relation(tmp_path / "kg" / "knows", TUPLES)
    (tmp_path / "kg" / "summary.json").write_text(json.dumps([{"relation": "knows", "tuples": 4}]))
    path = write_page(tmp_path / "kg")
    seen = open_page(path, lambda page: (page.is_visible("#view"), page.is_visible("#over"), len(rows(page))))
    assert seen == (False, False, 4)
