"""A released checkpoint loads with plain transformers where luminary cannot be imported."""

import json
import os
import subprocess
import sys

import torch

from luminary.core.io import read_manifest, remote_code_files

LOAD = """
import sys, json
sys.modules["luminary"] = None  # import luminary fails here
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)
ids = torch.tensor([[5, 17, 42, 7, 99]])
print(json.dumps({"module": type(model).__module__, "logits": model(ids).logits[0, -1, :8].tolist()}))
"""


def test_a_release_checkpoint_loads_without_luminary(release_dir):
    from transformers import AutoModelForCausalLM

    folder = sorted((release_dir / "checkpoints").iterdir())[-1]
    assert [p.name for p in remote_code_files(folder)] == ["configuration_crystal.py", "modeling_crystal.py"]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_crystal.CrystalForCausalLM"
    manifest = read_manifest(release_dir)  # the code is listed and checked like the weights
    assert f"checkpoints/{folder.name}/modeling_crystal.py" in manifest
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", LOAD, str(folder)], capture_output=True, text=True, env=env,
                         cwd=str(folder.parent))
    assert out.returncode == 0, out.stderr[-2000:]
    shown = json.loads(out.stdout.strip().splitlines()[-1])
    assert shown["module"].startswith("transformers_modules.")  # the folder's own code, not luminary's
    ours = AutoModelForCausalLM.from_pretrained(folder)  # luminary imported: its own class, no remote code
    assert type(ours).__module__.startswith("luminary.")
    with torch.no_grad():
        expected = ours(torch.tensor([[5, 17, 42, 7, 99]])).logits[0, -1, :8].tolist()
    assert shown["logits"] == expected
