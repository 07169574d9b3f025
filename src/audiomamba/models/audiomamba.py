"""Audio Mamba: HTS-AT's spectrogram front end and token-semantic head around a VMamba backbone.

Waveform ``(B, samples)`` at ``sample_rate`` -> log-mel -> BatchNorm over mel bins -> SpecAugment and
mixup (training) -> an image in one of two layouts -> VMamba -> head.

Layouts (``layout=``):

- ``"fold"`` (the paper's, HTS-AT's ``reshape_wav2img``): up to 1024 frames are resized (bicubic) to 1024 and
  folded into a 256 x 256 image whose rows are 4 time chunks x 64 mel bins and whose columns are the 256
  frames of a chunk.  Longer inputs: a random 1024-frame crop in training, and at inference overlapping
  1024-frame windows (hop 512) whose outputs are averaged (:mod:`audiomamba.inference.pieces`).
- ``"native"``: the (64 mel x frames) spectrogram is the image, padded at the end (last frame repeated) to a
  multiple of 32 frames; any length, no resizing, cost linear in the length.

The model's ``layout`` is the default; every forward method takes ``layout=`` to run the same weights in the
other one (the Tagger's native mode on a fold-layout checkpoint, export with ``--layout``).  Both give clip
logits, framewise logits at the input's frame rate (10 ms at 32 kHz) and an embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiomamba.audio import check_waveform
from audiomamba.inference.pieces import PiecePlan
from audiomamba.models.features import FrontendConfig, LogMel, SpecAugment
from audiomamba.models.heads import FineSteps, LinearHead, TokenSemanticHead, TransformerBlocks
from audiomamba.models.vmamba import VMamba, VMambaConfig

FOLD_FRAMES = 1024  # frames folded into one 256 x 256 image
FOLD_CHUNKS = 4  # = spec_size 256 // 64 mel bins (HTS-AT's freq_ratio)
PATCH_STRIDE = 32  # total downsampling of the backbone: one output column per 32 frames
N_MELS = 64
LAYOUTS = ("fold", "native")
FOLD_WINDOWS = PiecePlan.windowed(FOLD_FRAMES, FOLD_FRAMES // 2)  # a fold-layout model on a long input


def mean_over_shifts(run: Callable[[torch.Tensor], tuple], wave: torch.Tensor, shifts: int, spacing: int,
                     hop: int) -> tuple:
    """Test-time shifts: the mean of ``run`` over ``wave`` (B, samples) circularly shifted by 0, ``spacing``,
    ``2 * spacing``, ... frames of ``hop`` samples.  ``run`` returns a tuple of tensors (or None) whose last
    member is framewise, (B, frames, ...) or None; that member is rolled back by each pass's shift before the
    mean, so every frame is scored at its own time and the head's steps fall at ``shifts`` phases."""
    total = None
    for s in range(shifts):
        k = s * spacing
        *rest, fw = run(torch.roll(wave, k * hop, dims=1) if k else wave)
        if k and fw is not None:
            fw = torch.roll(fw, -k, dims=1)
        out = (*rest, fw)
        total = out if total is None else tuple(None if a is None else a + b for a, b in zip(total, out))
    return tuple(None if a is None else a / shifts for a in total)


