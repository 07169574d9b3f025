"""Peer taggers for the equal-budget comparison: the architectures Audio Mamba is judged against, on the same
front end and with the same outputs, so that training, validation, evaluation and checkpoints need no special case.

- ``swin_t_htsat_like``: an HTS-AT-like Swin-T (timm's Swin-T, patch 4, window 8, 256 x 256 input, depths 2-2-6-2,
  dim 96) on the fold layout, with the token-semantic head of Audio Mamba.
- ``vit_b_ast_like``: an AST-like ViT-B/16 (timm's blocks): the log-mel resized to 128 x 1024, 16 x 16 patches
  with stride 10 (12 x 101 tokens), a class token, learned positions, 12 blocks, a linear head on the class token.
- ``cnn14_panns_like``: a PANNs-CNN14-like CNN in plain torch (six blocks of two 3x3 conv-BN-ReLU, 64 to 2048
  channels, 2 x 2 average pooling after the first five) on the native layout (mel x frames), with the
  token-semantic head (``head="tscam"``, framewise outputs) or PANNs' pooled head (``head="linear"``: mean over
  frequency, max + mean over time, a 2048-unit hidden layer).

Every peer has the project's front end (:class:`~audiomamba.models.features.LogMel`, BatchNorm over mel bins,
SpecAugment and spectrogram mixup in training) and the :class:`~audiomamba.models.audiomamba.AudioMamba` forward
API: ``model(wave, mixup_lambda=..., check_finite=..., layout=...)`` returns an
:class:`~audiomamba.models.audiomamba.AudioMambaOutput`; ``sample_rate``, ``frontend``, ``layout``, ``head_type``,
``num_classes`` and ``num_features`` are there.  The methods that only touch those parts are Audio Mamba's own
(``spectrogram``, ``forward_head``, ``forward_spectrogram``, ``forward``), so long inputs, windows and the
time alignment of framewise outputs behave the same.  timm is imported only when a timm peer is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiomamba.models.audiomamba import FOLD_FRAMES, N_MELS, PATCH_STRIDE, AudioMamba, native_image
from audiomamba.models.features import FrontendConfig, LogMel, SpecAugment
from audiomamba.models.heads import LinearHead, TokenSemanticHead, TransformerBlocks

__all__ = ["PEERS", "PeerTagger", "SwinHTSATLike", "ViTASTLike", "CNN14Like", "timm_available"]


def timm_available() -> bool:
    """Whether timm is installed (found, not imported: importing it is slow)."""
    import importlib.util

    return importlib.util.find_spec("timm") is not None


def _import_timm():
    try:
        import timm  # noqa: F401
    except ImportError as e:  # timm missing, or broken by its torchvision dependency
        raise ImportError(f"this peer model needs timm (pip install timm): {e}") from e
    return timm


class PeerTagger(nn.Module):
    """The front end, heads and forward API shared by the peers (Audio Mamba's, reused as they are).

    A subclass builds its trunk and defines :meth:`forward_features` ``(spec, layout) -> (map or tokens, valid
    steps)``; ``layouts`` are those it accepts (the first is its default)."""

    layouts: tuple[str, ...] = ("fold", "native")
    step_frames = PATCH_STRIDE  # the head reads the last map only (no finer steps)
    native_grid_frames: int | None = None  # see AudioMamba's; a peer that pads the same way sets it

    # Audio Mamba's methods that use only the front end, the head and forward_features
    normalise = AudioMamba.normalise
    spectrogram = AudioMamba.spectrogram
    forward_head = AudioMamba.forward_head
    step_grid = AudioMamba.step_grid
    forward_spectrogram = AudioMamba.forward_spectrogram
    forward = AudioMamba.forward

    def __init__(self, num_classes: int, head: str, layout: str | None, sample_rate: int, spec_augment: bool) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if head not in ("tscam", "linear"):
            raise ValueError(f"head must be 'tscam' or 'linear', got {head!r}")
        self.layout = self.layouts[0] if layout is None else layout
        self._layout(self.layout)
        self.num_classes, self.head_type = num_classes, head
        self.sample_rate = int(sample_rate)
        self.frontend = LogMel(FrontendConfig.for_sample_rate(self.sample_rate))
        self.bn0 = nn.BatchNorm1d(N_MELS)
        self.spec_augment = SpecAugment() if spec_augment else nn.Identity()

    def _layout(self, layout: str | None) -> str:
        layout = self.layout if layout is None else layout
        if layout not in self.layouts:
            raise ValueError(f"{type(self).__name__} takes layout {' or '.join(map(repr, self.layouts))}, got {layout!r}")
        return layout

    def forward_features(self, spec: torch.Tensor, layout: str | None = None) -> tuple[torch.Tensor, int]:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------- Swin-T
class SwinHTSATLike(PeerTagger):
    """HTS-AT-like: Swin-T on the folded 256 x 256 image, the (B, 8, 8, 768) map regrouped into 2 frequency rows x
    32 time steps (as Audio Mamba's fold layout does), optional transformer blocks, token-semantic or linear head."""

    layouts = ("fold",)

    def __init__(self, num_classes: int = 527, head: str = "tscam", layout: str = "fold",
                 extra_transformer_blocks: int = 0, drop_path_rate: float = 0.1, sample_rate: int = 32000,
                 spec_augment: bool = True) -> None:
        super().__init__(num_classes, head, layout, sample_rate, spec_augment)
        timm = _import_timm()
        self.backbone = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=256, window_size=8,
                                          in_chans=1, num_classes=0, drop_path_rate=drop_path_rate)
        dim = self.backbone.num_features
        self.num_features = dim
        self.extra_blocks = TransformerBlocks(dim, extra_transformer_blocks) if extra_transformer_blocks > 0 else None
        self.head = TokenSemanticHead(dim, num_classes) if head == "tscam" else LinearHead(dim, num_classes)

    def forward_features(self, spec: torch.Tensor, layout: str | None = None) -> tuple[torch.Tensor, int]:
        self._layout(layout)
        x = self.backbone.forward_features(AudioMamba.fold(spec))  # (B, 8, 8, C), channels last
        if x.dim() == 3:  # timm versions that return (B, L, C)
            side = int(round(x.shape[1] ** 0.5))
            x = x.reshape(x.shape[0], side, side, x.shape[2])
        x = AudioMamba.unfold_map(x)
        if self.extra_blocks is not None:
            x = self.extra_blocks(x)
        return x, x.shape[2]


# ----------------------------------------------------------------------------------------------- ViT-B
class _ClassTokenHead(nn.Module):
    """Linear classifier on the (normalised) class token: ``(logits, None, embedding)`` like the other heads."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, valid_steps: int | None = None) -> tuple[torch.Tensor, None, torch.Tensor]:
        return self.fc(x), None, x


class ViTASTLike(PeerTagger):
    """AST-like ViT-B/16: (B, T <= 1024, 64) resized to a 128 x 1024 image, patch conv 16 x 16 stride 10 (12 x 101
    tokens), class token, learned positions, timm Blocks, LayerNorm, linear head on the class token.  Inputs longer
    than 1024 frames go through Audio Mamba's fold-layout windows (training: a random crop)."""

    layouts = ("fold",)
    IMAGE = (128, FOLD_FRAMES)

    def __init__(self, num_classes: int = 527, head: str = "linear", layout: str = "fold",
                 extra_transformer_blocks: int = 0, drop_path_rate: float = 0.1, sample_rate: int = 32000,
                 spec_augment: bool = True, dim: int = 768, depth: int = 12, heads: int = 12) -> None:
        if head != "linear":
            raise ValueError("vit_b_ast_like has a class-token head only: head must be 'linear'")
        if extra_transformer_blocks:
            raise ValueError("vit_b_ast_like: extra_transformer_blocks does not apply (set depth instead)")
        super().__init__(num_classes, head, layout, sample_rate, spec_augment)
        _import_timm()
        from timm.models.vision_transformer import Block

        self.patch = nn.Conv2d(1, dim, 16, stride=10)
        grid = tuple((s - 16) // 10 + 1 for s in self.IMAGE)  # (12, 101)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, grid[0] * grid[1] + 1, dim) * 0.02)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rising linearly
        self.blocks = nn.Sequential(*[Block(dim, heads, 4.0, qkv_bias=True, drop_path=r) for r in rates])
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = _ClassTokenHead(dim, num_classes)

    def forward_features(self, spec: torch.Tensor, layout: str | None = None) -> tuple[torch.Tensor, int]:
        self._layout(layout)
        img = F.interpolate(spec.transpose(1, 2).unsqueeze(1), size=self.IMAGE, mode="bilinear", align_corners=False)
        x = self.patch(img).flatten(2).transpose(1, 2)  # (B, 1212, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.norm(self.blocks(x))[:, 0], 1


# ----------------------------------------------------------------------------------------------- CNN14
class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, pool: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.pool(self.body(x)))


class _PANNsHead(nn.Module):
    """PANNs' clip head on the (B, F, T, C) map: mean over frequency, max + mean over the valid time steps,
    dropout, a ReLU hidden layer (the embedding), dropout, linear classifier."""

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc = nn.Linear(dim, num_classes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid_steps: int | None = None) -> tuple[torch.Tensor, None, torch.Tensor]:
        x = x[:, :, : valid_steps or x.shape[2]].mean(dim=1)  # (B, T, C)
        x = x.amax(dim=1) + x.mean(dim=1)
        embedding = F.relu(self.fc1(self.drop(x)))
        return self.fc(self.drop(embedding)), None, embedding


class CNN14Like(PeerTagger):
    """PANNs-CNN14-like on the native layout: the (64 mel x frames) spectrogram, padded at the end (last frame
    repeated) to a multiple of 32 frames, through six conv blocks; the (B, 2048, 2, frames / 32) map goes to the
    token-semantic head (framewise outputs, one step per 32 frames as Audio Mamba's native layout) or PANNs' head.
    ``dropout`` follows each block (PANNs: 0.2); ``drop_path_rate`` is accepted for a uniform config and unused."""

    layouts = ("native",)
    native_grid_frames = PATCH_STRIDE  # forward_features pads with native_image, as Audio Mamba does
    CHANNELS = (64, 128, 256, 512, 1024, 2048)

    def __init__(self, num_classes: int = 527, head: str = "tscam", layout: str = "native",
                 extra_transformer_blocks: int = 0, drop_path_rate: float = 0.0, sample_rate: int = 32000,
                 spec_augment: bool = True, dropout: float = 0.2, width: float = 1.0) -> None:
        super().__init__(num_classes, head, layout, sample_rate, spec_augment)
        chans = [max(8, int(round(c * width))) for c in self.CHANNELS]
        pools = (2, 2, 2, 2, 2, 1)
        blocks, cin = [], 1
        for cout, pool in zip(chans, pools):
            blocks.append(_ConvBlock(cin, cout, pool, dropout))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        dim = chans[-1]
        self.num_features = dim
        self.extra_blocks = TransformerBlocks(dim, extra_transformer_blocks) if extra_transformer_blocks > 0 else None
        self.head = TokenSemanticHead(dim, num_classes) if head == "tscam" else _PANNsHead(dim, num_classes)

    def forward_features(self, spec: torch.Tensor, layout: str | None = None) -> tuple[torch.Tensor, int]:
        self._layout(layout)
        x = self.blocks(native_image(spec)).permute(0, 2, 3, 1)  # (B, 2, padded / 32, C)
        if self.extra_blocks is not None:
            x = self.extra_blocks(x)
        return x, -(-spec.shape[1] // PATCH_STRIDE)


# name -> (class, needs timm, description)
PEERS: dict[str, tuple[type[PeerTagger], bool, str]] = {
    "swin_t_htsat_like": (SwinHTSATLike, True, "peer: HTS-AT-like Swin-T (timm), fold layout, token-semantic head"),
    "vit_b_ast_like": (ViTASTLike, True, "peer: AST-like ViT-B/16 (timm blocks), 128x1024 image, class-token head"),
    "cnn14_panns_like": (CNN14Like, False, "peer: PANNs-CNN14-like CNN, native layout, token-semantic head"),
}
