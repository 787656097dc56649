import math

import pytest
import torch

import janusdna.attention as attention_module
from janusdna.attention import (
    causal_attention,
    janus_attention,
    janus_attention_blockwise,
    janus_attention_ref,
    janus_mask,
)

HEADS = 4


def allowed(q: int, kv: int, n: int) -> bool:
    """The Janus mask rules, transcribed literally."""
    return (
        (kv < n and q < n and kv <= q)
        or (kv >= n and q < n and kv >= n + q + 2)
        or (kv < n and q >= n and q >= kv + n + 2)
        or (kv >= n and q >= n and q <= kv)
    )


def random_qkv(n, head_dim=12, batch=2, dtype=torch.float32, requires_grad=False):
    return [
        torch.randn(batch, HEADS, 2 * n, head_dim, dtype=dtype, requires_grad=requires_grad)
        for _ in range(3)
    ]


def max_abs_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def use_forward_kernel(kernel: str, monkeypatch) -> None:
    """Makes janus_attention_blockwise run its forward pass on `kernel`: "native" (the C kernel) or
    "flash" (the four flash-attention calls used where the C kernel cannot be built)."""
    if kernel == "native" and not attention_module.native_attention_available():
        pytest.skip("no C kernel (JANUS_NATIVE=0)")
    if kernel == "flash":
        monkeypatch.setattr(attention_module, "native_attention_available", lambda: False)


@pytest.fixture(params=["native", "flash"])
def forward_kernel(request, monkeypatch):
    """Runs a test with each forward kernel of janus_attention_blockwise."""
    use_forward_kernel(request.param, monkeypatch)
    return request.param


