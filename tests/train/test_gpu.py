"""On a GPU of compute capability 8.9+: torch's float8 kernel takes our operands as laid out
and gives the dequantized product; a compiled step with every lever on runs."""

import pytest
import torch

from luminary.train.float8 import E4M3, E5M2, _Float8Matmul, to_float8

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9), reason="needs an sm89+ GPU")


@pytest.mark.parametrize("m", [2048, 2049 * 2])  # 4098: the token dimension is padded for the weight gradient
def test_cuda_float8_products_equal_the_dequantized_ones(m):
    torch.manual_seed(0)
    x = torch.randn(m, 256, device="cuda", requires_grad=True)
    w = torch.randn(512, 256, device="cuda", requires_grad=True)
    g = torch.randn(m, 512, device="cuda")
    y = _Float8Matmul.apply(x, w, torch.float32)
    y.backward(g)
    pad = -m % 16

    def deq(t, dtype):
        t8, inv = to_float8(torch.cat([t, t.new_zeros(pad, t.shape[1])]) if t.shape[0] == m else t, dtype)
        return t8.double() * inv.double()

    xq, wq, gq = deq(x.detach(), E4M3), deq(w.detach(), E4M3), deq(g, E5M2)
    torch.testing.assert_close(y.double(), (xq @ wq.T)[:m], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(x.grad.double(), (gq @ wq)[:m], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(w.grad.double(), gq.T @ xq, rtol=1e-4, atol=1e-2)


def test_compiled_step_with_float8_fused_head_and_checkpointing():
    import numpy as np

    from luminary.models import build_model
    from luminary.train import Deployer, OptimizerConfig, Trainer
    from luminary.train.losses import causal_lm_collate, causal_lm_loss

    rng = np.random.default_rng(0)
    data = [rng.integers(1, 4096, size=257).tolist() for _ in range(16)]
    model = build_model("llama-tiny", 4096, seed=0)
    deployer = Deployer(seed=0, precision="bf16", compile=True, float8=True, activation_checkpointing=True,
                        verbose=False)
    trainer = Trainer(deployer, causal_lm_collate, lambda m, b, t: causal_lm_loss(m, b, t, fused=True), model,
                      OptimizerConfig(lr=1e-3))
    records = trainer.fit(data, 4, max_steps=4)
    assert all(np.isfinite(r["loss"]) for r in records)
