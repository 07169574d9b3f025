"""The HEAR API (Holistic Evaluation of Audio Representations) for Audio Mamba models.

>>> from audiomamba import hear
>>> model = hear.load_model()                                    # the shipped tagger; or a checkpoint, folder, repo id
>>> scene = hear.get_scene_embeddings(audio, model)              # audio (n_sounds, n_samples) -> (n_sounds, D)
>>> emb, ts = hear.get_timestamp_embeddings(audio, model)        # (n_sounds, n_timestamps, D), (n_sounds, n_timestamps)

``heareval`` runs it as the module ``audiomamba.hear`` with a checkpoint path (its model options are this
module's :func:`load_model` keyword arguments).  ``model.sample_rate`` is the rate the audio must be at (by default
the checkpoint's, 32 kHz for the standard front end: HEAR's datasets come at 16, 22.05, 32, 44.1 and 48 kHz, so
no resampling happens); ``model.scene_embedding_size == model.timestamp_embedding_size == D``, the backbone's width.

What the embeddings are:

- the backbone's last-stage token map, through the head's LayerNorm and averaged over its two frequency rows, is
  one D-vector per 0.32 s token (32 front-end frames; in fold layout, per 32 frames of the 1024-frame grid);
- timestamp embeddings are that sequence linearly interpolated at the timestamps, every ``hop_ms`` (default 50 ms,
  the spec's suggested upper bound) from 0 to the sound's duration: the centres of the front end's 10 ms frames
  ``0, hop_ms / 10, ...``;
- the scene embedding is the mean of the tokens over the sound, each token once: the model's own clip embedding
  (``model(wave).embedding``); in fold layout a long sound's is the mean over its windows, as the model's is.

Any length: in native layout a sound of at most ``chunk_s`` seconds is one pass, a longer one chunks of ``chunk_s``
with ``overlap_s`` of context on each inner side, each contributing its centre (both in whole tokens, so that every
chunk starts on the token grid of a single pass: features are not invariant to a shift by part of a token); in fold
layout, 1024-frame windows every 512 frames, overlapping timestamps averaged (the model's own way with a long
input).  The sounds of a batch go through the model together; timestamps are in milliseconds, float32, on the
model's device.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from audiomamba.models.audiomamba import FOLD_FRAMES, PATCH_STRIDE
from audiomamba.utils.device import autocast, resolve_device, resolve_dtype

__all__ = ["HearModel", "load_model", "get_scene_embeddings", "get_timestamp_embeddings"]

_BATCH_FRAMES = 65536  # spectrogram frames per backbone pass (bounds activation memory)
_SPEC_SAMPLES = 2**25  # samples per front-end pass (about 17 minutes at 32 kHz; bounds the STFT's memory)


class _Piece(NamedTuple):
    start: int  # first frame through the model
    length: int  # frames through the model
    keep_from: int  # timestamps at frames in [keep_from, keep_to) take this piece's embeddings
    keep_to: int


class HearModel(nn.Module):
    """An Audio Mamba model with the attributes the HEAR API asks for (see the module documentation).

    ``sample_rate``: the rate of the audio it will be given (default: the model's; another rate is resampled to
    the model's, with soxr on the CPU); ``hop_ms``: spacing of timestamp embeddings; ``dtype``: the backbone's
    compute dtype (float32, bfloat16 or float16; embeddings are float32 anyway); ``chunk_s`` / ``overlap_s``:
    native-layout chunking of long sounds.
    """

    def __init__(self, model: nn.Module, sample_rate: int | None = None, hop_ms: float = 50.0,
                 dtype: torch.dtype | str | None = None, chunk_s: float = 300.0, overlap_s: float = 10.0) -> None:
        super().__init__()
        if not hasattr(model, "forward_features") or not hasattr(model, "frontend"):
            raise TypeError(f"expected an audiomamba AudioMamba model, got {type(model).__name__}")
        if hop_ms <= 0:
            raise ValueError(f"hop_ms must be > 0, got {hop_ms}")
        self.model = model.eval()
        self.sample_rate = int(sample_rate or model.sample_rate)
        self.scene_embedding_size = int(model.num_features)
        self.timestamp_embedding_size = int(model.num_features)
        self.hop_ms = float(hop_ms)
        self.dtype = resolve_dtype(dtype)
        # chunks and their context in whole tokens (see the module documentation)
        tokens_per_s = model.sample_rate / model.frontend.cfg.hop_length / PATCH_STRIDE
        self.chunk_frames = int(chunk_s * tokens_per_s) * PATCH_STRIDE
        self.overlap_frames = math.ceil(overlap_s * tokens_per_s) * PATCH_STRIDE
        if overlap_s < 0 or self.chunk_frames <= 2 * self.overlap_frames:
            raise ValueError(f"chunk_s={chunk_s} must exceed twice overlap_s={overlap_s} by at least 0.32 s")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """The scene embeddings ``(n_sounds, D)`` (:func:`get_scene_embeddings`)."""
        return get_scene_embeddings(audio, self)


def load_model(model_file_path: str = "", *, device: str | torch.device | None = None, random_init: str | None = None,
               **options: Any) -> HearModel:
    """The HEAR entry point: an audiomamba checkpoint (``.safetensors``), a model folder, a Hugging Face Hub repo
    id or the name of a tagger shipped with the package (:func:`audiomamba.hub.from_pretrained`); empty: the
    package's default tagger (:data:`audiomamba.models.pretrained.DEFAULT_TAGGER`) -> a :class:`HearModel` on
    ``device`` (None: CUDA when available).

    ``options``: :class:`HearModel`'s (``sample_rate``, ``hop_ms``, ``dtype``, ``chunk_s``, ``overlap_s``).
    ``random_init="audiomamba_nano"`` (any registered name) builds an untrained model instead, for checking a
    pipeline only.
    """
    dev = resolve_device(device)
    if random_init is not None:
        if model_file_path:
            raise ValueError("give a model_file_path or random_init, not both")
        from audiomamba.models.registry import create_model

        model = create_model(random_init)
    else:
        from audiomamba.hub import from_pretrained
        from audiomamba.models.pretrained import DEFAULT_TAGGER

        model = from_pretrained(os.fspath(model_file_path) if model_file_path else DEFAULT_TAGGER)
    return HearModel(model, **options).to(dev)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``(n_sounds, n_samples)`` mono audio at ``model.sample_rate`` -> ``(n_sounds, D)`` float32 embeddings."""
    return _embed(audio, model, timestamps=False)[0]


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, n_samples)`` mono audio at ``model.sample_rate`` -> embeddings ``(n_sounds, n_timestamps, D)``
    and their centre times ``(n_sounds, n_timestamps)`` in milliseconds, every ``model.hop_ms`` from 0."""
    _, emb, ts = _embed(audio, model, timestamps=True)
    return emb, ts


# ---------------------------------------------------------------------- implementation
def _embed(
    audio: torch.Tensor, hm: HearModel, timestamps: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(scene (N, D), timestamp embeddings (N, K, D) or None, timestamps (N, K) in ms or None)."""
    model, dev = hm.model, hm.device
    wave = _prepare(audio, hm).to(dev)
    n, samples = wave.shape
    if n == 0:
        raise ValueError("expected at least one sound, got a batch of shape (0, n_samples)")
    duration_ms = 1000.0 * samples / model.sample_rate
    min_samples = model.frontend.min_samples
    if samples < min_samples:
        wave = nn.functional.pad(wave, (0, min_samples - samples))
    k = int(math.floor(duration_ms / hm.hop_ms + 1e-9)) + 1
    times = torch.arange(k, dtype=torch.float64) * hm.hop_ms  # ms
    positions = (times / (1000.0 * model.frontend.cfg.hop_length / model.sample_rate)).to(dev)  # in frames
    d = hm.scene_embedding_size
    scene = torch.zeros(n, d, device=dev)
    weight = 0
    stamped = torch.zeros(n, k, d, device=dev) if timestamps else None
    count = torch.zeros(k, 1, device=dev) if timestamps else None
    native = model.layout == "native"
    with torch.inference_mode():
        spec = _spectrogram(model, wave)
        frames = spec.shape[1]
        for piece in _pieces(hm, frames):
            # the last timestamp (the sound's duration) is at most the last frame's centre, so the pieces cover all
            idx = ((positions >= piece.keep_from) & (positions < piece.keep_to)).nonzero().squeeze(1)
            # scene: native, every token of the sound once (a chunk's tokens that start in its kept range); fold, the
            # mean of each window's tokens (the model's own clip embedding of a long input)
            kept = slice((piece.keep_from - piece.start) // PATCH_STRIDE,
                         -(-(piece.keep_to - piece.start) // PATCH_STRIDE))
            per = max(1, _BATCH_FRAMES // piece.length)
            for b0 in range(0, n, per):
                tokens = _tokens(hm, spec[b0 : b0 + per, piece.start : piece.start + piece.length])  # (b, T, D)
                part = tokens[:, kept] if native else tokens.mean(1, keepdim=True)
                scene[b0 : b0 + per] += part.sum(1)
                if timestamps and idx.numel():
                    coords = _token_coords(positions[idx] - piece.start, piece.length, tokens.shape[1], model.layout)
                    stamped[b0 : b0 + per, idx] += _interpolate(tokens, coords)
            weight += part.shape[1]
            if timestamps:
                count[idx] += 1
    scene = scene / weight
    if not timestamps:
        return scene, None, None
    return scene, stamped / count.clamp(min=1), times.to(torch.float32).to(dev).expand(n, k).contiguous()


def _prepare(audio: Any, hm: HearModel) -> torch.Tensor:
    """Check the batch and bring it to the model's rate: float32 ``(n_sounds, n_samples)``."""
    if not isinstance(audio, torch.Tensor):
        audio = torch.as_tensor(np.asarray(audio))
    if audio.dim() != 2:
        raise ValueError(f"expected audio of shape (n_sounds, n_samples), got {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"expected float audio in [-1, 1], got dtype {audio.dtype}")
    audio = audio.float()
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    model_rate = hm.model.sample_rate
    if hm.sample_rate != model_rate:
        from audiomamba.audio import resample

        rows = [resample(row, hm.sample_rate, model_rate) for row in audio.cpu().numpy()]
        audio = torch.from_numpy(np.stack(rows)) if rows else audio.new_zeros(0, 0)
    return audio


def _spectrogram(model: nn.Module, wave: torch.Tensor) -> torch.Tensor:
    """The model's normalised log-mel ``(N, frames, 64)``, in float32, a few sounds at a time."""
    per = max(1, _SPEC_SAMPLES // max(1, wave.shape[1]))
    with torch.autocast(wave.device.type, enabled=False):
        return torch.cat([model.spectrogram(wave[i : i + per]) for i in range(0, wave.shape[0], per)])


def _pieces(hm: HearModel, frames: int) -> list[_Piece]:
    """Native layout: one pass, or chunks whose kept centres tile the input, each with up to ``overlap_frames`` of
    context on either side (so the last may be shorter); fold layout: the model's own 1024-frame windows every 512
    frames (the last flush with the end), each keeping all its frames."""
    if hm.model.layout == "fold":
        if frames <= FOLD_FRAMES:
            return [_Piece(0, frames, 0, frames)]
        starts = list(range(0, frames - FOLD_FRAMES, FOLD_FRAMES // 2)) + [frames - FOLD_FRAMES]
        return [_Piece(s, FOLD_FRAMES, s, s + FOLD_FRAMES) for s in starts]
    n, overlap = hm.chunk_frames, hm.overlap_frames
    if frames <= n:
        return [_Piece(0, frames, 0, frames)]
    out, step = [], n - 2 * overlap
    for a in range(0, frames, step):
        b = frames if frames - min(a + step, frames) < overlap else min(a + step, frames)
        start, end = max(a - overlap, 0), min(b + overlap, frames)  # starts on the token grid
        out.append(_Piece(start, end - start, a, b))
        if b == frames:
            break
    return out


def _tokens(hm: HearModel, spec: torch.Tensor) -> torch.Tensor:
    """Spectrogram piece ``(B, frames, 64)`` -> token embeddings ``(B, tokens, D)`` (float32): the last stage's map
    through the head's LayerNorm, averaged over frequency rows, tokens holding real input only."""
    model = hm.model
    with autocast(spec.device, hm.dtype):
        features, valid = model.forward_features(spec)
        if isinstance(features, tuple):  # a model with finer steps: (last map, fine map)
            features = features[0]
        x = model.head.norm(features)[:, :, :valid]
    return x.float().mean(1)


def _token_coords(frames: torch.Tensor, length: int, tokens: int, layout: str) -> torch.Tensor:
    """Frame positions within a piece of ``length`` frames -> fractional token indices (token ``t``'s centre is
    ``t``), clamped to the tokens that exist."""
    if layout == "fold":  # the piece was resized onto the 1024-frame grid (align_corners=True)
        frames = frames * ((FOLD_FRAMES - 1) / max(length - 1, 1))
    return ((frames - (PATCH_STRIDE - 1) / 2) / PATCH_STRIDE).clamp(0, tokens - 1)


def _interpolate(tokens: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` at fractional indices ``(K,)`` -> ``(B, K, D)``, linearly."""
    i0 = coords.floor().long()
    i1 = (i0 + 1).clamp(max=tokens.shape[1] - 1)
    w = (coords - i0).to(tokens.dtype)[None, :, None]
    return tokens[:, i0] * (1 - w) + tokens[:, i1] * w
