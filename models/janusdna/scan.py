"""Mamba-1 selective scan: a sequential reference, a fused C kernel for CPU and a chunked
pure-PyTorch version (the fallback where the C kernel cannot be built).

For each batch row, with state h[d, n] starting at zero:

    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n] + delta_t[d] * B_t[n] * u_t[d]
    y_t[d]    = sum_n h_t[d, n] * C_t[n] + D[d] * u_t[d]
    out_t[d]  = y_t[d] * silu(z_t[d])

Shapes are batch-first: u, delta, z are [batch, L, D_in]; B, C are [batch, L, N]; A is [D_in, N]
(negative); D is [D_in]. delta must be positive, or, with delta_softplus=True (as in mamba-ssm),
is passed through softplus first. Everything is computed in float32 and the output has u's dtype.
"""

import ctypes
import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from dnalm import native

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_selective_scan_fn
except ImportError:
    _mamba_selective_scan_fn = None

# exp2 is markedly faster than exp on CPU, so decays are computed as exp2(delta * A * log2(e)).
_LOG2_E = math.log2(math.e)


def selective_scan_ref(u, delta, A, B, C, D, z, delta_softplus: bool = False) -> Tensor:
    """Reference: the recurrence one position at a time. Slow; the oracle for the other paths."""
    dtype = u.dtype
    u, delta, A, B, C, D, z = (x.float() for x in (u, delta, A, B, C, D, z))
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], *A.shape)  # [batch, D_in, N]
    ys = []
    for t in range(u.shape[1]):
        decay = torch.exp(delta[:, t, :, None] * A)
        h = decay * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    y = torch.stack(ys, dim=1) + D * u
    return (y * F.silu(z)).to(dtype)


def selective_scan_chunked(
    u, delta, A, B, C, D, z, delta_softplus: bool = False, chunk_size: int = 32, block_size: int = 512
) -> Tensor:
    """Fast CPU scan, equal to `selective_scan_ref` up to float32 rounding, with autograd support.

    The sequence is processed in blocks of about `block_size` positions (rounded up to whole
    chunks), so the extra memory is O(block_size * D_in * N) per batch row, also in the backward
    pass. Inside a block the positions are split into chunks of `chunk_size` that are scanned
    in parallel.
    """
    dtype = u.dtype
    u, delta, z = u.float(), delta.float(), z.float()
    if delta_softplus:
        delta = F.softplus(delta)
    y = _ChunkedScan.apply(delta, delta * u, A.float(), B.float(), C.float(), chunk_size, block_size)
    return (torch.addcmul(y, D.float(), u) * F.silu(z)).to(dtype)


def selective_scan_native(u, delta, A, B, C, D, z, delta_softplus: bool = False) -> Tensor:
    """Fused C kernel (selective_scan.c), equal to `selective_scan_ref` up to float32 rounding,
    with autograd support. Each row's result is independent of its batch mates and of the
    number of threads. Needs `native_scan_available()`."""
    return _NativeScan.apply(u.float(), delta.float(), A.float(), B.float(), C.float(), D.float(), z.float(),
                             delta_softplus).to(u.dtype)


def native_scan_available() -> bool:
    return _native_library() is not None


def selective_scan(u, delta, A, B, C, D, z, delta_softplus: bool = False) -> Tensor:
    """mamba-ssm's CUDA kernel for CUDA tensors when it is installed; on CPU the fused C kernel,
    or the chunked scan where it cannot be built."""
    if u.is_cuda and _mamba_selective_scan_fn is not None:
        out = _mamba_selective_scan_fn(
            u.transpose(1, 2),
            delta.transpose(1, 2),
            A,
            B.transpose(1, 2),
            C.transpose(1, 2),
            D.float(),
            z.transpose(1, 2),
            delta_bias=None,
            delta_softplus=delta_softplus,
        )
        return out.transpose(1, 2)
    if u.device.type == "cpu" and native_scan_available():
        return selective_scan_native(u, delta, A, B, C, D, z, delta_softplus)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_softplus)