def steps_to_frames(steps: torch.Tensor, frames: int, layout: str, step_frames: int = PATCH_STRIDE) -> torch.Tensor:
    """A token-semantic head's step logits ``(B, classes, steps)`` -> framewise logits ``(B, frames, classes)``.

    Each step covers ``step_frames`` frames of the (folded or padded) grid: 32, or fewer for a model with finer
    steps (``AudioMamba(step_frames=...)``).  Fold layout: the 1024-frame grid is mapped back
    onto the real frames (the inverse of the resize), each step's logits repeated over its frames as the official
    HTS-AT does.  Native layout: each step's logits sit at the centre of its frames and are interpolated
    linearly between centres (held before the first and after the last).  Repeating them over the step would put
    every onset and offset on a 0.32 s grid, coarser than the 0.2 s collar events are scored with; steps are
    trained on the fraction of them an event covers (:func:`audiomamba.training.step.frame_targets`), so a
    threshold crossing of the interpolated logits lands close to the true boundary."""
    dev = steps.device
    if layout == "fold" and frames != FOLD_FRAMES:
        # Linear resize of the 1024-frame grid onto the real frames (align_corners=True) as a gather and a
        # lerp: F.interpolate's 1D CUDA kernel parallelises over output positions only, which makes it slow for
        # many classes at large batches.
        pos = torch.arange(frames, device=dev, dtype=torch.float64) * ((FOLD_FRAMES - 1) / max(frames - 1, 1))
        i0 = pos.floor().long().clamp(max=FOLD_FRAMES - 1)
        i1 = (i0 + 1).clamp(max=FOLD_FRAMES - 1)
        w = (pos - i0).to(steps.dtype)
        x = steps[..., i0 // step_frames] * (1 - w) + steps[..., i1 // step_frames] * w
    elif layout == "fold":
        x = steps[..., torch.arange(frames, device=dev) // step_frames]
    else:
        last = steps.shape[-1] - 1
        pos = (torch.arange(frames, device=dev, dtype=torch.float64) + 0.5) / step_frames - 0.5  # in steps
        i0 = pos.floor().clamp(0, last)
        w = (pos - i0).clamp(0, 1).to(steps.dtype)
        i0 = i0.long()
        x = steps[..., i0] * (1 - w) + steps[..., (i0 + 1).clamp(max=last)] * w
    return x.transpose(1, 2)


def native_image(spec: torch.Tensor, frames: int | None = None) -> torch.Tensor:
    """Spectrogram ``(B, T, mels)`` -> the native layout's image ``(B, 1, mels, frames)``, padded at the end by
    repeating the last frame (a neutral continuation, unlike a constant that the scans would see as a loud or silent
    event) to ``frames`` (default: ``T`` rounded up to a multiple of :data:`PATCH_STRIDE`, what the model pads to).
    An input padded to its own default length is the same to the model as the input itself, which is why inputs
    whose default lengths agree can share a batch (``native_grid_frames``, the Tagger)."""
    t = spec.shape[1]
    frames = -(-t // PATCH_STRIDE) * PATCH_STRIDE if frames is None else frames
    return F.pad(spec.transpose(1, 2), (0, frames - t), mode="replicate").unsqueeze(1)


def _upsample_steps(steps: torch.Tensor, factor: int, layout: str) -> torch.Tensor:
    """Step logits ``(B, classes, steps)`` onto a grid ``factor`` times finer, as :func:`steps_to_frames` spreads
    them (native: linear between step centres; fold: repeated), so that spreading the result onto frames gives
    what the coarse steps would have given (in native layout, up to the corners at the coarse centres)."""
    if layout == "fold":
        return steps.repeat_interleave(factor, dim=-1)
    return steps_to_frames(steps, steps.shape[-1] * factor, layout, factor).transpose(1, 2)


@dataclass
class AudioMambaOutput:
    """``logits`` (B, classes); ``framewise_logits`` (B, frames, classes) aligned to the input's frames, or
    None for the linear head; ``embedding`` (B, D); ``step_logits`` (B, classes, steps): the token-semantic
    head's logits per valid time step (:meth:`AudioMamba.step_grid` says what part of the input each covers),
    None for the linear head and for outputs stitched from windows."""

    logits: torch.Tensor
    framewise_logits: torch.Tensor | None
    embedding: torch.Tensor
    step_logits: torch.Tensor | None = None

    def __getitem__(self, key: str) -> torch.Tensor | None:
        return getattr(self, key)


class AudioMamba(nn.Module):
    """Audio Mamba tagger. Build it with :func:`audiomamba.create_model`."""

    # In native layout an input of t frames is the same to the model as its spectrogram padded to a multiple of
    # this many frames with its last frame repeated (:func:`native_image`), so the Tagger batches inputs whose
    # padded lengths agree.
    native_grid_frames = PATCH_STRIDE

    def __init__(
        self,
        backbone: VMambaConfig,
        num_classes: int = 527,
        head: str = "tscam",
        layout: str = "fold",
        extra_transformer_blocks: int = 0,
        drop_path_rate: float = 0.1,
        sample_rate: int = 32000,
        spec_augment: bool = True,
        step_frames: int = PATCH_STRIDE,
    ) -> None:
        super().__init__()
        if head not in ("tscam", "linear"):
            raise ValueError(f"head must be 'tscam' or 'linear', got {head!r}")
        finer = {PATCH_STRIDE >> k: k for k in range(len(backbone.depths))}  # 32: 0, 16: 1, 8: 2, 4: 3 stages back
        if step_frames not in finer:
            raise ValueError(f"step_frames must be one of {sorted(finer)}, got {step_frames!r}")
        if step_frames != PATCH_STRIDE and head != "tscam":
            raise ValueError(f"step_frames={step_frames} needs the token-semantic head (head='tscam'), not {head!r}")
        self._layout(layout)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.head_type, self.layout = num_classes, head, layout
        self.sample_rate = int(sample_rate)
        self.frontend = LogMel(FrontendConfig.for_sample_rate(self.sample_rate))
        self.bn0 = nn.BatchNorm1d(N_MELS)  # HTS-AT's BatchNorm2d(64): the same parameters and state-dict keys
        self.spec_augment = SpecAugment() if spec_augment else nn.Identity()
        self.backbone = VMamba(backbone, in_chans=1, num_classes=0, drop_path_rate=drop_path_rate)
        dim = self.backbone.num_features
        self.num_features = dim
        self.extra_blocks = TransformerBlocks(dim, extra_transformer_blocks) if extra_transformer_blocks > 0 else None
        self.head = TokenSemanticHead(dim, num_classes) if head == "tscam" else LinearHead(dim, num_classes)
        # Finer steps: the head's step logits corrected from an earlier stage's map (its blocks' output before
        # downsampling), whose time grid is ``step_frames`` frames.
        self.step_frames = int(step_frames)
        self._keep_stage = None if step_frames == PATCH_STRIDE else len(backbone.depths) - 1 - finer[step_frames]
        self.fine_steps = (None if self._keep_stage is None else
                           FineSteps(backbone.dims[self._keep_stage], num_classes, N_MELS // step_frames))

    # ---------------------------------------------------------------- spectrogram
    def _layout(self, layout: str | None) -> str:
        """``layout``, or the model's own when None; refuses unknown names."""
        layout = self.layout if layout is None else layout
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be 'fold' or 'native', got {layout!r}")
        return layout

    def normalise(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel in dB ``(B, frames, 64)`` -> the backbone's input scale: BatchNorm over mel bins (HTS-AT's bn0)."""
        # One row of 64 bins per (clip, frame): the statistics of HTS-AT's BatchNorm2d on the (B, 64, frames, 1)
        # transpose, with no transposed gradient.  BatchNorm2d's CPU backward returns wrong weight and bias gradients
        # when its gradient arrives channels-last, as the transpose's does (torch 2.11 and 2.13; the forward is right).
        b, t, f = logmel.shape
        return self.bn0(logmel.reshape(b * t, f)).reshape(b, t, f)

    def spectrogram(self, wave: torch.Tensor, mixup_lambda: torch.Tensor | None = None,
                    block_frames: int | None = None) -> torch.Tensor:
        """Log-mel, :meth:`normalise`, and in training SpecAugment and mixup: ``(B, frames, 64)``.

        ``mixup_lambda`` (B,): example i becomes ``lam_i * x_i + (1 - lam_i) * x_{B-1-i}`` (the batch reversed);
        mix the targets the same way.  ``block_frames``: compute the log-mel of a long input in blocks of that
        many frames (:class:`~audiomamba.models.features.LogMel`).
        """
        x = self.spec_augment(self.normalise(self.frontend(wave, block_frames)))
        if mixup_lambda is not None:
            lam = mixup_lambda.to(x.dtype).view(-1, 1, 1)
            x = lam * x + (1 - lam) * x.flip(0)
        return x

    # ---------------------------------------------------------------- layouts
    @staticmethod
    def fold(spec: torch.Tensor) -> torch.Tensor:
        """(B, T <= 1024, 64) -> (B, 1, 256, 256): resize time to 1024 (bicubic), then image row
        ``c * 64 + m`` / column ``j`` holds mel bin ``m`` of frame ``c * 256 + j``."""
        b, t, m = spec.shape
        x = spec.unsqueeze(1)
        if t != FOLD_FRAMES:
            x = F.interpolate(x, size=(FOLD_FRAMES, m), mode="bicubic", align_corners=True)
        x = x.transpose(2, 3).reshape(b, 1, m, FOLD_CHUNKS, FOLD_FRAMES // FOLD_CHUNKS)
        return x.permute(0, 1, 3, 2, 4).reshape(b, 1, FOLD_CHUNKS * m, FOLD_FRAMES // FOLD_CHUNKS)

    @staticmethod
    def unfold_map(x: torch.Tensor) -> torch.Tensor:
        """Backbone output of a folded image (B, 8, 8, C) -> (B, 2, 32, C): freq rows x time steps, where
        time step ``c * 8 + j`` is column ``j`` of chunk ``c``."""
        b, h, w, c = x.shape
        rows = h // FOLD_CHUNKS
        return x.reshape(b, FOLD_CHUNKS, rows, w, c).transpose(1, 2).reshape(b, rows, FOLD_CHUNKS * w, c)

    # ---------------------------------------------------------------- forward
    def forward_features(self, spec: torch.Tensor, layout: str | None = None) -> tuple[torch.Tensor | tuple, int]:
        """Spectrogram ``(B, T, 64)`` (T <= 1024 in fold layout) -> ``(B, 2, steps, C)`` map and the number of
        time steps that hold real input.  ``layout``: "fold" or "native" (None: the model's).  A model with finer
        steps returns the pair ``(map, fine map)`` in place of the map, the fine map being the earlier stage's
        ``(B, 64 / step_frames, frames / step_frames, C')`` that :class:`~audiomamba.models.heads.FineSteps`
        reads; :meth:`forward_head` takes either."""
        keep = self._keep_stage

        def backbone(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return (self.backbone.forward_features(img), None) if keep is None else self.backbone.forward_features(img, keep)

        if self._layout(layout) == "fold":
            x, fine = backbone(self.fold(spec))
            x, fine = self.unfold_map(x), None if fine is None else self.unfold_map(fine)
            valid = x.shape[2]
        else:
            x, fine = backbone(native_image(spec))
            valid = -(-spec.shape[1] // PATCH_STRIDE)
        if self.extra_blocks is not None:
            x = self.extra_blocks(x)
        return (x, valid) if fine is None else ((x, fine), valid)

    def forward_head(self, features: torch.Tensor | tuple, valid_steps: int, frames: int, layout: str | None = None) -> AudioMambaOutput:
        """Map (or the pair of :meth:`forward_features` for finer steps) -> outputs, with step logits spread back
        onto ``frames`` input frames (``layout``: the one the map was made in; None: the model's).  Clip logits
        are the mean of the head's own steps; finer steps only change the framewise output."""
        layout = self._layout(layout)
        fine = None
        if isinstance(features, tuple):
            features, fine = features
        logits, steps, embedding = self.head(features, valid_steps)
        step_frames = self.step_frames
        if fine is not None:
            steps = _upsample_steps(steps, PATCH_STRIDE // step_frames, layout) + self.fine_steps(fine).to(steps.dtype)
            # steps wholly in the padding are dropped, as the coarse grid has none
            valid_steps = steps.shape[-1] if layout == "fold" else -(-frames // step_frames)
            steps = steps[..., :valid_steps]
        framewise = None if steps is None else steps_to_frames(steps, frames, layout, step_frames)
        return AudioMambaOutput(logits, framewise, embedding, None if steps is None else steps[..., :valid_steps])

    def step_grid(self, samples: int, layout: str | None = None) -> tuple[int, float]:
        """The head's time steps on a ``samples``-long input: ``(steps, span)``, the number of valid steps and the
        fraction of the input they cover together, in equal shares from its start (step ``j`` covers
        ``[j, j + 1) * span / steps``), on the time line where frame ``k`` of ``frames`` covers
        ``[k, k + 1) / frames``.  As :func:`steps_to_frames` maps them: in native layout a step is 32 frames and
        the last one runs into the padding (``span >= 1``); in fold layout the 32 steps share the 1024-frame grid
        that the input's frames are resized onto (``span`` about 1).  A fold-layout input of more than 1024 frames
        has no one grid (a random crop in training, windows at inference): ``ValueError``."""
        frames = self.frontend.num_frames(samples)
        step_frames = self.step_frames
        if self._layout(layout) == "native":
            steps = -(-frames // step_frames)
            return steps, steps * step_frames / frames
        if frames > FOLD_FRAMES:
            raise ValueError(f"fold layout: an input of {frames} frames (more than {FOLD_FRAMES}) is cropped or "
                             "windowed, so its time steps have no fixed place in it")
        steps = FOLD_FRAMES // step_frames
        # the grid's frame g sits at input frame g * (frames - 1) / (FOLD_FRAMES - 1) (align_corners)
        return steps, FOLD_FRAMES * max(frames - 1, 1) / ((FOLD_FRAMES - 1) * frames)

    def forward_spectrogram(self, spec: torch.Tensor, layout: str | None = None) -> AudioMambaOutput:
        """Spectrogram ``(B, frames, 64)`` of any length (from :meth:`spectrogram`) -> :class:`AudioMambaOutput`.

        Native layout, or at most 1024 frames: one pass.  Fold layout on a longer input: a random 1024-frame
        crop in training; at inference windows of 1024 frames every 512 (the last flush with the end), stitched
        by :class:`~audiomamba.inference.pieces.Stitcher` (logits and embeddings averaged over the windows,
        framewise logits over the windows covering each frame)."""
        layout = self._layout(layout)
        frames = spec.shape[1]
        if layout == "native" or frames <= FOLD_FRAMES:
            return self.forward_head(*self.forward_features(spec, layout), frames, layout)
        if self.training:  # random 1024-frame crop
            start = int(torch.randint(0, frames - FOLD_FRAMES + 1, ()))
            crop = spec[:, start : start + FOLD_FRAMES]
            return self.forward_head(*self.forward_features(crop, layout), FOLD_FRAMES, layout)
        stitcher = FOLD_WINDOWS.stitcher(frames)
        for piece in FOLD_WINDOWS.pieces(frames):
            window = spec[:, piece.start : piece.start + piece.length]
            out = self.forward_head(*self.forward_features(window, layout), piece.length, layout)
            stitcher.add(piece, out.logits, out.embedding, out.framewise_logits)
        return AudioMambaOutput(*stitcher.result())

    def forward(
        self, wave: torch.Tensor, sample_rate: int | None = None, mixup_lambda: torch.Tensor | None = None,
        check_finite: bool = True, layout: str | None = None,
    ) -> AudioMambaOutput:
        """Waveform ``(B, samples)`` at ``self.sample_rate`` -> :class:`AudioMambaOutput`.

        ``check_finite=False`` skips the NaN/inf check, which waits for the device: for callers whose audio is
        already checked (the data loaders check every decoded clip) and for CUDA-graph capture.  ``layout``:
        "fold" or "native" for this call (None: the model's ``layout``)."""
        if not isinstance(wave, torch.Tensor):
            raise ValueError(f"expected a waveform tensor of shape (batch, samples), got {type(wave).__name__}")
        check_waveform(wave, "waveform", ndim=2, min_samples=self.frontend.min_samples, sample_rate=sample_rate,
                       expected_rate=self.sample_rate, check_finite=check_finite)
        return self.forward_spectrogram(self.spectrogram(wave, mixup_lambda), layout)
