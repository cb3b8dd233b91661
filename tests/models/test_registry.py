"""``import luminary`` makes its architectures loadable through the Auto classes, whichever of luminary and
transformers is imported first, and whatever pulls the Auto classes in (fresh interpreters: the test process
has both loaded already). Registration waits for the Auto classes, so importing luminary stays light."""

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
    "a mixture module first": ("import luminary.merge.mixture_models\nfrom transformers import AutoModelForCausalLM\n"
                               + LOAD),
    "a config class first": "import luminary\nfrom transformers import LlamaConfig, AutoModelForCausalLM\n" + LOAD,
    "a model module first": ("import luminary\nimport transformers.models.llama.modeling_llama\n"
                             "from transformers import AutoModelForCausalLM\n" + LOAD),
    "modeling_utils before luminary": ("import transformers.modeling_utils\nimport luminary\n"
                                       "from transformers import AutoModelForCausalLM\n" + LOAD),
    "luminary's loader": "from luminary.models import load_model\nprint(type(load_model({folder!r})).__name__)",
    "from a thread": ("import threading, luminary\ndef load():\n    from transformers import AutoModelForCausalLM\n"
                      "    " + LOAD + "\nt = threading.Thread(target=load)\nt.start()\nt.join()"),
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



def test_importing_luminary_and_its_merge_code_leaves_transformers_model_code_alone():
    """The start-up that ``luminary merge`` pays: no transformers model code until something uses it."""
    code = ("import sys, luminary, luminary.merge, luminary.cli.app\n"
            "from luminary.models import registry\n"
            "print(registry.is_registered(), 'transformers.modeling_utils' in sys.modules)\n"
            "from transformers import AutoConfig\n"
            "print(registry.is_registered(), registry._AutoClassWatcher._installed is None)")
    assert run(code).splitlines()[-2:] == ["False False", "True True"]
