"""On a GPU: merges computed on CUDA equal the CPU's (DARE masks are drawn on the CPU either way)."""

import pytest
import torch

from luminary.merge import MergeConfig, run_merge

from tests.merge.merge_helpers import state

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("method", ["linear", "ties", "dare_ties", "slerp", "model_stock"])
def test_cuda_merge_equals_cpu(tmp_path, zoo, method):
    models = {"slerp": ["a"], "model_stock": ["a", "b", "c"]}.get(method, ["a", "b"])
    config = {"merge_method": method, "base_model": str(zoo["base"]) if method != "linear" else None,
              "models": [{"model": str(zoo[k]), "parameters": {"weight": 0.5, "density": 0.6}} for k in models],
              "parameters": {"t": 0.3} if method == "slerp" else None, "seed": 1}
    if method == "model_stock":
        config["models"] = [{"model": str(zoo[k])} for k in models]
    for device in ("cpu", "cuda"):
        run_merge(MergeConfig.model_validate({**config, "device": device}), tmp_path / device)
    cpu, gpu = state(tmp_path / "cpu"), state(tmp_path / "cuda")
    for name in cpu:
        assert torch.allclose(cpu[name], gpu[name], atol=1e-5, rtol=1e-5), name
