"""Small building blocks shared by the backbones and heads."""

from __future__ import annotations

import torch
from torch import nn

from audiomamba.ops.layer_norm import layer_norm


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module (keeps the official ``nn.Sequential`` indices of the stems)."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability ``p`` in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # training first: in eval mode torch.compile then guards on nothing here (a guard on p would recompile the
        # code after each block for every block's own rate)
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout (parameter names as in the official VMamba)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis (same parameters and state-dict names) that runs the fused Triton
    kernel on CUDA tensors.  Under autocast the output is float32, as PyTorch's, unless ``cast_output``: then it
    is the autocast dtype, for norms whose consumer is a matmul that would cast a float32 output anyway (half
    the bytes written, and no separate cast)."""

    def __init__(self, dim: int, eps: float = 1e-5, cast_output: bool = False) -> None:
        super().__init__(dim, eps=eps)
        self.cast_output = cast_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            return super().forward(x)
        out_dtype = x.dtype
        if torch.is_autocast_enabled(x.device.type):
            out_dtype = torch.get_autocast_dtype(x.device.type) if self.cast_output else torch.float32
        return layer_norm(x, self.weight, self.bias, self.eps, out_dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", cast_output=True" if self.cast_output else "")
