"""Mamba-2 state space duality (SSD): a chunked matmul version and its sequential reference.

Per batch row and head h (of H), with state S_h [P, N] starting at `initial_state` (zero by
default), and head h reading the B/C of group g = h // (H / G):

    S_t = exp(dt_t[h] * A[h]) * S_{t-1} + dt_t[h] * x_t[h] (outer) B_t[g]
    y_t[h] = S_t @ C_t[g] + D[h] * x_t[h]

Shapes are batch-first, as mamba-ssm's mamba_chunk_scan_combined takes them: x [batch, L, H, P];
dt [batch, L, H] (already positive: bias and softplus applied by the caller); A [H] (negative);
B, C [batch, L, G, N]; D [H]. The output y has x's shape and dtype. The work is done in float32
(float64 stays float64, for gradient checks).

`ssd_ref` is the recurrence one position at a time: slow, and the oracle for `ssd_chunked`, which
splits the sequence into chunks of Q positions (mamba-ssm's "ssd_minimal" algorithm):

    1. inside each chunk, y = (L o C B^T) (dt x) with L[i, j] = exp(cs_i - cs_j) for j <= i,
       where cs is the cumulative sum of dt * A within the chunk (a masked Q x Q matmul);
    2. each chunk's own end state, sum_j exp(cs_last - cs_j) (dt_j x_j) (outer) B_j;
    3. the state entering each chunk, by a recurrence over chunks (one step per chunk);
    4. that state read out at every position of the chunk: exp(cs_i) C_i . S_entering.

The largest intermediates are [batch, L/Q, H, P, N] (one state per chunk) and [batch, L, H, Q]
(the within-chunk decay matrices): nothing of size L * H * P * N is ever built. Lengths that are
not a multiple of Q are right-padded with zeros (dt = 0 keeps the state as it is), and a sequence
shorter than Q is one chunk of its own length.

`ssd` dispatches to mamba-ssm's Triton kernel for CUDA tensors when mamba_ssm imports, and to
`ssd_chunked` otherwise. `reference_kernels()` swaps the model onto the plain causal conv, the
sequential recurrence and the dense masked attention, for checks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dnalm.conv import causal_conv_silu, causal_conv_silu_ref
from dnalm.layers import causal_attention, causal_attention_ref, swapped_kernels

try:  # optional CUDA kernel; ssd_chunked computes the same thing
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
except ImportError:
    mamba_chunk_scan_combined = None


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half precision and float32 inputs, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def ssd_ref(x, dt, A, B, C, D, chunk_size: int | None = None, initial_state: Tensor | None = None,
            return_final_state: bool = False):
    """Reference: the recurrence one position at a time (chunk_size is accepted and ignored).
    Returns y, or (y, final state [batch, H, P, N]) with return_final_state."""
    dtype, work = x.dtype, _work_dtype(x.dtype)
    batch, length, heads, headdim = x.shape
    groups, d_state = B.shape[2:]
    x, dt, A, D = x.to(work), dt.to(work), A.to(work), D.to(work)
    B = B.to(work).repeat_interleave(heads // groups, dim=2)  # [batch, L, H, N]
    C = C.to(work).repeat_interleave(heads // groups, dim=2)
    state = (x.new_zeros(batch, heads, headdim, d_state) if initial_state is None else initial_state.to(work))
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]  # [batch, H, 1, 1]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    y = (torch.stack(ys, dim=1) + D[:, None] * x).to(dtype)
    return (y, state) if return_final_state else y


def ssd_chunked(x, dt, A, B, C, D, chunk_size: int = 256, initial_state: Tensor | None = None,
                return_final_state: bool = False):
    """The chunked matmul form, equal to `ssd_ref` up to rounding, differentiable by autograd.
    Returns y, or (y, final state [batch, H, P, N]) with return_final_state."""
    dtype, work = x.dtype, _work_dtype(x.dtype)
    batch, length, heads, headdim = x.shape
    groups, d_state = B.shape[2:]
    per_group = heads // groups
    q = max(1, min(chunk_size, length))
    pad = -length % q
    n_chunks = (length + pad) // q

    def chunks(t: Tensor, *inner: int) -> Tensor:
        """[batch, L, ...] -> [batch, chunks, q, ...] (zero padded), in the working dtype."""
        t = t.to(work)
        if pad:
            t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(batch, n_chunks, q, *inner)

    # Head h = (g, r) with g its group and r its rank inside the group; positions last but one.
    xc = chunks(x, groups, per_group, headdim).permute(0, 1, 3, 4, 2, 5)  # [b, c, G, R, q, P]
    dtc = chunks(dt, groups, per_group).permute(0, 1, 3, 4, 2)  # [b, c, G, R, q]
    Bc = chunks(B, groups, d_state).permute(0, 1, 3, 2, 4).unsqueeze(3)  # [b, c, G, 1, q, N]
    Cc = chunks(C, groups, d_state).permute(0, 1, 3, 2, 4).unsqueeze(3)  # [b, c, G, 1, q, N]
    cs = torch.cumsum(dtc * A.to(work).view(groups, per_group, 1), dim=-1)  # [b, c, G, R, q]
    dtx = xc * dtc.unsqueeze(-1)  # [b, c, G, R, q, P]

    # 1. Within each chunk: a causal, decay-weighted "attention" of C over B. The mask is applied
    # to the exponent, so no exp of a positive (future) difference is ever taken.
    future = torch.ones(q, q, dtype=torch.bool, device=x.device).triu(1)
    decay_within = torch.exp((cs.unsqueeze(-1) - cs.unsqueeze(-2)).masked_fill(future, float("-inf")))
    scores = Cc @ Bc.transpose(-1, -2)  # [b, c, G, 1, q, q]
    y = (scores * decay_within) @ dtx  # [b, c, G, R, q, P]

    # 2. Each chunk's contribution to the state at its end.
    decay_to_end = torch.exp(cs[..., -1:] - cs).unsqueeze(-1)  # [b, c, G, R, q, 1]
    chunk_states = (dtx * decay_to_end).transpose(-1, -2) @ Bc  # [b, c, G, R, P, N]

    # 3. The state entering each chunk, one recurrence step per chunk.
    chunk_decay = torch.exp(cs[..., -1])[..., None, None]  # [b, c, G, R, 1, 1]
    if initial_state is None:
        state = chunk_states.new_zeros(batch, groups, per_group, headdim, d_state)
    else:
        state = initial_state.to(work).reshape(batch, groups, per_group, headdim, d_state)
    entering = []
    # unbind rather than indexing: its backward stacks the gradients instead of filling a
    # full-size zero tensor per chunk
    for decay, new in zip(chunk_decay.unbind(1), chunk_states.unbind(1)):
        entering.append(state)
        state = decay * state + new
    entering = torch.stack(entering, dim=1)  # [b, c, G, R, P, N]

    # 4. The entering state, decayed to each position and read out through C.
    y = y + (Cc @ entering.transpose(-1, -2)) * torch.exp(cs).unsqueeze(-1)

    y = y.permute(0, 1, 4, 2, 3, 5).reshape(batch, n_chunks * q, heads, headdim)[:, :length]
    y = (y + D.to(work)[:, None] * x.to(work)).to(dtype)
    if return_final_state:
        return y, state.reshape(batch, heads, headdim, d_state)
    return y


def ssd(x, dt, A, B, C, D, chunk_size: int = 256, initial_state: Tensor | None = None,
        return_final_state: bool = False):
    """mamba-ssm's fused Triton kernel for CUDA tensors when it is installed, else `ssd_chunked`."""
    if x.is_cuda and mamba_chunk_scan_combined is not None:
        return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=D, initial_states=initial_state,
                                         return_final_states=return_final_state)
    return ssd_chunked(x, dt, A, B, C, D, chunk_size=chunk_size, initial_state=initial_state,
                       return_final_state=return_final_state)


