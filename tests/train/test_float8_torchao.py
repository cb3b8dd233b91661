"""luminary's float8 layers against torchao's Float8Linear, the peer a GPU run uses where it is installed.

Both follow the tensorwise recipe (dynamic per-tensor scales, e4m3 operands forward, e5m2 gradients).
The casts must agree bit for bit; the products agree to float32 summation order, since on the CPU
luminary multiplies the dequantized operands in float32 where torchao calls torch's reference loop.
"""

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# `make setup` installs torchao into .venv/float8-peer, not the environment itself: installed there,
# transformers would import it (seconds) in every process that loads a model
PEER = Path(sys.prefix) / "float8-peer"
if PEER.is_dir() and str(PEER) not in sys.path:
    sys.path.append(str(PEER))

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.float8 import E4M3, E5M2, Float8Linear, convert_to_float8, to_float8, torchao_converter
from luminary.train.losses import causal_lm_collate, causal_lm_loss

# found, not imported: torchao is imported by the tests themselves, not at collection
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchao") is None,
                                reason="needs torchao (pip install 'luminary[float8]')")


@pytest.mark.parametrize("dtype", [E4M3, E5M2])
def test_the_casts_equal_torchaos_bit_for_bit(dtype):
    from torchao.float8.float8_scaling_utils import hp_tensor_to_float8_dynamic
    from torchao.float8.float8_training_tensor import LinearMMConfig

    torch.manual_seed(0)
    # the (688, 384) weight: its float32 scale fmax · (1/amax) is one ulp off the rounded quotient,
    # which moved two of its entries to the neighbouring float8 value before the scale was fixed
    tensors = [torch.randn(64, 32) * 10 ** e for e in range(-4, 3)] + [torch.tensor([[0.0, 0.0]])]
    for shape in [(128, 64), (256, 128), (688, 384)]:
        tensors.append(torch.nn.Linear(shape[1], shape[0]).weight.detach())
    for t in tensors:
        ours, inv = to_float8(t, dtype)
        theirs = hp_tensor_to_float8_dynamic(t, dtype, LinearMMConfig())
        assert torch.equal(ours.view(torch.uint8), theirs._data.view(torch.uint8))
        assert torch.equal(inv, theirs._scale.reciprocal())


@pytest.mark.parametrize("shape", [(32, 64, 128), (50, 128, 256), (256, 384, 688)])
def test_a_layer_equals_torchaos_forward_and_backward(shape):
    m, k, n = shape
    torch.manual_seed(0)
    base = torch.nn.Linear(k, n)
    ours = copy.deepcopy(base)
    ours.__class__ = Float8Linear
    theirs = torch.nn.Sequential(copy.deepcopy(base))
    torchao_converter()(theirs)
    theirs = theirs[0]
    assert type(theirs).__module__.startswith("torchao")
    x = torch.randn(m, k) * 3
    g = torch.randn(m, n)
    outputs = []
    for layer in (ours, theirs):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        y.backward(g)
        outputs.append((y, xi.grad, layer.weight.grad, layer.bias.grad))
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_auto_takes_luminarys_layer_on_the_cpu_and_torchao_when_asked():
    names = convert_to_float8(build_model("llama-debug", 64, seed=0))
    model = build_model("llama-debug", 64, seed=0)
    keys = list(model.state_dict())
    assert convert_to_float8(model, backend="torchao") == names
    converted = [model.get_submodule(n) for n in names]
    assert all(type(m).__module__.startswith("torchao") for m in converted)
    assert type(model.lm_head) is torch.nn.Linear and list(model.state_dict()) == keys
    assert all(type(model.get_submodule(n)) is torch.nn.Linear
               for n, _ in model.named_modules() if n.endswith("mlp.up_proj"))  # FFN 172: not a multiple of 16
    auto = build_model("llama-debug", 64, seed=0)
    convert_to_float8(auto, "cpu")
    assert all(type(auto.get_submodule(n)) is Float8Linear for n in names)


def test_training_with_torchaos_layers_follows_luminarys():
    rng = np.random.default_rng(0)
    data = [np.tile(rng.integers(1, 64, size=8), 4).tolist() for _ in range(16)]

    def losses(backend):
        model = build_model("llama-debug", 64, seed=0)
        convert_to_float8(model, backend=backend)
        trainer = Trainer(Deployer(seed=0, precision="fp32", verbose=False), causal_lm_collate, causal_lm_loss,
                          model, OptimizerConfig(lr=3e-3))
        return [r["loss"] for r in trainer.fit(data, 8, max_steps=4)]

    ours, theirs = losses("luminary"), losses("torchao")
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_asking_for_torchao_without_it_is_one_line(monkeypatch):
    import luminary.train.float8 as float8

    monkeypatch.setattr(float8, "torchao_converter", lambda: None)
    with pytest.raises(LuminaryError, match="float8: torchao is not installed"):
        float8.convert_to_float8(build_model("llama-debug", 64, seed=0), backend="torchao")
