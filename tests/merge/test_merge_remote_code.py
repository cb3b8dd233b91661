"""A merge of Crystal models carries the architecture's own code: it loads where luminary cannot be imported."""

import json
import os
import subprocess
import sys

import torch

from luminary.core.io import read_manifest
from luminary.models import build_model

from tests.merge.merge_helpers import save_variant
from tests.release.test_loadable import LOAD


def test_a_merge_of_crystal_models_loads_without_luminary(tmp_path, tokenizer, cli):
    from transformers import AutoModelForCausalLM

    base = build_model("crystal-debug", len(tokenizer), seed=0)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    tuned = save_variant(base, tmp_path / "tuned", tokenizer, seed=1)
    config = tmp_path / "merge.yaml"
    config.write_text(f"merge_method: linear\nmodels:\n  - model: {tmp_path / 'base'}\n    parameters: {{weight: 0.5}}\n"
                      f"  - model: {tuned}\n    parameters: {{weight: 0.5}}\ndtype: float32\n")
    out = tmp_path / "merged"
    assert cli("merge", "run", str(config), "--out", str(out)).returncode == 0
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"] == \
        "modeling_crystal.CrystalForCausalLM"
    for name in ("configuration_crystal.py", "modeling_crystal.py"):  # copied, and listed like the weights
        assert (out / name).read_bytes() == (tmp_path / "base" / name).read_bytes() and name in read_manifest(out)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = subprocess.run([sys.executable, "-c", LOAD, str(out)], capture_output=True, text=True, env=env,
                           cwd=str(tmp_path))
    assert shown.returncode == 0, shown.stderr[-2000:]
    result = json.loads(shown.stdout.strip().splitlines()[-1])
    assert result["module"].startswith("transformers_modules.")
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(out)(torch.tensor([[5, 17, 42, 7, 99]])).logits[0, -1, :8]
    assert result["logits"] == expected.tolist()
