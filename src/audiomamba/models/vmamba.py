"""VMamba (Liu et al., 2024): SS2D blocks, the four-stage backbone, and the ImageNet classifier.

Parameter names and shapes are those of the official checkpoints, so
``load_state_dict(official["model"], strict=True)`` works.  Everything runs channels-last ``(B, H, W, C)``;
the official v2 models run channels-first internally, which changes no parameter and no result.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiomamba.models.layers import DropPath, LayerNorm, Mlp, Permute
from audiomamba.ops import cross_selective_scan

K = 4  # scan directions


@dataclass(frozen=True)
class VMambaConfig:
    """One VMamba variant. ``version`` picks stem / downsampling / SS2D: "v0" (vanilla: v1 stem, patch
    merging, SS2D with z gate and conv bias) or "v2" (v2 stem, conv downsampling, SS2D without z)."""

    depths: tuple[int, ...] = (2, 2, 9, 2)
    dim: int = 96
    d_state: int = 16
    ssm_ratio: float = 2.0
    mlp_ratio: float = 0.0
    version: str = "v0"
    drop_path_rate: float = 0.2

    def __post_init__(self) -> None:
        if self.version not in ("v0", "v2"):
            raise ValueError(f"VMamba version must be 'v0' or 'v2', got {self.version!r}")

    @property
    def dims(self) -> list[int]:
        return [self.dim * 2**i for i in range(len(self.depths))]

    def to_dict(self) -> dict:
        return asdict(self)


class SS2D(nn.Module):
    """2D selective scan (VMamba's token mixer).  ``use_z``: v0's SiLU gate branch; ``conv_bias``: v0's
    depthwise-conv bias.  Input and output ``(B, H, W, d_model)``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        d_conv: int = 3,
        use_z: bool = True,
        conv_bias: bool = True,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        e = int(ssm_ratio * d_model)
        r = math.ceil(d_model / 16)
        self.d_inner, self.d_state, self.dt_rank, self.use_z = e, d_state, r, use_z
        self.in_proj = nn.Linear(d_model, 2 * e if use_z else e, bias=False)
        self.conv2d = nn.Conv2d(e, e, d_conv, padding=(d_conv - 1) // 2, groups=e, bias=conv_bias)
        self.act = nn.SiLU()
        # Per-direction projections, stacked as in the official checkpoints.
        self.x_proj_weight = nn.Parameter(torch.empty(K, r + 2 * d_state, e))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, e, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, e))
        self.A_logs = nn.Parameter(torch.empty(K * e, d_state))
        self.Ds = nn.Parameter(torch.empty(K * e))
        self.out_norm = LayerNorm(e, cast_output=True)  # -> out_proj (after the z gate in v0)
        self.out_proj = nn.Linear(e, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """The official "v0" initialisation of the scan parameters (VMamba, Liu et al., 2024)."""
        e, r, n = self.d_inner, self.dt_rank, self.d_state
        dt_min, dt_max, floor = self._dt_range
        bound = e**-0.5  # nn.Linear(e, r + 2n)'s default uniform bound
        self.x_proj_weight.uniform_(-bound, bound)
        self.dt_projs_weight.uniform_(-(r**-0.5), r**-0.5)
        # computed on the CPU whatever the device the model is built on (the meta device of checkpoint checks
        # included, where these ops would go through torch's Python reference kernels), then copied
        dt = torch.rand(K, e, device="cpu") * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(dt).clamp(min=floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_logs.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32, device="cpu")).repeat(K * e, 1))
        self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor, scan_backend: str = "auto") -> torch.Tensor:
        """``(B, H, W, d_model)`` -> the same; ``scan_backend`` is passed to
        :func:`audiomamba.ops.cross_selective_scan` (see :mod:`audiomamba.ops.selective_scan`)."""
        x = self.in_proj(x)
        if self.use_z:
            x, z = x.chunk(2, dim=-1)
            z = self.act(z)
        # Channels-last throughout: the depthwise conv runs on a channels_last map, the projections are GEMMs on
        # (B, H, W, E) rows, and the scan takes every operand through its strides (one coalesced row of
        # channels per scan step on the GPU; the CPU kernel's rows), so no (B, E, H, W) copy is made.
        x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        x = self.act(self.conv2d(x))  # (B, E, H, W) logical, channels_last in memory
        # delta, B and C from the (B, H, W, E) rows; on the CPU delta as its rank-R factors, which the fused CPU
        # kernel projects itself (other backends get them expanded)
        delta, Bs, Cs, delta_proj = self.scan_inputs(x.permute(0, 2, 3, 1), composed=x.is_cuda)
        grid = lambda t: t.permute(0, 3, 4, 1, 2)  # noqa: E731  (B, H, W, K, .) -> (B, K, ., H, W) logical
        y = cross_selective_scan(
            x,
            grid(delta),
            -torch.exp(self.A_logs.float()),
            grid(Bs),
            grid(Cs),
            self.Ds.float(),
            self.dt_projs_bias.float().reshape(-1),
            delta_softplus=True,
            backend=scan_backend,
            delta_proj=delta_proj,
        )
        y = self.out_norm(y.permute(0, 2, 3, 1))
        if self.use_z:
            y = y * z
        return self.dropout(self.out_proj(y))

    def scan_inputs(
        self, xl: torch.Tensor, composed: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The scan's per-direction operands from the conv output rows ``xl (B, H, W, E)``, as views of one
        projection GEMM's output: ``(delta, B, C, delta_proj)`` with B, C ``(B, H, W, K, N)``.

        ``composed`` (the GPU's choice): delta in full, ``(B, H, W, K, E)`` before bias and softplus, and
        ``delta_proj`` None.  Otherwise (the CPU's) delta's rank-``dt_rank`` factors ``(B, H, W, K, R)`` and
        ``delta_proj = dt_projs_weight (K, E, R)``: :func:`audiomamba.ops.cross_selective_scan` takes them as
        they are (:func:`audiomamba.ops.expand_delta` gives the full delta).
        """
        b, h, w, e = xl.shape
        r, n = self.dt_rank, self.d_state
        if composed:
            # One GEMM with the composed weight dt_projs @ x_proj[:, :r] (the same map; no rank-r intermediate
            # is rounded).  GPU FLOPs are cheap, while the low-rank form's batched matmuls reduce over every
            # token in the backward, in a few thread blocks (docs/kernels.md).
            w_dt = torch.einsum("ker,krd->ked", self.dt_projs_weight, self.x_proj_weight[:, :r]).flatten(0, 1)
            w_all = torch.cat([w_dt, self.x_proj_weight[:, r:].flatten(0, 1)]).to(xl.dtype)
            out = F.linear(xl, w_all)
            bc = out[..., K * e:].unflatten(-1, (K, 2 * n))
            return out[..., : K * e].unflatten(-1, (K, e)), bc[..., :n], bc[..., n:], None
        # CPU: the low-rank form (a quarter to a tenth of the multiply-adds at these widths)
        x_dbl = F.linear(xl, self.x_proj_weight.flatten(0, 1).to(xl.dtype)).view(b, h, w, K, r + 2 * n)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=-1)
        return dts, Bs, Cs, self.dt_projs_weight


class VSSBlock(nn.Module):
    """``x + drop_path(SS2D(norm(x)))``, then ``x + drop_path(mlp(norm2(x)))`` when ``mlp_ratio > 0``."""

    def __init__(self, dim: int, cfg: VMambaConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        v0 = cfg.version == "v0"
        self.norm = LayerNorm(dim, cast_output=True)  # -> in_proj
        self.op = SS2D(dim, cfg.d_state, cfg.ssm_ratio, use_z=v0, conv_bias=v0)
        self.drop_path = DropPath(drop_path)
        if cfg.mlp_ratio > 0:
            self.norm2 = LayerNorm(dim, cast_output=True)  # -> fc1
            self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        else:
            self.norm2 = self.mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging2D(nn.Module):
    """Downsampling v1: concatenate each 2x2 neighbourhood [(0,0), (1,0), (0,1), (1,1)], norm, reduce."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(4 * dim, cast_output=True)  # -> reduction
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


def _stem(version: str, in_chans: int, dim: int) -> nn.Sequential:
    """Patch embedding to a stride-4 token grid, channels-last out (indices as in the official modules)."""
    if version == "v0":
        return nn.Sequential(nn.Conv2d(in_chans, dim, 4, 4), Permute(0, 2, 3, 1), LayerNorm(dim))
    half = dim // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, half, 3, 2, 1),
        Permute(0, 2, 3, 1),
        LayerNorm(half),
        Permute(0, 3, 1, 2),
        nn.GELU(),
        nn.Conv2d(half, dim, 3, 2, 1),
        Permute(0, 2, 3, 1),
        LayerNorm(dim),
    )


def _downsample(version: str, dim: int, out_dim: int) -> nn.Module:
    if version == "v0":
        return PatchMerging2D(dim, out_dim)
    return nn.Sequential(Permute(0, 3, 1, 2), nn.Conv2d(dim, out_dim, 3, 2, 1), Permute(0, 2, 3, 1), LayerNorm(out_dim))


class ClassifierHead(nn.Module):
    """LayerNorm -> global average pool -> Linear (``classifier.norm`` / ``classifier.head``)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(x).mean(dim=(1, 2))
        return x if pre_logits else self.head(x)


class VMamba(nn.Module):
    """The VMamba backbone, with the ImageNet classifier when ``num_classes > 0``.

    ``forward_features``: ``(B, in_chans, H, W)`` -> ``(B, H/32, W/32, 8*dim)`` (channels-last, before the
    classifier's norm); ``forward_head`` maps that to logits; ``forward`` does both.
    """

    def __init__(self, cfg: VMambaConfig, in_chans: int = 3, num_classes: int = 1000, drop_path_rate: float | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        dims = cfg.dims
        self.num_features = dims[-1]
        rate = cfg.drop_path_rate if drop_path_rate is None else drop_path_rate
        total = sum(cfg.depths)
        dpr = [rate * i / max(total - 1, 1) for i in range(total)]  # linear from 0 to rate
        self.patch_embed = _stem(cfg.version, in_chans, cfg.dim)
        self.layers = nn.ModuleList()
        start = 0
        for i, depth in enumerate(cfg.depths):
            blocks = nn.Sequential(*[VSSBlock(dims[i], cfg, dpr[start + j]) for j in range(depth)])
            start += depth
            last = i == len(cfg.depths) - 1
            down = nn.Identity() if last else _downsample(cfg.version, dims[i], dims[i + 1])
            self.layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=down)))
        self.classifier = ClassifierHead(self.num_features, num_classes) if num_classes > 0 else None
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor, keep_stage: int | None = None):
        """Images ``(B, C, H, W)`` -> the last stage's map ``(B, H/32, W/32, C)``, channels last.  With
        ``keep_stage=i``: ``(map, stage_i)``, where ``stage_i`` is stage ``i``'s blocks' output before its
        downsampling (stride ``4 * 2**i``), for heads that read finer time steps."""
        x = self.patch_embed(x)
        kept = None
        for i, layer in enumerate(self.layers):
            x = layer.blocks(x)
            if i == keep_stage:
                kept = x
            x = layer.downsample(x)
        return x if keep_stage is None else (x, kept)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this VMamba was built without a classifier (num_classes=0)")
        return self.classifier(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"VMamba expects images (B, C, H, W), got shape {tuple(x.shape)}")
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    """Official initialisation: Linear trunc_normal(0.02) with zero bias, LayerNorm (1, 0)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# The official ImageNet configurations (VMamba, Liu et al., 2024).
VMAMBA_CONFIGS: dict[str, VMambaConfig] = {
    "vmamba_tiny_v0": VMambaConfig((2, 2, 9, 2), 96, 16, 2.0, 0.0, "v0", 0.2),
    "vmamba_small_v0": VMambaConfig((2, 2, 27, 2), 96, 16, 2.0, 0.0, "v0", 0.3),
    "vmamba_base_v0": VMambaConfig((2, 2, 27, 2), 128, 16, 2.0, 0.0, "v0", 0.6),
    "vmamba_tiny_s2l5": VMambaConfig((2, 2, 5, 2), 96, 1, 2.0, 4.0, "v2", 0.2),
    "vmamba_small_s2l15": VMambaConfig((2, 2, 15, 2), 96, 1, 2.0, 4.0, "v2", 0.3),
    "vmamba_base_s2l15": VMambaConfig((2, 2, 15, 2), 128, 1, 2.0, 4.0, "v2", 0.6),
    "vmamba_tiny_s1l8": VMambaConfig((2, 2, 8, 2), 96, 1, 1.0, 4.0, "v2", 0.2),
    "vmamba_small_s1l20": VMambaConfig((2, 2, 20, 2), 96, 1, 1.0, 4.0, "v2", 0.3),
    "vmamba_base_s1l20": VMambaConfig((2, 2, 20, 2), 128, 1, 1.0, 4.0, "v2", 0.5),
}
