"""Building blocks shared by more than one architecture: RMSNorm, the SwiGLU MLP, causal
multi-head attention with grouped key/value heads, and the swap to reference kernels."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def swapped_kernels(kernels: dict, replacements: dict):
    """Within the block, kernels (an architecture's table of the kernels its model calls) holds
    the replacements (the plain reference twins the tests hold the fast kernels equal to)."""
    saved = dict(kernels)
    kernels.update(replacements)
    try:
        yield
    finally:
        kernels.update(saved)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)). The rows of x (every position of every sequence) go through in
    blocks of BLOCK_ROWS, so that a block's [rows, 2 * hidden] intermediate stays in cache: on
    CPU that is about 1.4x faster than one matmul over 8,192 positions (benchmarks/kernels.py), and
    a long sequence's intermediate is never whole (1.2 GB at 131 kbp for JanusDNA d=144's fusion
    layer)."""

    BLOCK_ROWS = 1024

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        # gate and up as one matmul: on CPU at small widths that is markedly faster than two
        gate_up = torch.cat([self.gate_proj.weight, self.up_proj.weight])
        blocks = [self.down_proj(F.silu(gate).mul_(up))
                  for gate, up in (F.linear(rows, gate_up).chunk(2, dim=-1)
                                   for rows in x.reshape(-1, x.shape[-1]).split(self.BLOCK_ROWS))]
        return (blocks[0] if len(blocks) == 1 else torch.cat(blocks)).view(*x.shape[:-1], -1)


def causal_attention(q, k, v):
    """Causal softmax attention, scale 1/sqrt(head_dim); q [B, H, L, hd], k and v [B, H_kv, L, hd]
    with H a multiple of H_kv (each key/value head serves H / H_kv query heads)."""
    if k.shape[1] != q.shape[1]:
        repeat = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def causal_attention_ref(q, k, v):
    """Test oracle for causal_attention: the dense masked softmax, written out."""
    repeat = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2)) / q.shape[-1] ** 0.5
    length = q.shape[2]
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    return (scores.masked_fill(future, float("-inf")).softmax(-1) @ v.float()).to(q.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention without positional encoding; n_kv_heads < n_heads gives
    grouped-query attention."""

    def __init__(self, d: int, n_heads: int, n_kv_heads: int | None = None):
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if d % n_heads or n_heads % n_kv_heads:
            raise ValueError(f"width {d}, {n_heads} heads, {n_kv_heads} key/value heads: the width must divide "
                             "into heads and the heads into key/value groups")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d // n_heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def split_heads(self, x, n_heads: int):
        b, l, _ = x.shape
        return x.view(b, l, n_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x):
        b, h, l, hd = x.shape
        return x.transpose(1, 2).reshape(b, l, h * hd)

    def project(self, x):
        """x [B, L, d] -> q [B, H, L, hd], k and v [B, H_kv, L, hd]."""
        return (self.split_heads(self.q_proj(x), self.n_heads), self.split_heads(self.k_proj(x), self.n_kv_heads),
                self.split_heads(self.v_proj(x), self.n_kv_heads))

    def forward(self, x):
        return self.o_proj(self.merge_heads(causal_attention(*self.project(x))))