@functools.cache
def _native_library():
    library = native.load(Path(__file__).with_name("selective_scan.c"))
    if library is not None:
        sizes, pointer = [ctypes.c_int64] * 4, ctypes.c_void_p
        library.janus_scan_forward.argtypes = [*sizes, *[pointer] * 14, ctypes.c_int, ctypes.c_int]
        library.janus_scan_backward.argtypes = [*sizes, *[pointer] * 12, ctypes.c_int]
    return library


def _pointers(*tensors: Tensor | None) -> list[ctypes.c_void_p]:
    return [ctypes.c_void_p(None if t is None else t.data_ptr()) for t in tensors]


def _strides(x: Tensor, dims: int) -> Tensor:
    """The first `dims` strides of x, for the C kernel; kept alive by the caller during the call."""
    return torch.tensor(x.stride()[:dims], dtype=torch.int64)


def _check(status: int) -> None:
    if status:
        raise MemoryError("selective scan: the C kernel could not allocate its state")


class _NativeScan(torch.autograd.Function):
    """The whole of selective_scan in the C kernel, reading u, delta and z as the views they are;
    nothing of size L * D_in * N is stored in either pass. With delta_softplus the kernel applies
    softplus to delta as it reads it."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_softplus):
        B, C = (x if x.stride(-1) == 1 else x.contiguous() for x in (B, C))
        A_log2, D = (A * _LOG2_E).contiguous(), D.contiguous()
        out = u.new_empty(u.shape)
        pre_gate = torch.empty_like(out) if any(ctx.needs_input_grad) else None
        strides = [_strides(u, 3), _strides(delta, 3), _strides(z, 3), _strides(B, 2), _strides(C, 2)]
        _check(_native_library().janus_scan_forward(
            *u.shape, B.shape[-1],
            *_pointers(u, strides[0], delta, strides[1], z, strides[2], A_log2, B, strides[3], C, strides[4],
                       D, out, pre_gate),
            int(delta_softplus), torch.get_num_threads(),
        ))
        if pre_gate is not None:
            ctx.save_for_backward(u, delta, A, A_log2, B, C, D, z, pre_gate)
            ctx.delta_softplus = delta_softplus
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        u, delta, A, A_log2, B, C, D, z, pre_gate = ctx.saved_tensors
        delta_input = delta
        if ctx.delta_softplus:
            delta = F.softplus(delta)
        # out = pre_gate * silu(z) and pre_gate = y + D u, with y the scan of (delta, delta * u)
        gate = torch.sigmoid(z)
        grad_y = (grad_out * z * gate).contiguous()
        grad_z = grad_out * pre_gate * gate * (1 + z * (1 - gate))
        delta, A, B, C = delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous()
        du = delta * u
        batch, length, d_in = delta.shape
        items = -(-d_in // _native_library().janus_scan_channels_per_item())
        grad_delta, grad_du = torch.empty_like(delta), torch.empty_like(du)
        grad_A_items = A.new_empty(batch, *A.shape)
        grad_B_items, grad_C_items = (B.new_empty(items, *B.shape) for _ in range(2))
        _check(_native_library().janus_scan_backward(
            batch, length, d_in, B.shape[-1],
            *_pointers(delta, du, A_log2, A, B, C, grad_y, grad_delta, grad_du,
                       grad_A_items, grad_B_items, grad_C_items),
            torch.get_num_threads(),
        ))
        grad_delta.addcmul_(grad_du, u)
        if ctx.delta_softplus:
            grad_delta.mul_(torch.sigmoid(delta_input))
        return (torch.addcmul(grad_du * delta, grad_y, D), grad_delta, grad_A_items.sum(0),
                grad_B_items.sum(0), grad_C_items.sum(0), (grad_y * u).sum((0, 1)), grad_z, None)


class _ChunkedScan(torch.autograd.Function):
    """y_t[d] = sum_n h_t[d, n] * C_t[n] for the recurrence above, given du = delta * u.

    Works time-major internally ([L, batch, ...]) with the state stored as [N, D_in], so that
    every block is contiguous and reading y out of the states is a batched row-vector product.
    The backward pass recomputes each block's states from the state saved at its start, so
    nothing of size L * D_in * N is kept between the passes.
    """

    @staticmethod
    def forward(ctx, delta, du, A, B, C, chunk_size, block_size):
        length = delta.shape[1]
        delta, du, B, C = (_time_major(x, chunk_size) for x in (delta, du, B, C))
        A_log2 = (A.t() * _LOG2_E).contiguous()
        blocks = _blocks(delta.shape[0], chunk_size, block_size)
        state = delta.new_zeros(delta.shape[1], *A_log2.shape)  # [batch, N, D_in]
        buffer_shape = (blocks[0][1], *state.shape)
        decay_buffer, state_buffer = delta.new_empty(buffer_shape), delta.new_empty(buffer_shape)

        y = delta.new_empty(delta.shape)
        block_start_states = []
        for start, stop in blocks:
            block_start_states.append(state)
            decay, states = _block_views(stop - start, chunk_size, decay_buffer, state_buffer)
            _fill_decay(decay, delta[start:stop], A_log2)
            _fill_outer(states, B[start:stop], du[start:stop])
            state = _chunked_linear_scan_(decay, states, state)
            _contract_over_state(C[start:stop], states, out=y[start:stop])

        ctx.chunk_size, ctx.blocks = chunk_size, blocks
        ctx.save_for_backward(delta, du, A, B, C, torch.stack(block_start_states))
        return y[:length].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        delta, du, A, B, C, block_start_states = ctx.saved_tensors
        chunk_size, blocks = ctx.chunk_size, ctx.blocks
        length = grad_y.shape[1]
        grad_y = _time_major(grad_y.float(), chunk_size)
        A_t = A.t().contiguous()
        A_log2 = A_t * _LOG2_E
        # The gradient g_t of the state h_t flows backwards: g_t = decay_{t+1} * g_{t+1} + C_t grad_y_t.
        delta_next = F.pad(delta[1:], (0, 0, 0, 0, 0, 1))
        buffer_shape = (blocks[0][1], *block_start_states.shape[1:])
        decay_buffer, state_buffer, grad_buffer = (delta.new_empty(buffer_shape) for _ in range(3))

        grad_delta, grad_du = torch.empty_like(delta), torch.empty_like(du)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        grad_A_t = torch.zeros_like(A_log2)
        grad_after_block = torch.zeros_like(block_start_states[0])  # g at the next block's start
        for (start, stop), initial in zip(reversed(blocks), reversed(block_start_states)):
            decay, states, state_grads = _block_views(
                stop - start, chunk_size, decay_buffer, state_buffer, grad_buffer
            )
            _fill_decay(decay, delta[start:stop], A_log2)
            _fill_outer(states, B[start:stop], du[start:stop])
            _chunked_linear_scan_(decay, states, initial)

            _fill_decay(decay, delta_next[start:stop], A_log2)
            _fill_outer(state_grads, C[start:stop], grad_y[start:stop])
            grad_after_block = _chunked_linear_scan_(decay, state_grads, grad_after_block, reverse=True)

            states, state_grads = states.flatten(0, 1), state_grads.flatten(0, 1)
            _contract_over_d_in(states, grad_y[start:stop], out=grad_C[start:stop])
            _contract_over_d_in(state_grads, du[start:stop], out=grad_B[start:stop])
            _contract_over_state(B[start:stop], state_grads, out=grad_du[start:stop])

            # decay_t = exp(delta_t * A) gets gradient g_t * h_{t-1}; times decay_t that is the
            # gradient q_t of delta_t * A, so grad delta_t = sum_n q_t A and grad A = sum_t q_t delta_t.
            decay = decay.flatten(0, 1)
            _fill_decay(decay, delta[start:stop], A_log2)
            q = state_grads.mul_(decay)
            q[1:].mul_(states[:-1])
            q[0].mul_(initial)
            torch.sum(torch.mul(q, A_t, out=decay), dim=-2, out=grad_delta[start:stop])
            grad_A_t += q.mul_(delta[start:stop].unsqueeze(-2)).sum((0, 1))

        grad_delta, grad_du, grad_B, grad_C = (
            x[:length].transpose(0, 1) for x in (grad_delta, grad_du, grad_B, grad_C)
        )
        return grad_delta, grad_du, grad_A_t.t(), grad_B, grad_C, None, None


def _time_major(x: Tensor, chunk_size: int) -> Tensor:
    """[batch, L, ...] -> contiguous [L', batch, ...], zero padded to whole chunks.

    Zero padding is harmless: delta = 0 makes the padded steps keep the state unchanged.
    """
    x = x.transpose(0, 1)
    pad = -x.shape[0] % chunk_size
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
    return x.contiguous()


def _blocks(length: int, chunk_size: int, block_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each block; all but the last hold the same whole number of chunks."""
    block = chunk_size * max(1, math.ceil(block_size / chunk_size))
    return [(start, min(start + block, length)) for start in range(0, length, block)]


def _block_views(length: int, chunk_size: int, *buffers: Tensor) -> list[Tensor]:
    """The first `length` positions of each [block, batch, N, D_in] scratch buffer, reused for
    every block, as [chunks, chunk_size, batch, N, D_in]."""
    return [b[:length].unflatten(0, (-1, chunk_size)) for b in buffers]


def _fill_decay(out: Tensor, delta: Tensor, A_log2: Tensor) -> None:
    """out[t, b, n, d] = exp(delta[t, b, d] * A[d, n])."""
    torch.mul(delta.unsqueeze(-2), A_log2, out=out.view(delta.shape[0], *out.shape[-3:])).exp2_()


def _fill_outer(out: Tensor, rows: Tensor, cols: Tensor) -> None:
    """out[t, b, n, d] = rows[t, b, n] * cols[t, b, d]."""
    torch.mul(rows.unsqueeze(-1), cols.unsqueeze(-2), out=out.view(rows.shape[0], *out.shape[-3:]))


def _contract_over_state(vectors: Tensor, states: Tensor, out: Tensor) -> None:
    """out[t, b, d] = sum_n vectors[t, b, n] * states[t, b, n, d]."""
    n, d_in = states.shape[-2:]
    torch.bmm(vectors.reshape(-1, 1, n), states.reshape(-1, n, d_in), out=out.view(-1, 1, d_in))


def _contract_over_d_in(states: Tensor, vectors: Tensor, out: Tensor) -> None:
    """out[t, b, n] = sum_d states[t, b, n, d] * vectors[t, b, d]."""
    n, d_in = states.shape[-2:]
    torch.bmm(states.reshape(-1, n, d_in), vectors.reshape(-1, d_in, 1), out=out.view(-1, n, 1))


def _chunked_linear_scan_(decay: Tensor, x: Tensor, initial: Tensor, reverse: bool = False) -> Tensor:
    """Solve s_t = decay_t * s_prev + x_t in place over a block laid out as [chunks, chunk_size, ...].

    `initial` is the state before the block. On return `x` holds every s_t, `decay` holds its
    cumulative products within each chunk, and the state at the block's last step is returned.
    With reverse=True time runs backwards: s_prev is s_{t+1}, `initial` is the state after the
    block and the state at its first step is returned.
    """
    n_chunks, chunk_size = x.shape[:2]
    steps = range(chunk_size - 1, -1, -1) if reverse else range(chunk_size)
    chunks = range(n_chunks - 1, -1, -1) if reverse else range(n_chunks)

    # Scan every chunk from a zero state, all chunks at once; products of decays stay <= 1.
    x_steps, decay_steps = x.unbind(1), decay.unbind(1)
    for prev, cur in zip(steps, steps[1:]):
        x_steps[cur].addcmul_(decay_steps[cur], x_steps[prev])
        decay_steps[cur].mul_(decay_steps[prev])

    # Hand the true state from each chunk to the next.
    entering = []
    state = initial
    for k in chunks:
        entering.append(state)
        state = torch.addcmul(x[k, steps[-1]], decay[k, steps[-1]], state)
    if reverse:
        entering.reverse()

    # Add the entering state's contribution, decayed to each position.
    x.addcmul_(decay, torch.stack(entering).unsqueeze(1))
    return state
