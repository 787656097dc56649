"""Layers shared by the architectures: the causal depthwise conv + SiLU of the Mamba mixers (the
reference against torch's Conv1d, the C kernel against the reference) and the SwiGLU FFN."""

import pytest
import torch
import torch.nn.functional as F

from dnalm.conv import causal_conv_silu, causal_conv_silu_native, causal_conv_silu_ref, native_conv_available
from dnalm.layers import SwiGLU


@pytest.fixture
def native():
    if not native_conv_available():
        pytest.skip("no C kernel (JANUS_NATIVE=0)")
    return causal_conv_silu_native


def make_inputs(batch, length, channels, width=4, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, channels, generator=g)
    weight = torch.randn(channels, width, generator=g) * 0.5
    return x, weight, torch.randn(channels, generator=g) if bias else None


def test_reference_equals_depthwise_conv1d():
    x, weight, bias = make_inputs(2, 30, 7)
    conv = torch.nn.Conv1d(7, 7, 4, groups=7, padding=3)
    with torch.no_grad():
        conv.weight.copy_(weight.unsqueeze(1))
        conv.bias.copy_(bias)
        expected = F.silu(conv(x.transpose(1, 2))[..., :30]).transpose(1, 2)
    torch.testing.assert_close(causal_conv_silu_ref(x, weight, bias), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch, length, channels, width, bias",
                         [(1, 1, 5, 4, True), (2, 3, 9, 4, False), (3, 50, 100, 4, True), (1, 17, 8, 2, True)])
def test_native_matches_reference(native, batch, length, channels, width, bias):
    """Lengths shorter than the kernel width, channel counts that fill no SIMD register evenly."""
    x, weight, b = make_inputs(batch, length, channels, width, bias)
    torch.testing.assert_close(native(x, weight, b), causal_conv_silu_ref(x, weight, b), rtol=0, atol=1e-6)


def test_native_reads_a_column_slice_without_copying_it_wrong(native):
    x, weight, bias = make_inputs(2, 40, 24)
    wide = torch.cat([x, torch.randn(2, 40, 24)], dim=-1)  # x as the first half of a projection
    view = wide[..., :24]
    assert not view.is_contiguous()
    torch.testing.assert_close(native(view, weight, bias), causal_conv_silu_ref(x, weight, bias), rtol=0, atol=1e-6)


def test_native_gradients_match_reference(native):
    x, weight, bias = make_inputs(2, 33, 12)
    grad_y = torch.randn(2, 33, 12, generator=torch.Generator().manual_seed(1))

    def grads(conv):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        conv(*leaves).backward(grad_y)
        return [t.grad for t in leaves]

    for got, expected in zip(grads(native), grads(causal_conv_silu_ref)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_native_row_does_not_depend_on_its_batch_mates(native):
    x, weight, bias = make_inputs(6, 25, 40)
    assert torch.equal(native(x, weight, bias)[4:5], native(x[4:5], weight, bias))


def test_dispatcher_keeps_the_input_dtype():
    x, weight, bias = make_inputs(2, 20, 8)
    out = causal_conv_silu(x.bfloat16(), weight, bias)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), causal_conv_silu_ref(x, weight, bias), rtol=2e-2, atol=2e-2)


def test_swiglu_in_blocks_of_positions_equals_the_formula(monkeypatch):
    monkeypatch.setattr(SwiGLU, "BLOCK_ROWS", 7)  # 2 x 30 positions: eight blocks of 7 rows and one of 4
    ffn = SwiGLU(8, 24)
    x = torch.randn(2, 30, 8)

    def grads(forward):
        leaf = x.clone().requires_grad_()
        out = forward(leaf)
        out.backward(torch.ones_like(out))
        return out, leaf.grad

    plain = grads(lambda x: ffn.down_proj(F.silu(ffn.gate_proj(x)) * ffn.up_proj(x)))
    for got, expected in zip(grads(ffn), plain):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
