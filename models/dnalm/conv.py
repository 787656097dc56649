"""The short causal depthwise convolution of Mamba mixers, with its SiLU: a plain reference, a C
kernel for CPU (causal_conv.c) and causal-conv1d's CUDA kernel when it is installed.

x is [batch, L, channels]; weight is [channels, width], its last tap on the newest position;
bias is [channels] or None. The output has x's shape and dtype.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native

try:  # optional CUDA kernel
    from causal_conv1d import causal_conv1d_fn
except ImportError:
    causal_conv1d_fn = None


def causal_conv_silu_ref(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Reference, as width shifted multiply-adds in the [batch, L, channels] layout (on CPU far
    cheaper than a depthwise Conv1d over short rows, forward and backward)."""
    length, width = x.shape[1], weight.shape[1]
    padded = F.pad(x, (0, 0, width - 1, 0))
    taps = weight.t().to(x.dtype)
    y = padded[:, :length] * taps[0]
    for k in range(1, width):
        y = torch.addcmul(y, padded[:, k:k + length], taps[k])
    if bias is not None:
        y = y + bias.to(x.dtype)
    return F.silu(y)


def causal_conv_silu_native(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The C kernel, equal to `causal_conv_silu_ref` up to float32 rounding, with autograd (the
    backward pass differentiates the reference). Needs `native_conv_available()`."""
    return _NativeConv.apply(x.float(), weight.float(), None if bias is None else bias.float()).to(x.dtype)


def native_conv_available() -> bool:
    return _native_library() is not None


def causal_conv_silu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """causal-conv1d's kernel for CUDA tensors when it is installed; on CPU the C kernel, or the
    reference where it cannot be built."""
    if x.is_cuda and causal_conv1d_fn is not None:
        return causal_conv1d_fn(x.transpose(1, 2).contiguous(), weight, bias, activation="silu").transpose(1, 2)
    if x.device.type == "cpu" and native_conv_available():
        return causal_conv_silu_native(x, weight, bias)
    return causal_conv_silu_ref(x, weight, bias)


@functools.cache
def _native_library():
    library = native.load(Path(__file__).with_name("causal_conv.c"))
    if library is not None:
        size, pointer = ctypes.c_int64, ctypes.c_void_p
        library.janus_causal_conv_silu.argtypes = [size] * 4 + [pointer, size, size] + [pointer] * 3
        library.janus_causal_conv_silu.restype = None
    return library


class _NativeConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        if x.stride(-1) != 1:
            x = x.contiguous()
        batch, length, channels = x.shape
        taps = weight.t().contiguous()  # [width, channels]
        bias = None if bias is None else bias.contiguous()
        y = x.new_empty(x.shape)
        _native_library().janus_causal_conv_silu(
            batch, length, channels, taps.shape[0], ctypes.c_void_p(x.data_ptr()), x.stride(0), x.stride(1),
            ctypes.c_void_p(taps.data_ptr()), ctypes.c_void_p(None if bias is None else bias.data_ptr()),
            ctypes.c_void_p(y.data_ptr()))
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, weight, bias)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x, weight, bias = ctx.saved_tensors
        inputs = [t.detach().requires_grad_(needed) if t is not None else None
                  for t, needed in zip((x, weight, bias), ctx.needs_input_grad)]
        with torch.enable_grad():
            y = causal_conv_silu_ref(*inputs)
            wanted = [t for t in inputs if t is not None and t.requires_grad]
            grads = iter(torch.autograd.grad(y, wanted, grad_y))
        return tuple(next(grads) if t is not None and t.requires_grad else None for t in inputs)
