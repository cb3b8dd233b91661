"""Float8 linear layers: the scaled products against a hand computation, CUDA's layout contract, training."""

import numpy as np
import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.float8 import E4M3, E5M2, Float8Linear, _Float8Matmul, convert_to_float8, scaled_mm, to_float8
from luminary.train.losses import causal_lm_collate, causal_lm_loss


def test_scale_maps_the_largest_magnitude_to_the_format_maximum():
    t = torch.tensor([[0.5, -3.0], [1e-3, 2.0]])
    t8, inv = to_float8(t, E4M3)
    assert inv.item() == pytest.approx(3.0 / 448)
    assert t8.float()[0, 1].item() == -448.0
    back = t8.float() * inv
    assert ((back - t).abs() <= t.abs() * 2**-4 + 1e-6).all()  # e4m3: 3 mantissa bits
    g8, inv_g = to_float8(t, E5M2)
    assert inv_g.item() == pytest.approx(3.0 / 57344) and g8.dtype == E5M2


def dequantized(t, dtype):
    t8, inv = to_float8(t, dtype)
    return t8.double() * inv.double()


@pytest.mark.parametrize("m", [48, 50])  # 50: the token dimension is padded to 64 for the weight gradient
def test_products_equal_the_dequantized_operands_multiplied_by_hand(m):
    torch.manual_seed(0)
    x = torch.randn(m, 32, requires_grad=True)
    w = torch.randn(16, 32, requires_grad=True)
    g = torch.randn(m, 16)
    y = _Float8Matmul.apply(x, w, torch.float32)
    y.backward(g)
    x_pad = torch.cat([x.detach(), torch.zeros(-m % 16, 32)])
    xq, wq = dequantized(x_pad, E4M3), dequantized(w.detach(), E4M3)
    g_pad = torch.cat([g, torch.zeros(-m % 16, 16)])
    gq = dequantized(g_pad, E5M2)
    torch.testing.assert_close(y.double(), (xq @ wq.T)[:m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), (gq @ wq)[:m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad.double(), gq.T @ xq, rtol=1e-5, atol=1e-4)


def test_the_cpu_product_is_torchs_scaled_mm():
    """On the CPU, scaled_mm multiplies dequantized float32 operands; torch's kernel gives the same."""
    a8, inv_a = to_float8(torch.randn(32, 64), E5M2)
    b8, inv_b = to_float8(torch.randn(48, 64), E4M3)
    ours = scaled_mm(a8, b8.t(), inv_a, inv_b, torch.float32)
    torch.testing.assert_close(ours, torch._scaled_mm(a8, b8.t(), scale_a=inv_a, scale_b=inv_b,
                                                      out_dtype=torch.float32), rtol=1e-6, atol=1e-6)


def test_operands_keep_the_cuda_layout_contract():
    a8, inv = to_float8(torch.randn(32, 32), E4M3)
    b8, _ = to_float8(torch.randn(16, 32), E4M3)
    scaled_mm(a8, b8.t(), inv, inv, torch.float32)  # row-major @ column-major
    with pytest.raises(RuntimeError, match="column-major"):
        scaled_mm(a8, b8.t().contiguous(), inv, inv, torch.float32)
    c8, _ = to_float8(torch.randn(24, 40), E4M3)
    with pytest.raises(RuntimeError, match="multiples of 16"):
        scaled_mm(c8, c8.t(), inv, inv, torch.float32)


def test_a_float8_layer_is_close_to_the_float32_one():
    torch.manual_seed(1)
    ref = torch.nn.Linear(256, 128)
    layer = torch.nn.Linear(256, 128)
    layer.load_state_dict(ref.state_dict())
    layer.__class__ = Float8Linear
    x = torch.randn(4, 30, 256)
    x_ref = x.clone().requires_grad_()
    x.requires_grad_()
    y, y_ref = layer(x), ref(x_ref)
    assert ((y - y_ref).norm() / y_ref.norm()).item() < 0.05
    y.square().sum().backward()
    y_ref.square().sum().backward()
    cos = torch.nn.functional.cosine_similarity
    assert cos(layer.weight.grad.flatten(), ref.weight.grad.flatten(), dim=0) > 0.99
    assert cos(x.grad.flatten(), x_ref.grad.flatten(), dim=0) > 0.99
    torch.testing.assert_close(layer.bias.grad, 2 * y.detach().sum((0, 1)))  # the bias stays in full precision
    layer.eval()  # evaluation multiplies as it always did
    torch.testing.assert_close(layer(x), ref(x))


def test_conversion_keeps_names_and_skips_widths_not_divisible_by_16():
    model = build_model("llama-tiny", 512, seed=0)  # hidden 256, FFN 688 = 43 × 16
    keys = list(model.state_dict())
    names = convert_to_float8(model)
    assert len(names) == 4 * 7 and "model.layers.0.mlp.down_proj" in names
    assert type(model.lm_head) is torch.nn.Linear  # the head stays as it was
    assert list(model.state_dict()) == keys
    debug = build_model("llama-debug", 64, seed=0)  # FFN 172: the MLP stays, attention converts
    assert all("self_attn" in n for n in convert_to_float8(debug))
    with pytest.raises(LuminaryError, match="float8: Linear has no list of blocks"):
        convert_to_float8(torch.nn.Linear(16, 16))


def test_training_in_float8_follows_float32():
    rng = np.random.default_rng(0)
    data = [np.tile(rng.integers(1, 512, size=8), 6).tolist() for _ in range(32)]  # learnable repeats

    def losses(float8):
        model = build_model("llama-tiny", 512, seed=0)
        deployer = Deployer(seed=0, precision="fp32", verbose=False, float8=float8)
        trainer = Trainer(deployer, causal_lm_collate, causal_lm_loss, model, OptimizerConfig(lr=3e-3))
        return [r["loss"] for r in trainer.fit(data, 8, max_steps=16)], model

    ours, model = losses("emulated")
    ref, _ = losses(False)
    assert isinstance(model.model.layers[0].mlp.up_proj, Float8Linear)
    assert np.mean(ours[-4:]) < ours[0] - 1.0  # it learns (6.16 to 4.83 over 16 steps, measured)
    assert ours == pytest.approx(ref, rel=0.1)  # and follows the float32 run step by step (≤ 4.2% measured)
    assert np.mean(ours[-4:]) == pytest.approx(np.mean(ref[-4:]), rel=0.05)


def test_float8_is_refused_under_tensor_parallel(tmp_path, cli, tokenizer_dir):
    config = tmp_path / "t.yaml"
    config.write_text(f"model: llama-debug\ntokenizer: {tokenizer_dir}\ndata: {{path: {tmp_path}, seq_len: 32}}\n"
                      "train: {max_steps: 1}\ndeploy: {float8: emulated, tp: 2}\n")
    cli("train", config, "--out", tmp_path / "run").one_line_error("float8")
