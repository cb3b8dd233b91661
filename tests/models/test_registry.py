"""``import luminary`` makes its architectures loadable through the Auto classes, whichever of luminary and
transformers is imported first (fresh interpreters: the test process has both loaded already)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from luminary.models import build_model

LOAD = "m = AutoModelForCausalLM.from_pretrained({folder!r}); print(type(m).__name__)"
ORDERS = {
    "luminary first": "import luminary\nfrom transformers import AutoModelForCausalLM\n" + LOAD,
    "transformers first": "from transformers import AutoModelForCausalLM\nimport luminary\n" + LOAD,
    "a submodule of the auto package first": ("import transformers.models.auto.configuration_auto\nimport luminary\n"
                                              "from transformers import AutoModelForCausalLM\n" + LOAD),
    "config only": ("import luminary\nfrom transformers import AutoConfig\n"
                    "print(type(AutoConfig.from_pretrained({folder!r})).__name__.replace('Config', 'ForCausalLM'))"),
}


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.fixture(scope="module")
def crystal_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crystal")
    build_model("crystal-debug", 64, seed=0).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_crystal_loads_through_auto_classes_in_any_import_order(crystal_folder, order):
    assert run(ORDERS[order].format(folder=crystal_folder)).splitlines()[-1] == "CrystalForCausalLM"

