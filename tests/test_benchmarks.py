"""Every benchmark starts as its docs say (``python benchmarks/NAME.py``) and answers ``--help``.

A script's folder comes first on the module path, so a benchmark named after a
standard-library module (``tokenize.py``) breaks every other one at ``import torch``:
this catches that, and any import error, without running a benchmark.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").rglob("*.py"))


def test_every_benchmark_answers_help():
    assert len(SCRIPTS) >= 9
    procs = {path: subprocess.Popen([sys.executable, str(path), "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for path in SCRIPTS}
    failed = {}
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0 or "usage" not in out.lower():
            failed[path.relative_to(ROOT).as_posix()] = err.strip().splitlines()[-1:] or out[-200:]
    assert not failed, failed