def ssd_step(state: Tensor, x, dt, A, B, C, D):
    """One recurrence step for decoding, updating `state` [batch, H, P, N] (float32) in place.
    x [batch, H, P], dt [batch, H] (positive), B and C [batch, G, N]; returns y [batch, H, P]."""
    heads, groups = x.shape[1], B.shape[1]
    work = state.dtype
    x, dt = x.to(work), dt.to(work)
    B = B.to(work).repeat_interleave(heads // groups, dim=1)  # [batch, H, N]
    C = C.to(work).repeat_interleave(heads // groups, dim=1)
    decay = torch.exp(dt * A.to(work))[..., None, None]
    state.mul_(decay).add_((dt[..., None] * x)[..., None] * B[:, :, None, :])
    y = torch.einsum("bhpn,bhn->bhp", state, C) + D.to(work)[:, None] * x
    return y


# The sequence-mixing kernels the model calls: the fast ones by default; reference_kernels()
# swaps in the plain implementations they are tested against.
KERNELS = {"causal_conv": causal_conv_silu, "ssd": ssd, "attention": causal_attention}


def reference_kernels():
    """Run models on the plain causal conv, the sequential SSD recurrence and the dense masked
    attention (slow, for checks)."""
    return swapped_kernels(KERNELS, {"causal_conv": causal_conv_silu_ref, "ssd": ssd_ref,
                                     "attention": causal_attention_ref})
