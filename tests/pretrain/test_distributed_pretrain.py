"""The pretraining command under torchrun sees the same global batches and losses as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml



def env():
    src = str(Path(__file__).resolve().parents[2] / "src")
    return dict(os.environ, OMP_NUM_THREADS="1", LUMINARY_QUIET="1",
                PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p))


@pytest.mark.timeout(400)
def test_two_processes_match_one(tmp_path, recipe):
    recipe["phases"][0]["steps"] = recipe["phases"][1]["steps"] = 3
    recipe["deploy"]["checkpoints"] = {"count": 2}
    recipe.pop("completion_prompt")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "luminary", "pretrain", str(path), "--out", str(one)],
                   env=env(), check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             "-m", "luminary", "pretrain", str(path), "--out", str(two)],
                            env=env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    a = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["batch_sha256"] for r in a] == [r["batch_sha256"] for r in b]
    assert [r["source_tokens"] for r in a] == [r["source_tokens"] for r in b]  # counted in the batches
    assert [r["target_tokens"] for r in a] == [r["target_tokens"] for r in b]
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4, abs=1e-5)
        for source, value in x.get("val_loss", {}).items():
            assert y["val_loss"][source] == pytest.approx(value, rel=1e-4)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(two / "checkpoints" / "step_000006")
