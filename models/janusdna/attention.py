"""Attention kernels for JanusDNA.

JanusDNA fuses its forward and backward streams with one attention layer over
their concatenation: for a sequence of N positions the attention input has 2N
rows, rows 0..N-1 holding forward-stream states and rows N..2N-1 holding
backward-stream states of the same positions. `janus_mask` says which rows may
attend to which; everything else here computes that masked attention:

- `janus_attention_ref`: dense masked softmax, the test oracle.
- `janus_attention_blockwise`: the same result in O(N) memory, for CPU: the forward pass in one
  C kernel (janus_attention.c, online softmax over each query's allowed keys), or where that
  cannot be built, four causal flash-attention calls merged by their log-sum-exps; the backward
  pass blockwise.
- `janus_attention`: dispatcher (FlexAttention on CUDA, blockwise otherwise).
- `causal_attention`: plain causal attention for the model's optional mid-layer.
"""

import ctypes
import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from dnalm import native


def janus_mask(q_idx: Tensor, kv_idx: Tensor, n: int) -> Tensor:
    """True where query row `q_idx` may attend to key row `kv_idx` (broadcasting).

    Within each (query half, key half) quadrant the rule is one half-plane on
    kv_idx - q_idx; the blockwise kernel relies on that shape.
    """
    q_forward = q_idx < n
    kv_forward = kv_idx < n
    diff = kv_idx - q_idx
    return torch.where(
        q_forward,
        torch.where(kv_forward, diff <= 0, diff >= n + 2),
        torch.where(kv_forward, diff <= -(n + 2), diff >= 0),
    )


def _half_length(x: Tensor) -> int:
    """N for an attention input of 2N rows."""
    rows = x.shape[-2]
    if rows % 2:
        raise ValueError(f"Janus attention needs an even number of rows, got {rows}")
    return rows // 2


