"""The fast selective scans (the fused C kernel and the chunked pure-PyTorch scan) against the
sequential reference."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from janusdna.scan import (native_scan_available, selective_scan, selective_scan_chunked, selective_scan_native,
                           selective_scan_ref)


def test_native_kernel_builds_here():
    """The C kernel must build wherever the tests run (CI has a compiler), unless switched off."""
    if os.environ.get("JANUS_NATIVE") == "0":
        pytest.skip("JANUS_NATIVE=0")
    assert native_scan_available()


@pytest.fixture(params=["chunked", "native"])
def fast_scan(request):
    if request.param == "native":
        if not native_scan_available():
            pytest.skip("no C kernel (JANUS_NATIVE=0)")
        return selective_scan_native
    return lambda *args, **kwargs: selective_scan_chunked(*args, **kwargs, chunk_size=8, block_size=24)


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


@pytest.mark.parametrize(
    "batch, length, d_in, d_state",
    [(1, 1, 6, 16), (2, 7, 20, 4), (3, 65, 100, 16), (1, 130, 48, 8), (2, 1100, 5, 4)],
)
def test_native_forward_matches_reference(batch, length, d_in, d_state):
    """Channel counts that do not fill the kernel's 48-channel items (100: two full, one of 4),
    lengths across its 64-step backward segments."""
    if not native_scan_available():
        pytest.skip("no C kernel (JANUS_NATIVE=0)")
    args = make_inputs(batch, length, d_in=d_in, d_state=d_state)
    assert_close_to(selective_scan_native(*args), selective_scan_ref(*args), rel=1e-5)


def test_non_contiguous_inputs(fast_scan):
    u, delta, A, B, C, D, z = make_inputs(2, 45, d_in=6, d_state=4)
    # B and C as column slices of one projection, z a slice of a wider one, u stored channel-first
    # (as a conv leaves it), delta time-first.
    BC = torch.cat([B, C], dim=-1)
    B_view, C_view = BC[..., :4], BC[..., 4:]
    z_view = torch.cat([z, u], dim=-1)[..., :6]
    u_t = u.transpose(1, 2).contiguous().transpose(1, 2)
    delta_t = delta.transpose(0, 1).contiguous().transpose(0, 1)
    out = fast_scan(u_t, delta_t, A, B_view, C_view, D, z_view)
    assert (out - selective_scan_ref(u, delta, A, B, C, D, z)).abs().max().item() < 1e-5


def test_native_rows_are_independent_of_batch_mates_and_threads():
    if not native_scan_available():
        pytest.skip("no C kernel (JANUS_NATIVE=0)")
    args = make_inputs(5, 90, d_in=100, d_state=16)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = selective_scan_native(*args)
        torch.set_num_threads(1)
        alone = selective_scan_native(*[x[3:4] if x.dim() == 3 else x for x in args])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(batch[3:4], alone)


def test_a_kernels_build_key_covers_the_local_headers_it_includes(tmp_path):
    from dnalm.native import source_text

    (tmp_path / "k.c").write_text('#include <math.h>\n#include "h.h"\nint f(void) { return G; }\n')
    (tmp_path / "h.h").write_text("#define G 1\n")
    before = source_text(tmp_path / "k.c")
    (tmp_path / "h.h").write_text("#define G 2\n")
    assert source_text(tmp_path / "k.c") != before and "#define G 2" in source_text(tmp_path / "k.c")


def test_without_a_compiler_the_pure_pytorch_paths_run_with_one_notice(tmp_path):
    script = (
        "import torch, janusdna, janusdna.scan as s, janusdna.attention as a, dnalm.conv as c\n"
        "from tests.test_scan import make_inputs\n"
        "args = make_inputs(1, 9, 4, 4)\n"
        "assert not s.native_scan_available() and not c.native_conv_available()\n"
        "assert not a.native_attention_available()\n"
        "assert torch.equal(s.selective_scan(*args), s.selective_scan_chunked(*args))\n"
        "model = janusdna.from_preset('janusdna-d32').eval()\n"
        "model(torch.randint(7, 11, (1, 20)))\n"
    )
    env = {**os.environ, "PATH": str(tmp_path), "CC": "no-such-compiler", "JANUS_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr
    notices = [line for line in done.stderr.splitlines() if line.startswith("janus:")]
    assert len(notices) == 1 and "no C compiler" in notices[0] and "pure-PyTorch" in notices[0], done.stderr


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
    assert_gradients_match(args, grad_out, lambda *a: selective_scan_chunked(*a, chunk_size=chunk_size,
                                                                              block_size=block_size))


@pytest.mark.parametrize("batch, length, d_in, big_delta", [(1, 1, 5, False), (2, 37, 20, False),
                                                           (1, 300, 100, True), (2, 129, 48, False)])
def test_native_gradients_match_reference(batch, length, d_in, big_delta):
    if not native_scan_available():
        pytest.skip("no C kernel (JANUS_NATIVE=0)")
    args = make_inputs(batch, length, d_in=d_in, d_state=16, big_delta=big_delta)
    grad_out = torch.randn(batch, length, d_in, generator=torch.Generator().manual_seed(1))
    assert_gradients_match(args, grad_out, selective_scan_native)


def assert_gradients_match(args, grad_out, scan, **kwargs):
    def grads(scan_fn):
        leaves = [x.clone().requires_grad_() for x in args]
        scan_fn(*leaves, **kwargs).backward(grad_out)
        return [x.grad for x in leaves]

    expected = grads(selective_scan_ref)
    actual = grads(scan)
    for name, a, e in zip("u delta A B C D z".split(), actual, expected):
        assert a is not None, name
        assert torch.isfinite(a).all(), name
        assert_close_to(a, e, rel=1e-5)


def test_bfloat16_inputs_return_bfloat16(fast_scan):
    u, delta, A, B, C, D, z = make_inputs(2, 70, d_in=6, d_state=4)
    bf16_args = [x.bfloat16() for x in (u, delta)] + [A] + [x.bfloat16() for x in (B, C, D, z)]
    out = fast_scan(*bf16_args)
    assert out.dtype == torch.bfloat16
    expected = selective_scan_ref(*bf16_args)
    assert expected.dtype == torch.bfloat16
    assert_close_to(out, expected, rel=1e-2)

    leaves = [x.clone().requires_grad_() for x in bf16_args]
    fast_scan(*leaves).float().sum().backward()
    assert leaves[0].grad.dtype == torch.bfloat16
    assert all(torch.isfinite(x.grad).all() for x in leaves)


def test_large_delta_does_not_overflow(fast_scan):
    args = make_inputs(2, 200, d_in=6, d_state=16, big_delta=True)
    out = fast_scan(*args)
    assert torch.isfinite(out).all()
    assert_close_to(out, selective_scan_ref(*args), rel=1e-6)


def test_delta_softplus_matches_reference(fast_scan):
    """delta as the raw dt projection, softplus applied inside the scan: values from far below
    zero to above torch's softplus threshold of 20, over 100 channels (three of the C kernel's
    items)."""
    args = make_inputs(2, 70, d_in=100, d_state=16)
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(2, 70, 100, generator=g) * 3 - 3
    raw[0, :, 0], raw[0, :, 1], raw[1, 5] = -40.0, 25.0, -12.0
    args[1] = raw
    out = fast_scan(*args, delta_softplus=True)
    assert_close_to(out, selective_scan_ref(*args, delta_softplus=True), rel=1e-5)
    grad_out = torch.randn(2, 70, 100, generator=g)
    assert_gradients_match(args, grad_out, fast_scan, delta_softplus=True)
