"""The chunked selective scan against the sequential reference."""

import pytest
import torch
import torch.nn.functional as F

from janusdna.scan import selective_scan, selective_scan_chunked, selective_scan_ref


def make_inputs(batch, length, d_in, d_state, big_delta=False, seed=0):
    """Inputs with realistic Mamba magnitudes, in selective_scan's argument order."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, d_in, generator=g)
    delta = F.softplus(torch.randn(batch, length, d_in, generator=g) * 0.5 - 2)
    if big_delta:
        delta[:, ::5] = 20.0
    A_log = torch.log(torch.arange(1, d_state + 1.0)) + 0.1 * torch.randn(d_in, d_state, generator=g)
    A = -torch.exp(A_log)
    B = torch.randn(batch, length, d_state, generator=g)
    C = torch.randn(batch, length, d_state, generator=g)
    D = torch.randn(d_in, generator=g)
    z = torch.randn(batch, length, d_in, generator=g)
    return [u, delta, A, B, C, D, z]


def assert_close_to(actual, expected, rel):
    """Max abs error at most rel * max(1, max |expected|)."""
    scale = max(1.0, expected.abs().max().item())
    err = (actual.float() - expected.float()).abs().max().item()
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel * scale:.3g}"


@pytest.mark.parametrize(
    "batch, length, chunk_size, block_size",
    [
        (1, 1, 32, 512),  # a single position
        (2, 7, 32, 512),  # shorter than one chunk
        (1, 64, 32, 512),  # whole chunks
        (3, 101, 8, 24),  # odd length, several blocks, partial last chunk and block
        (2, 50, 4, 3),  # block_size below chunk_size is rounded up to one chunk
        (1, 3000, 32, 1024),  # carries across full blocks
    ],
)
def test_forward_matches_reference(batch, length, chunk_size, block_size):
    args = make_inputs(batch, length, d_in=6, d_state=16)
    out = selective_scan_chunked(*args, chunk_size=chunk_size, block_size=block_size)
    expected = selective_scan_ref(*args)
    assert out.shape == expected.shape == (batch, length, 6)
    assert (out - expected).abs().max().item() < 1e-5


def test_default_sizes_and_dispatcher_match_reference():
    args = make_inputs(2, 1100, d_in=5, d_state=4)
    expected = selective_scan_ref(*args)
    assert (selective_scan_chunked(*args) - expected).abs().max().item() < 1e-5
    assert (selective_scan(*args) - expected).abs().max().item() < 1e-5


def test_non_contiguous_inputs():
    u, delta, A, B, C, D, z = make_inputs(2, 45, d_in=6, d_state=4)
    # B and C as column slices of one projection, everything else stored time-first.
    BC = torch.cat([B, C], dim=-1)
    B_view, C_view = BC[..., :4], BC[..., 4:]
    u_t, delta_t, z_t = (x.transpose(0, 1).contiguous().transpose(0, 1) for x in (u, delta, z))
    out = selective_scan_chunked(u_t, delta_t, A, B_view, C_view, D, z_t, chunk_size=8, block_size=16)
    assert (out - selective_scan_ref(u, delta, A, B, C, D, z)).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "batch, length, chunk_size, block_size, big_delta",
    [
        (1, 1, 32, 512, False),
        (2, 37, 8, 16, False),
        (1, 300, 16, 64, False),
        (2, 90, 8, 32, True),
    ],
)
def test_gradients_match_reference(batch, length, chunk_size, block_size, big_delta):
    args = make_inputs(batch, length, d_in=5, d_state=4, big_delta=big_delta)
    grad_out = torch.randn(batch, length, 5, generator=torch.Generator().manual_seed(1))

    def grads(scan, **kwargs):
        leaves = [x.clone().requires_grad_() for x in args]
        scan(*leaves, **kwargs).backward(grad_out)
        return [x.grad for x in leaves]

    expected = grads(selective_scan_ref)
    actual = grads(selective_scan_chunked, chunk_size=chunk_size, block_size=block_size)
    for name, a, e in zip("u delta A B C D z".split(), actual, expected):
        assert a is not None, name
        assert torch.isfinite(a).all(), name
        assert_close_to(a, e, rel=1e-5)


def test_bfloat16_inputs_return_bfloat16():
    u, delta, A, B, C, D, z = make_inputs(2, 70, d_in=6, d_state=4)
    bf16_args = [x.bfloat16() for x in (u, delta)] + [A] + [x.bfloat16() for x in (B, C, D, z)]
    out = selective_scan_chunked(*bf16_args, chunk_size=8, block_size=32)
    assert out.dtype == torch.bfloat16
    expected = selective_scan_ref(*bf16_args)
    assert expected.dtype == torch.bfloat16
    assert_close_to(out, expected, rel=1e-2)

    leaves = [x.clone().requires_grad_() for x in bf16_args]
    selective_scan_chunked(*leaves, chunk_size=8, block_size=32).float().sum().backward()
    assert leaves[0].grad.dtype == torch.bfloat16
    assert all(torch.isfinite(x.grad).all() for x in leaves)


def test_large_delta_does_not_overflow():
    args = make_inputs(2, 200, d_in=6, d_state=16, big_delta=True)
    out = selective_scan_chunked(*args, chunk_size=16, block_size=64)
    assert torch.isfinite(out).all()
    assert_close_to(out, selective_scan_ref(*args), rel=1e-6)
