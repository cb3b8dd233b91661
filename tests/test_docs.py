"""Every fenced Python and shell block in README.md and docs/ runs as written, or says why not.

A block runs in a fresh folder holding ``examples/``, ``src/``,
``benchmarks/`` and ``.venv`` of this checkout (links), and ``runs/crystal-
tiny``: a copy of the suite's tiny pretraining run standing in for the one
``make demo`` trains (same recipe format and layout, 2 layers instead of 4),
so the quick start's commands run on it. Python blocks run with this
interpreter; shell blocks with ``bash -euo pipefail``, this interpreter's
``bin`` first on PATH.

A block that cannot run here says so on the line before its fence::

    <!-- docs-test: skip REASON -->

and the reason is shown in the test report (a GPU, the 19-minute demo, files
from the Hub, a placeholder the reader fills in).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- docs-test: (?P<mark>[^\n]*?) -->\n)?```(?P<lang>python|bash|sh)\n(?P<body>.*?)^```",
                   re.S | re.M)
TIMEOUT_S = 240


def blocks() -> list:
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            line = text[:m.start("lang")].count("\n") + 1
            out.append(pytest.param(m.group("lang"), m.group("body"), m.group("mark"),
                                    id=f"{page.relative_to(ROOT)}:{line}"))
    return out


@pytest.fixture
def world(tmp_path, run_dir) -> Path:
    for name in ("examples", "src", "benchmarks", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(run_dir, tmp_path / "runs" / "crystal-tiny")
    return tmp_path


@pytest.mark.parametrize("lang, body, mark", blocks())
def test_block_runs_as_written(lang, body, mark, world):
    if mark is not None:
        reason = mark.removeprefix("skip").strip()
        assert mark.startswith("skip ") and reason, f"a docs-test mark is 'skip REASON', got {mark!r}"
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HOME": str(world / "home"), "MPLBACKEND": "Agg"}
    script = world / ("block.py" if lang == "python" else "block.sh")
    script.write_text(body)
    command = [sys.executable, str(script)] if lang == "python" else ["bash", "-euo", "pipefail", str(script)]
    res = subprocess.run(command, cwd=world, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert res.returncode == 0, f"exit {res.returncode}\n--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}"


def test_every_page_is_read():
    assert len(PAGES) > 10 and len(blocks()) > 30
