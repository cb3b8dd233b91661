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


def test_the_gpu_throughput_script_runs_every_lever_in_a_dry_run():
    """A lent GPU has 15 minutes: its script's eager, fused and compiled float8 paths are run here first,
    on the CPU at debug size, so that a slip in the script cannot cost those minutes."""
    import json
    import os

    variants = "hf_eager,ours_eager,ours_eager_fused,ours_compiled_fused_fp8"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "benchmarks/gpu/train_throughput.py", "--dry-run", "--variants", variants],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])["configs"]["debug"]
    for variant in variants.split(","):
        assert row[variant].get("tokens_per_s", 0) > 0, (variant, row[variant])