def masked_logsumexp(q, k, scale):
    n = q.shape[-2] // 2
    idx = torch.arange(2 * n)
    scores = (q.double() @ k.double().transpose(-1, -2)) * scale
    return scores.masked_fill(~janus_mask(idx[:, None], idx[None, :], n), float("-inf")).logsumexp(-1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_janus_mask_matches_rules(n):
    idx = torch.arange(2 * n)
    mask = janus_mask(idx[:, None], idx[None, :], n)
    expected = [[allowed(q, kv, n) for kv in range(2 * n)] for q in range(2 * n)]
    assert mask.tolist() == expected


def test_janus_mask_broadcasts_and_allows_the_diagonal():
    n = 6
    q_idx = torch.arange(2 * n).view(1, -1, 1)
    kv_idx = torch.arange(2 * n).view(1, 1, -1)
    mask = janus_mask(q_idx, kv_idx, n)
    assert mask.shape == (1, 2 * n, 2 * n)
    assert mask[0].diagonal().all()


# (N, block_size): tiny N, odd and even N, N not a multiple of the block size, and
# block sizes small enough that empty, full and partial block pairs all occur.
BLOCKWISE_CASES = [
    (3, 256), (4, 256), (5, 256),
    (3, 1), (4, 2), (5, 2), (5, 3), (13, 4), (37, 8), (64, 16), (100, 32),
]


@pytest.mark.parametrize("n,block_size", BLOCKWISE_CASES)
def test_blockwise_matches_reference(n, block_size, forward_kernel):
    q, k, v = random_qkv(n)
    scale = 1 / math.sqrt(64)
    expected = janus_attention_ref(q, k, v, scale)
    actual = janus_attention_blockwise(q, k, v, scale, block_size=block_size)
    assert actual.shape == q.shape and actual.dtype == q.dtype
    assert max_abs_diff(actual, expected) <= 1e-5


@pytest.mark.parametrize(
    "n,block_size,max_chunk",
    [
        (3, 1, 1), (3, 256, 256), (4, 2, 8), (5, 2, 4),
        (13, 4, 12), (37, 8, 8), (37, 8, 999), (70, 16, 48),
    ],
)
def test_block_plan_covers_exactly_the_allowed_keys(n, block_size, max_chunk):
    """Per query tile: segments stay in one half, respect max_chunk, carry the exact mask,
    and together cover every allowed key."""
    idx = torch.arange(2 * n)
    mask = janus_mask(idx[:, None], idx[None, :], n)
    plan = attention_module._block_plan(n, block_size, max_chunk, torch.device("cpu"))
    assert [(r0, r1) for r0, r1, _ in plan] == attention_module._tiles(n, block_size)
    for r0, r1, segments in plan:
        covered = torch.zeros(2 * n, dtype=torch.bool)
        for c0, c1, bias in segments:
            assert c1 <= n or c0 >= n
            assert c1 - c0 <= max(max_chunk, block_size)
            block = mask[r0:r1, c0:c1]
            if bias is None:
                assert block.all()
            else:
                assert torch.equal(bias == 0, block) and not block.all()
            assert not covered[c0:c1].any()
            covered[c0:c1] = True
        assert not mask[r0:r1, ~covered].any()


def test_blockwise_with_capped_key_chunks(monkeypatch, forward_kernel):
    n, block_size = 29, 4
    # Room for three key tiles per step with batch 2 and 4 heads.
    budget = 2 * HEADS * block_size * 3 * block_size
    monkeypatch.setattr(attention_module, "_SCORE_ELEMENTS_PER_STEP", budget)
    q, k, v = random_qkv(n, requires_grad=True)
    grad_out = torch.randn_like(q)
    out = janus_attention_blockwise(q, k, v, 0.3, block_size)
    expected = janus_attention_ref(q, k, v, 0.3)
    assert max_abs_diff(out, expected) <= 1e-5
    actual_grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    for a, e in zip(actual_grads, expected_grads):
        assert max_abs_diff(a, e) <= 1e-5


@pytest.mark.parametrize("n,block_size", [(3, 1), (5, 2), (13, 4), (37, 8), (64, 16)])
def test_blockwise_gradients_match_reference(n, block_size, forward_kernel):
    q, k, v = random_qkv(n, requires_grad=True)
    grad_out = torch.randn_like(q)
    scale = 0.3
    expected = torch.autograd.grad(janus_attention_ref(q, k, v, scale), (q, k, v), grad_out)
    out = janus_attention_blockwise(q, k, v, scale, block_size)
    actual = torch.autograd.grad(out, (q, k, v), grad_out)
    for name, a, e in zip("qkv", actual, expected):
        assert max_abs_diff(a, e) <= 1e-5, name


def test_blockwise_accepts_non_contiguous_inputs(forward_kernel):
    n = 21
    q, k, v = (torch.randn(2, 2 * n, HEADS, 12).transpose(1, 2) for _ in range(3))
    expected = janus_attention_ref(q, k, v, 0.2)
    assert max_abs_diff(janus_attention_blockwise(q, k, v, 0.2, block_size=4), expected) <= 1e-5


def test_blockwise_bfloat16_is_close_to_reference(forward_kernel):
    n = 37
    q, k, v = random_qkv(n, dtype=torch.bfloat16, requires_grad=True)
    grad_out = torch.randn_like(q)
    out = janus_attention_blockwise(q, k, v, 0.125, block_size=8)
    expected = janus_attention_ref(q, k, v, 0.125)
    assert out.dtype == torch.bfloat16
    assert max_abs_diff(out, expected) <= 2e-2
    actual_grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    for a, e in zip(actual_grads, expected_grads):
        assert a.dtype == torch.bfloat16
        assert max_abs_diff(a, e) <= 5e-2


def test_janus_attention_dispatches_to_an_exact_kernel_on_cpu():
    q, k, v = random_qkv(50, head_dim=36, batch=1)
    scale = 1 / math.sqrt(64)
    expected = janus_attention_ref(q, k, v, scale)
    assert max_abs_diff(janus_attention(q, k, v, scale), expected) <= 1e-5


# N across the kernel's blocks of 48 queries and 64 keys; head sizes from one vector of 8 to 64.
@pytest.mark.parametrize("n,head_dim", [(1, 36), (2, 8), (3, 12), (47, 36), (48, 18), (49, 36), (64, 64), (30, 128),
                                        (65, 36), (130, 40), (200, 36)])
def test_native_forward_matches_reference(n, head_dim):
    if not attention_module.native_attention_available():
        pytest.skip("no C kernel (JANUS_NATIVE=0)")
    q, k, v = random_qkv(n, head_dim=head_dim)
    out, lse = attention_module._janus_attention_native(q, k, v, 0.2)
    assert max_abs_diff(out, janus_attention_ref(q, k, v, 0.2)) <= 1e-5
    assert max_abs_diff(lse, masked_logsumexp(q, k, 0.2)) <= 1e-5


def test_native_forward_does_not_depend_on_batch_mates_or_threads():
    if not attention_module.native_attention_available():
        pytest.skip("no C kernel (JANUS_NATIVE=0)")
    q, k, v = random_qkv(70, head_dim=36, batch=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        together = attention_module._janus_attention_native(q, k, v, 0.3)
        torch.set_num_threads(1)
        alone = [attention_module._janus_attention_native(q[i:i + 1], k[i:i + 1], v[i:i + 1], 0.3) for i in range(3)]
    finally:
        torch.set_num_threads(threads)
    for i, (out, lse) in enumerate(alone):
        assert torch.equal(together[0][i:i + 1], out) and torch.equal(together[1][i:i + 1], lse)


def test_heads_wider_than_the_c_kernel_take_the_flash_path():
    q, k, v = random_qkv(20, head_dim=136, batch=1)
    expected = janus_attention_ref(q, k, v, 0.1)
    assert max_abs_diff(janus_attention_blockwise(q, k, v, 0.1), expected) <= 1e-5


def test_odd_row_count_is_rejected():
    q, k, v = (torch.randn(1, HEADS, 7, 8) for _ in range(3))
    with pytest.raises(ValueError):
        janus_attention_blockwise(q, k, v, 0.1)


def blockwise_with_tiny_blocks(q, k, v, scale):
    return janus_attention_blockwise(q, k, v, scale, block_size=2)


@pytest.fixture(params=["ref", "blockwise-native", "blockwise-flash"])
def attention(request, monkeypatch):
    """The dense reference, and the blockwise attention with each forward kernel."""
    if request.param == "ref":
        return janus_attention_ref
    use_forward_kernel(request.param.removeprefix("blockwise-"), monkeypatch)
    return blockwise_with_tiny_blocks


@pytest.mark.parametrize("n", [5, 6])
def test_rows_see_exactly_the_allowed_positions(attention, n):
    """Perturbing key/value j changes output row i if and only if i may attend to j."""
    q, k, v = random_qkv(n, head_dim=16, batch=1)
    out = attention(q, k, v, 0.25)
    for kv in range(2 * n):
        k2, v2 = k.clone(), v.clone()
        k2[..., kv, :] += torch.randn(k.shape[-1])
        v2[..., kv, :] += 1 + torch.rand(v.shape[-1])
        out2 = attention(q, k2, v2, 0.25)
        for row in range(2 * n):
            changed = (out2[..., row, :] - out[..., row, :]).abs().max().item()
            if allowed(row, kv, n):
                assert changed > 1e-4, (row, kv)
            else:
                assert changed == 0, (row, kv)


@pytest.mark.parametrize("length", [1, 7, 64])
def test_causal_attention_matches_dense_reference(length):
    q, k, v = (torch.randn(2, HEADS, length, 10) for _ in range(3))
    scores = q @ k.transpose(-1, -2) / math.sqrt(10)
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    expected = scores.masked_fill(future, float("-inf")).softmax(-1) @ v
    assert max_abs_diff(causal_attention(q, k, v), expected) <= 1e-5


@pytest.mark.slow
def test_flex_attention_path_matches_reference():
    """The CUDA branch (head_dim padding, block mask, scale) run on CPU; compiling takes ~20 s."""
    q, k, v = random_qkv(40, head_dim=36, batch=1)
    scale = 1 / math.sqrt(64)
    expected = janus_attention_ref(q, k, v, scale)
    assert max_abs_diff(attention_module._janus_flex_attention(q, k, v, scale), expected) <= 1e-5
