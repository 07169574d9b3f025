"""Pieces: how a spectrogram of any length is cut into pieces for the model, and how their outputs are combined.

One planner (:meth:`PiecePlan.pieces`) and one stitcher (:class:`Stitcher`), used by the fold-layout model on a
long input (:meth:`audiomamba.models.AudioMamba.forward_spectrogram`: windows of 1024 frames, hop 512), by the
:class:`~audiomamba.inference.Tagger` (both modes, any settings) and by the exported graph (through the model).

Two ways to cut (all lengths in spectrogram frames):

- **windowed** (HTS-AT/AST): windows of ``length`` frames every ``hop`` frames, the last one flush with the end;
  an input no longer than a window is one window.  Clip logits are the ``aggregate`` ("mean" or "max") over the
  windows, embeddings their mean; framewise logits are the mean (or max) over the windows covering each frame.
- **native**: an input of at most ``length`` frames is one piece; a longer one is cut into chunks of ``length``
  frames whose kept centres tile the input, each with ``overlap`` frames of context on its inner sides (a tail
  shorter than ``overlap`` is absorbed by the last centre).  Each chunk contributes only its centre to the
  framewise output, so it is stitched without seams; clip logits and embeddings are the means of the chunks'
  weighted by the frames each keeps.

Short inputs: a native-layout model is trained on 10 s clips whose events sit among silence and background, and its
clip logits are the mean of its time steps' logits over the input; a second of sound on its own is unlike what it saw.
:func:`centre_padding` puts such an input in the middle of silence of :data:`MIN_INPUT_S` seconds (the Tagger and
``audiomamba evaluate`` both do; the framewise output is cut back to the input's own frames). On the built-in
validation split's single recordings (median 1.2 s) this raised the shipped tagger's mAP from 0.61 to 0.67; 2.5 s
was the best of 1 to 10 s (``scripts/short_inputs.py``; ``docs/results.md``, "Short recordings"). Fold-layout
models resize any input of up to 1024 frames onto their grid (HTS-AT's way) and are left as they are, and a model
trained on clips shorter than that is never padded beyond its own clip length (:func:`default_min_input_s`).

Nothing here knows the model: the pieces' outputs are tensors ``logits (..., C)``, ``embedding (..., D)`` and
optionally ``framewise (..., length, C)``, with any leading batch shape (the model stitches a whole batch at
once, the Tagger one file at a time).  Only shapes decide the plan, so a traced or exported graph holds it as
constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["MIN_INPUT_S", "Piece", "PiecePlan", "Stitcher", "centre_padding", "default_min_input_s",
           "model_centre_padding", "model_min_input_s", "own_frames", "step_samples", "trained_clip_seconds"]

MODES = ("windowed", "native")
AGGREGATES = ("mean", "max")
MIN_INPUT_S = 2.5  # shorter inputs are centred in silence this long (native layout); chosen on validation


def default_min_input_s(layout: str, clip_seconds: float | None = None) -> float:
    """Seconds a shorter input is padded to by default: :data:`MIN_INPUT_S` in the native layout, but never more
    than ``clip_seconds``, the clip length the model was trained on when known (:func:`trained_clip_seconds`: a
    model trained on 1 s clips takes 1 s inputs as they are); 0 (never) in the fold layout, which resizes short
    inputs onto its grid instead."""
    if layout != "native":
        return 0.0
    return MIN_INPUT_S if clip_seconds is None else min(MIN_INPUT_S, float(clip_seconds))


def trained_clip_seconds(meta: dict | None) -> float | None:
    """The training clip length a checkpoint's provenance names (``data.clip_seconds`` of its training config,
    as ``audiomamba train`` and ``scripts/ship_pretrained.py`` record it), or None."""
    prov = (meta or {}).get("provenance")
    if not isinstance(prov, dict):
        return None
    for cfg in (prov.get("config"), (prov.get("training") or {}).get("config")):
        data = cfg.get("data") if isinstance(cfg, dict) else None
        value = data.get("clip_seconds") if isinstance(data, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def model_min_input_s(model: object) -> float:
    """:func:`default_min_input_s` of a model, from its ``layout`` and the training clip length its checkpoint
    metadata names (``model.meta``, :func:`trained_clip_seconds`); read as attributes, so any model will do."""
    return default_min_input_s(getattr(model, "layout", ""), trained_clip_seconds(getattr(model, "meta", None)))


def step_samples(model: object) -> int:
    """Samples per time step of ``model``'s head: its front end's hop times its ``step_frames`` (32 for models
    without finer steps)."""
    return model.frontend.cfg.hop_length * int(getattr(model, "step_frames", 32))


def model_centre_padding(model: object, samples: int, min_samples: int) -> tuple[int, int]:
    """:func:`centre_padding` on ``model``'s time-step grid (:func:`step_samples`): the padding the Tagger,
    ``audiomamba evaluate`` and an exported graph put around an input of ``samples`` samples."""
    return centre_padding(samples, min_samples, step_samples(model))


def own_frames(model: object, left: int, samples: int) -> slice:
    """The frames of an input of ``samples`` samples within the output of that input with ``left`` samples of
    silence before it (:func:`model_centre_padding`): where to cut the framewise output back."""
    first = left // model.frontend.cfg.hop_length
    return slice(first, first + model.frontend.num_frames(samples))


def centre_padding(samples: int, min_samples: int, align: int = 1) -> tuple[int, int]:
    """Zero samples to put before and after an input of ``samples`` samples so that it lasts ``min_samples``,
    with the input in the middle: ``(0, 0)`` when it is long enough.  The left padding is a multiple of ``align``
    (the model's step in samples), so the input's frames and steps keep their grid and the padded output can be
    cut back to the input's own frames exactly."""
    if align < 1:
        raise ValueError(f"align must be >= 1 sample, got {align}")
    if samples >= min_samples:
        return 0, 0
    total = min_samples - samples
    left = (total // 2) // align * align
    return left, total - left


class Piece(NamedTuple):
    """One piece of an input: frames ``start : start + length`` go through the model; frames
    ``keep_from : keep_to`` (input coordinates) are the ones it contributes in native mode (in windowed mode, all
    of them)."""

    start: int
    length: int
    keep_from: int
    keep_to: int


@dataclass(frozen=True)
class PiecePlan:
    """How to cut an input and combine the pieces' outputs; see the module documentation.

    ``mode``: "windowed" or "native"; ``length``: frames per window or chunk; ``hop``: frames between window
    starts (windowed); ``overlap``: context frames on each inner side of a chunk's kept centre (native);
    ``aggregate``: "mean" or "max" over windows (windowed; native chunks are always a frame-weighted mean).
    """

    mode: str
    length: int
    hop: int = 1
    overlap: int = 0
    aggregate: str = "mean"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'windowed' or 'native', got {self.mode!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be 'mean' or 'max', got {self.aggregate!r}")
        if self.length < 1:
            raise ValueError(f"a piece must be at least one frame long, got {self.length}")
        if self.mode == "windowed" and not 1 <= self.hop <= self.length:
            raise ValueError(f"need 1 <= hop <= window length, got hop {self.hop} for windows of {self.length} frames")
        if self.mode == "native" and not 0 <= 2 * self.overlap < self.length:
            raise ValueError(f"need 0 <= 2 * overlap < chunk length, got overlap {self.overlap}, chunks of {self.length}")

    @classmethod
    def windowed(cls, window: int, hop: int, aggregate: str = "mean") -> "PiecePlan":
        """Windows of ``window`` frames every ``hop`` frames, combined by ``aggregate``."""
        return cls("windowed", window, hop=hop, aggregate=aggregate)

    @classmethod
    def native(cls, chunk: int, overlap: int) -> "PiecePlan":
        """One pass up to ``chunk`` frames, beyond that chunks with ``overlap`` frames of context each side."""
        return cls("native", chunk, overlap=overlap)

    def pieces(self, frames: int) -> list[Piece]:
        """The pieces of an input of ``frames`` frames, in order.  All have the same length (so that they batch
        together) unless the input is one piece."""
        if frames < 1:
            raise ValueError(f"an input has at least one frame, got {frames}")
        n = self.length
        if frames <= n:
            return [Piece(0, frames, 0, frames)]
        if self.mode == "windowed":
            starts = list(range(0, frames - n, self.hop)) + [frames - n]
            return [Piece(s, n, s, s + n) for s in starts]
        step = n - 2 * self.overlap
        out = []
        for a in range(0, frames, step):
            b = min(a + step, frames)
            if frames - b < self.overlap:  # a tail too short to give this centre its right context: absorb it
                b = frames
            s = min(max(a - self.overlap, 0), frames - n)
            out.append(Piece(s, n, a, b))
            if b == frames:
                break
        return out

    def stitcher(self, frames: int) -> "Stitcher":
        """A :class:`Stitcher` for one input (or a batch of inputs) of ``frames`` frames."""
        return Stitcher(self, frames)


class Stitcher:
    """Combines the outputs of the pieces of one input (or of a batch of equally long inputs) into the input's.

    :meth:`add` each piece's outputs (in any order), then read :meth:`result`.  Sums and the framewise buffer
    take the dtype and device of the first piece's outputs; nothing is modified in place but the stitcher's own
    buffers, so the pieces' output tensors stay as they are.
    """

    def __init__(self, plan: PiecePlan, frames: int) -> None:
        self.plan, self.frames = plan, frames
        self._max = plan.mode == "windowed" and plan.aggregate == "max"
        self._logits: torch.Tensor | None = None
        self._embedding: torch.Tensor | None = None
        self._weight = 0.0
        self._framewise: torch.Tensor | None = None
        self._count: torch.Tensor | None = None  # windowed mean: windows covering each frame

    def add(self, piece: Piece, logits: torch.Tensor, embedding: torch.Tensor, framewise: torch.Tensor | None = None) -> None:
        """One piece's ``logits (..., C)``, ``embedding (..., D)`` and, to stitch framewise output, its
        ``framewise (..., piece.length, C)`` logits (give them for every piece or for none)."""
        native = self.plan.mode == "native"
        weight = float(piece.keep_to - piece.keep_from) if native else 1.0
        if native:
            logits, embedding = weight * logits, weight * embedding
        first = self._logits is None
        if first:
            self._logits, self._embedding = logits, embedding
        else:
            self._logits = torch.maximum(self._logits, logits) if self._max else self._logits + logits
            self._embedding = self._embedding + embedding
        self._weight += weight
        if framewise is None:
            return
        s, n = piece.start, piece.length
        if self._framewise is None:
            shape = (*framewise.shape[:-2], self.frames, framewise.shape[-1])
            self._framewise = framewise.new_full(shape, float("-inf")) if self._max else framewise.new_zeros(shape)
            if not native and not self._max:
                self._count = framewise.new_zeros(self.frames, 1)
        buf = self._framewise
        if native:
            buf[..., piece.keep_from : piece.keep_to, :] = framewise[..., piece.keep_from - s : piece.keep_to - s, :]
        elif self._max:
            buf[..., s : s + n, :] = torch.maximum(buf[..., s : s + n, :], framewise)
        else:
            buf[..., s : s + n, :] += framewise
            self._count[s : s + n] += 1

    def result(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(logits, framewise logits or None, embedding)`` of the whole input (framewise: None when the pieces
        gave none)."""
        if self._logits is None:
            raise ValueError("no piece was added")
        logits = self._logits if self._max else self._logits / self._weight
        framewise = self._framewise
        if self._count is not None:
            framewise = framewise / self._count.clamp(min=1)
        return logits, framewise, self._embedding / self._weight