def janus_attention_ref(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Dense Janus attention: materialises the full 2N x 2N score matrix."""
    n = _half_length(q)
    idx = torch.arange(2 * n, device=q.device)
    allowed = janus_mask(idx[:, None], idx[None, :], n)
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return (weights @ v.float()).to(q.dtype)


# Score matrix, in float32 elements per sequence (across heads), that one step of
# the blockwise kernel materialises. Key chunks are sized to fill it: big enough
# for efficient matmuls, small enough to stay in cache. Sizing per sequence, not
# per batch, keeps the order of the online-softmax sums, and so every bit of a
# sequence's output, independent of its batch mates.
_SCORE_ELEMENTS_PER_STEP = 1 << 20

_LOG2_E = math.log2(math.e)


def _tiles(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) tiles of at most `size` rows covering 0..2N, none straddling N."""
    return [(half + s, half + min(s + size, n)) for half in (0, n) for s in range(0, n, size)]


@functools.lru_cache(maxsize=32)
def _block_plan(n: int, block_size: int, max_chunk: int, device: torch.device):
    """For each query tile: (start, end, key segments), each segment (start, end, bias).

    Tiles never straddle N, so each (query tile, key tile) pair lies in one
    quadrant, where the mask is a half-plane on kv - q: the pair is fully
    allowed iff its four corners are, and fully disallowed iff none is. Empty
    pairs are skipped; runs of adjacent key tiles of the same kind within one
    half are merged into segments of at most `max_chunk` keys. `bias` is None
    for fully allowed segments, else an additive [rows, keys] mask (0 or -inf).
    """
    tiles = _tiles(n, block_size)
    firsts = torch.tensor([start for start, _ in tiles])
    lasts = torch.tensor([end - 1 for _, end in tiles])
    allowed_corners = sum(
        janus_mask(q_corner[:, None], kv_corner[None, :], n).int()
        for q_corner in (firsts, lasts)
        for kv_corner in (firsts, lasts)
    )
    # Within a quadrant the mask depends only on kv - q, so segments with the
    # same geometry share one bias tensor; this keeps their number small.
    biases = {}

    def band_bias(r0, r1, c0, c1):
        geometry = (r0 < n, c0 < n, c0 - r0, r1 - r0, c1 - c0)
        if geometry not in biases:
            rows = torch.arange(r0, r1, device=device)
            cols = torch.arange(c0, c1, device=device)
            allowed = janus_mask(rows[:, None], cols[None, :], n)
            bias = torch.zeros(allowed.shape, device=device)
            biases[geometry] = bias.masked_fill_(~allowed, float("-inf"))
        return biases[geometry]

    plan = []
    for (r0, r1), corner_counts in zip(tiles, allowed_corners.tolist()):
        runs = []  # [start, end, partial]
        for (c0, c1), count in zip(tiles, corner_counts):
            if count == 0:
                continue
            partial = count < 4
            extends_last_run = (
                runs
                and runs[-1][1] == c0 != n
                and runs[-1][2] == partial
                and c1 - runs[-1][0] <= max_chunk
            )
            if extends_last_run:
                runs[-1][1] = c1
            else:
                runs.append([c0, c1, partial])
        segments = tuple(
            (c0, c1, band_bias(r0, r1, c0, c1) if partial else None) for c0, c1, partial in runs
        )
        plan.append((r0, r1, segments))
    return tuple(plan)


def _plan_for(q: Tensor, block_size: int):
    rows_per_step = q.shape[-3] * block_size
    max_chunk = max(block_size, _SCORE_ELEMENTS_PER_STEP // rows_per_step)
    return _block_plan(_half_length(q), block_size, max_chunk, q.device)


def _scores(q_block: Tensor, k_chunk: Tensor, bias: Tensor | None) -> Tensor:
    """Scores of a pre-scaled query block against a key chunk, -inf where disallowed."""
    scores = q_block @ k_chunk.transpose(-1, -2)
    if bias is not None:
        scores += bias
    return scores


def _causal_flash(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Causal attention of equally long q and k by torch's CPU flash kernel: (output, natural
    log-sum-exp of each row's scores). Each row is computed alone, whatever its batch mates."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True, scale=scale)


def _merge(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Softmax attention over the union of disjoint key sets from each set's (output, lse)."""
    lse = functools.reduce(torch.logaddexp, [p[1] for p in parts])
    out = sum(o.float() * torch.exp(l - lse).unsqueeze(-1) for o, l in parts)
    return out, lse


def _janus_attention_flash(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(output, natural log-sum-exp) of Janus attention, from four causal calls.

    Forward-stream query t sees forward keys <= t (causal) and backward keys >= t + 2; with both
    halves reversed, the latter is causal too, shifted by two. The backward stream mirrors it.
    """
    n = _half_length(q)
    (qf, qb), (kf, kb), (vf, vb) = ((x[..., :n, :], x[..., n:, :]) for x in (q, k, v))
    flip = functools.partial(torch.flip, dims=(-2,))

    def flipped_causal(q_, k_, v_):
        out, lse = _causal_flash(flip(q_), flip(k_), flip(v_), scale)
        return flip(out), lse.flip(-1)

    fwd, bwd = [_causal_flash(qf, kf, vf, scale)], [flipped_causal(qb, kb, vb)]
    if n > 2:
        # forward query t and backward key s >= t + 2: reversed, t' = n-1-t sees s' <= t' - 2
        out, lse = flipped_causal(qf[..., :-2, :], kb[..., 2:, :], vb[..., 2:, :])
        fwd.append((F.pad(out, (0, 0, 0, 2)), F.pad(lse, (0, 2), value=-math.inf)))
        # backward query t and forward key s <= t - 2
        out, lse = _causal_flash(qb[..., 2:, :], kf[..., :-2, :], vf[..., :-2, :], scale)
        bwd.append((F.pad(out, (0, 0, 2, 0)), F.pad(lse, (2, 0), value=-math.inf)))
    (out_f, lse_f), (out_b, lse_b) = _merge(fwd), _merge(bwd)
    return torch.cat([out_f, out_b], dim=-2), torch.cat([lse_f, lse_b], dim=-1)


@functools.cache
def _native_library():
    library = native.load(Path(__file__).with_name("janus_attention.c"))
    if library is not None:
        size, pointer = ctypes.c_int64, ctypes.c_void_p
        library.janus_attention_forward.argtypes = [size] * 3 + [pointer] * 5 + [ctypes.c_float, ctypes.c_int]
    return library


def native_attention_available() -> bool:
    return _native_library() is not None


def _janus_attention_native(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(output, natural log-sum-exp) of Janus attention from the C kernel, in float32."""
    n = _half_length(q)
    batch, heads, rows, head_dim = q.shape
    q, k, v = (x.float().contiguous() for x in (q, k, v))
    out = torch.empty_like(q)
    lse = q.new_empty(batch, heads, rows)
    status = _native_library().janus_attention_forward(
        batch * heads, n, head_dim, *[ctypes.c_void_p(x.data_ptr()) for x in (q, k, v, out, lse)],
        scale * _LOG2_E, torch.get_num_threads())
    if status:
        raise ValueError(f"Janus attention C kernel: head_dim {head_dim} not supported")
    return out, lse


def _janus_attention_forward(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(output, natural log-sum-exp): the C kernel where it is built and fits the head size, else
    torch's flash kernel."""
    if q.device.type == "cpu" and native_attention_available():
        if q.shape[-1] <= _native_library().janus_attention_max_head_dim():
            return _janus_attention_native(q, k, v, scale)
    return _janus_attention_flash(q, k, v, scale)


class _JanusBlockwiseAttention(torch.autograd.Function):
    """Janus attention: C kernel (or flash) forward, recomputing blockwise backward.

    The backward pass keeps scores in base 2 (log2(e) folded into the query scale) because
    exp2 is markedly cheaper than exp on CPU and the exponential is the costliest elementwise
    step.
    """

    @staticmethod
    def forward(ctx, q, k, v, scale, block_size):
        out, lse = _janus_attention_forward(q, k, v, scale)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse * _LOG2_E)
        ctx.scale = scale
        ctx.block_size = block_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, logsumexp2 = ctx.saved_tensors
        scale = ctx.scale
        plan = _plan_for(q, ctx.block_size)
        grad_q = torch.empty_like(q)
        grad_k = torch.zeros_like(k, dtype=torch.float32)
        grad_v = torch.zeros_like(v, dtype=torch.float32)
        for r0, r1, segments in plan:
            q_block = q[..., r0:r1, :].float() * (scale * _LOG2_E)
            grad_out_block = grad_out[..., r0:r1, :].float()
            # Softmax backward: dS = P * (dP - rowsum(dO * O)).
            out_dot_grad = (grad_out_block * out[..., r0:r1, :].float()).sum(dim=-1, keepdim=True)
            block_logsumexp2 = logsumexp2[..., r0:r1, None]
            grad_q_block = torch.zeros_like(q_block)
            for c0, c1, bias in segments:
                k_chunk = k[..., c0:c1, :].float()
                v_chunk = v[..., c0:c1, :].float()
                probs = _scores(q_block, k_chunk, bias).sub_(block_logsumexp2).exp2_()
                grad_v[..., c0:c1, :] += probs.transpose(-1, -2) @ grad_out_block
                grad_probs = grad_out_block @ v_chunk.transpose(-1, -2)
                grad_scores = grad_probs.sub_(out_dot_grad).mul_(probs)
                grad_q_block += grad_scores @ k_chunk
                grad_k[..., c0:c1, :] += grad_scores.transpose(-1, -2) @ q_block
            grad_q[..., r0:r1, :] = grad_q_block * scale
        # q_block carried an extra factor log2(e) that the key gradient must not.
        grad_k *= 1 / _LOG2_E
        return grad_q, grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


def janus_attention_blockwise(
    q: Tensor, k: Tensor, v: Tensor, scale: float, block_size: int = 256
) -> Tensor:
    """Janus attention without materialising the 2N x 2N matrix (float32 accumulation).

    q, k, v: [batch, heads, 2N, head_dim]. Memory beyond inputs and output is O(N), plus in
    the backward pass one score chunk of about `_SCORE_ELEMENTS_PER_STEP` floats per sequence
    (block_size sets the backward pass's query tiles).
    """
    return _JanusBlockwiseAttention.apply(q, k, v, scale, block_size)


@functools.lru_cache(maxsize=8)
def _flex_block_mask(n: int, device: torch.device):
    def mask_mod(batch, head, q_idx, kv_idx):
        return janus_mask(q_idx, kv_idx, n)

    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=2 * n, KV_LEN=2 * n, device=device)


@functools.cache
def _compiled_flex_attention():
    return torch.compile(flex_attention)


def _janus_flex_attention(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Janus attention through compiled FlexAttention."""
    head_dim = q.shape[-1]
    # Flex kernels want head_dim a multiple of 16; zero columns change neither
    # q.k nor the real output columns.
    padding = -head_dim % 16
    if padding:
        q, k, v = (F.pad(x, (0, padding)) for x in (q, k, v))
    block_mask = _flex_block_mask(_half_length(q), q.device)
    out = _compiled_flex_attention()(q, k, v, block_mask=block_mask, scale=scale)
    return out[..., :head_dim]


def janus_attention(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """Janus attention: FlexAttention on CUDA, the blockwise kernel elsewhere."""
    if q.is_cuda:
        return _janus_flex_attention(q, k, v, scale)
    return janus_attention_blockwise(q, k, v, scale)


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal softmax attention, scale 1/sqrt(head_dim); q, k, v: [batch, heads, L, head_dim]."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)
