"""Tagging for users: a checkpoint in, clip-level tags, framewise probabilities and timestamped events out.

>>> from audiomamba import Tagger
>>> tagger = Tagger.from_checkpoint("audiomamba_tiny_as2m.safetensors")
>>> tagger.tag("street.wav").tags                      # [(label, score), ...] best first
>>> tagger.detect("street.wav", threshold=0.3).events   # [Event(label, onset, offset, score), ...]
>>> tagger.embed(waveform, sample_rate=44100)           # (D,) numpy
>>> for result in tagger.tag_files(paths, batch_size=8): ...

The path of one call: **preprocess** (:meth:`Tagger.prepare`: path, array or tensor -> checked mono waveform at
the model's rate) -> log-mel spectrogram (computed in blocks, so a long file never holds a full-resolution STFT)
-> **pieces** (:mod:`audiomamba.inference.pieces`; pieces of equal length from all the files of a call are
batched) -> **model** (backbone and head, eagerly or replayed from CUDA graphs) -> **postprocess** (pieces
stitched, scores through :func:`audiomamba.models.heads.logits_to_scores`, events).  Any length:

- ``mode="native"`` (any checkpoint; the default for ``layout="native"`` models): the whole spectrogram in one
  pass when it is at most ``chunk_s`` seconds long, otherwise chunks of ``chunk_s`` seconds that overlap by
  ``chunk_overlap_s`` on each side, each contributing its centre (seamless framewise output; clip logits are the
  frame-weighted mean of the chunks').  Cost is linear.  A fold-layout checkpoint runs in native layout here.
- ``mode="windowed"`` (the default for ``layout="fold"`` models, the HTS-AT/AST way): windows of ``window_s``
  seconds every ``hop_s`` seconds (the last flush with the end), combined by ``aggregate`` ("mean" or "max").
  With ``window_s=10.24, hop_s=5.12`` this is exactly what a fold-layout model does by itself on a long input.

Short inputs: in native mode on a native-layout model, an input shorter than ``min_input_s`` (default
:data:`~audiomamba.inference.pieces.MIN_INPUT_S`, 2.5 s) is centred in silence that long before the model sees it,
as its training clips had events among silence; framewise output and events stay on the input's own time line.

Scores are sigmoids for multi-label checkpoints and a softmax over classes for single-label ones
(``multi_label`` in the checkpoint).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from audiomamba.audio import (
    AudioDecodeError, array_to_mono, audio_duration, check_waveform, decode_audio, device_resampler_fits, load_audio,
    resample, resample_torch, resampled_length, to_mono,
)
from audiomamba.inference.events import detect_events, model_event_threshold
from audiomamba.inference.pieces import PiecePlan, model_centre_padding, model_min_input_s, own_frames
from audiomamba.inference.results import FileError, TagResult
from audiomamba.models.audiomamba import mean_over_shifts, native_image, steps_to_frames
from audiomamba.models.heads import logits_to_scores
from audiomamba.utils.cuda_graphs import GraphedInference, graph_rows
from audiomamba.utils.device import autocast, resolve_device, resolve_dtype
from audiomamba.utils.interrupt import ignore_interrupt
from audiomamba.utils.memory import keep_freed_memory

__all__ = ["Tagger", "TagResult", "FileError", "SILENCE_PEAK"]

SILENCE_PEAK = 1e-5  # peak amplitude below which audio counts as silent (-100 dBFS, the log-mel floor)
SPEC_BLOCK_FRAMES = 30000  # log-mel computed in blocks of 5 minutes (at 100 frames/s)
BATCH_FRAMES = 65536  # at most this many spectrogram frames per forward pass (bounds activation memory)
SORT_WINDOW_BATCHES = 8  # tag_files orders files by length within windows of this many batches ...
SORT_WINDOW_S = 3600.0  # ... or of this much audio, whichever comes first (bounds the results held back)


@dataclass
class _Raw:
    """One input's stitched model outputs, on the host."""

    logits: torch.Tensor  # (C,)
    embedding: torch.Tensor  # (D,)
    framewise: torch.Tensor | None  # (frames, C) logits


class Tagger:
    """Wraps an Audio Mamba model for inference on files, arrays and tensors of any length.

    Build it with :meth:`from_checkpoint` (or directly from a model, e.g. one from :func:`audiomamba.load`; the
    tagger puts it in eval mode and on ``device``, and never changes its layout).  ``mode``: "auto" (native for
    native-layout models, windowed for fold-layout ones), "native" or "windowed"; see the module documentation
    for ``window_s``, ``hop_s``, ``aggregate``, ``chunk_s`` and ``chunk_overlap_s``.  ``dtype``:
    ``torch.float32`` (default), or ``torch.bfloat16`` / ``torch.float16`` to run the backbone under autocast (the
    front end stays float32).  ``cuda_graph=True`` (CUDA devices only) replays the backbone and head from CUDA
    graphs, one per piece length, captured the second time a length comes (``self.cuda_graphs``, a
    :class:`~audiomamba.utils.cuda_graphs.GraphedInference`); a batch of m pieces is padded to the next power of
    8 (1, 8, 64, ...; at most ``batch_size``) so that batches share a few graphs per length without running many
    padding rows.  It removes the host's launch cost, which bounds the eager GPU speed.

    ``shifts`` > 1 averages the outputs of that many passes over each input, circularly shifted by multiples of
    ``shift_frames`` frames, each framewise output moved back into place: the head's steps (0.32 s in the
    native layout, unless the model has finer ones) then fall at several phases, which places events more finely
    for a coarse-step model (``docs/results.md``, "Shifted passes"), at ``shifts`` times the compute.

    ``min_input_s``: inputs shorter than this many seconds are centred in silence that long
    (:func:`~audiomamba.inference.pieces.centre_padding`); default (None): 2.5 s (at most ``chunk_s``, and at
    most the clip length its provenance says it was trained on) in native mode on a native-layout model,
    otherwise off (0): a fold-layout model resizes short inputs itself, and in
    windowed mode the window is the input length chosen.

    ``plan`` (a :class:`~audiomamba.inference.pieces.PiecePlan`) says how inputs are cut into pieces;
    ``layout`` is the layout the model runs in ("native" in native mode, the model's own in windowed mode).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        labels: Sequence[str] | None = None,
        multi_label: bool | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        mode: str = "auto",
        window_s: float = 10.24,
        hop_s: float = 5.12,
        aggregate: str = "mean",
        chunk_s: float = 300.0,
        chunk_overlap_s: float = 10.0,
        batch_size: int = 8,
        cuda_graph: bool = False,
        shifts: int = 1,
        shift_frames: int = 8,
        min_input_s: float | None = None,
    ) -> None:
        meta = getattr(model, "meta", None) or {}
        num_classes = int(getattr(model, "num_classes"))
        if labels is None:
            labels = [lab["display_name"] for lab in meta.get("labels", [])] or [f"class_{i}" for i in range(num_classes)]
        self.labels = [str(lab) for lab in labels]
        if len(self.labels) != num_classes:
            raise ValueError(f"{len(self.labels)} labels for a model with {num_classes} classes")
        self.multi_label = bool(meta.get("multi_label", True) if multi_label is None else multi_label)
        self.event_threshold = model_event_threshold(meta)
        self.device = resolve_device(device if device is not None else next(model.parameters()).device)
        self.model = model.to(self.device).eval()
        self.dtype = resolve_dtype(dtype)
        if mode == "auto":
            mode = "native" if model.layout == "native" else "windowed"
        if mode not in ("native", "windowed"):
            raise ValueError(f"mode must be 'auto', 'native' or 'windowed', got {mode!r}")
        if aggregate not in ("mean", "max"):
            raise ValueError(f"aggregate must be 'mean' or 'max', got {aggregate!r}")
        self.mode, self.aggregate = mode, aggregate
        self.layout = "native" if mode == "native" else model.layout
        self.frame_rate = model.sample_rate / model.frontend.cfg.hop_length
        self.window_frames = max(1, int(round(window_s * self.frame_rate)))
        self.hop_frames = max(1, int(round(hop_s * self.frame_rate)))
        self.chunk_frames = max(1, int(round(chunk_s * self.frame_rate)))
        self.overlap_frames = max(0, int(round(chunk_overlap_s * self.frame_rate)))
        if window_s <= 0 or hop_s <= 0 or hop_s > window_s:
            raise ValueError(f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}")
        if mode == "windowed" and self.layout == "fold" and self.window_frames > 1024:
            raise ValueError(f"window_s={window_s} is longer than a fold-layout model's 10.24 s input; use mode='native'")
        if mode == "native" and self.chunk_frames <= 2 * self.overlap_frames + 32:
            raise ValueError(f"chunk_s={chunk_s} must exceed twice chunk_overlap_s={chunk_overlap_s} by at least 0.32 s")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if shifts < 1 or shift_frames < 1:
            raise ValueError(f"shifts and shift_frames must be >= 1, got {shifts} and {shift_frames}")
        self.batch_size, self.shifts, self.shift_frames = batch_size, int(shifts), int(shift_frames)
        if min_input_s is None:  # native mode only: windows are the user's chosen input length
            min_input_s = min(model_min_input_s(model), chunk_s) if mode == "native" else 0.0
        if not 0 <= min_input_s <= (chunk_s if mode == "native" else window_s):
            raise ValueError(f"need 0 <= min_input_s <= {'chunk_s' if mode == 'native' else 'window_s'}, got "
                             f"min_input_s={min_input_s}")
        self.min_input_s = float(min_input_s)
        self.min_input_samples = int(round(self.min_input_s * model.sample_rate))
        self._step_frames = int(getattr(model, "step_frames", 32))
        # Native layout pads an input of t frames to a multiple of this many frames (its last frame repeated), so
        # inputs whose padded lengths agree can share a forward (:meth:`_infer_on_grid`); None: models without it.
        self._grid = getattr(model, "native_grid_frames", None) if self.layout == "native" else None
        if mode == "windowed":
            self.plan = PiecePlan.windowed(self.window_frames, self.hop_frames, aggregate)
        else:
            self.plan = PiecePlan.native(self.chunk_frames, self.overlap_frames)
        self.cuda_graphs = None
        if cuda_graph:
            if self.device.type != "cuda":
                raise ValueError(f"cuda_graph=True needs a CUDA device; this tagger runs on {self.device}")
            self.cuda_graphs = GraphedInference(self._forward, autocast_dtype=None if self.dtype == torch.float32 else self.dtype)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device | None = "cpu", dtype: torch.dtype | str | None = None, **kwargs: Any
    ) -> "Tagger":
        """Load an audiomamba ``.safetensors`` checkpoint (see :mod:`audiomamba.checkpoint`) into a tagger."""
        from audiomamba.checkpoint import load

        dev = resolve_device(device)
        return cls(load(path, device=dev), device=dev, dtype=dtype, **kwargs)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = "cpu",
        dtype: torch.dtype | str | None = None, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
        local_files_only: bool | None = None, **kwargs: Any,
    ) -> "Tagger":
        """A ready tagger: a tagger that ships with the package by name (default: the package's default tagger,
        :data:`audiomamba.models.pretrained.DEFAULT_TAGGER`), a model folder in the Hub's layout, a Hub repo id
        (``revision``, ``cache_dir``, ``local_files_only`` as in :func:`audiomamba.hub.from_pretrained`) or a
        single ``.safetensors`` checkpoint.  ``kwargs``: the tagger's options."""
        from audiomamba.hub import tagger_from_pretrained
        from audiomamba.models.pretrained import DEFAULT_TAGGER

        return tagger_from_pretrained(DEFAULT_TAGGER if name_or_path is None else name_or_path, revision=revision,
                                      cache_dir=cache_dir, local_files_only=local_files_only, device=device,
                                      dtype=dtype, **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def has_framewise(self) -> bool:
        return getattr(self.model, "head_type", "tscam") == "tscam"

    # ------------------------------------------------------------------ public API
    def tag(self, x: Any, sample_rate: int | None = None, top_k: int = 5) -> TagResult:
        """Clip-level scores of a path, numpy array or tensor (any length)."""
        wave, name, warnings = self.prepare(x, sample_rate)
        return self._result(self._checked(self._run([wave], framewise=False)[0], name), wave, name, warnings, top_k)

    def detect(
        self,
        x: Any,
        sample_rate: int | None = None,
        threshold: float | Sequence[float] | None = None,
        min_duration: float = 0.0,
        median_filter: float = 0.0,
        min_gap: float = 0.0,
        top_k: int = 5,
    ) -> TagResult:
        """Clip scores, framewise probabilities and merged events ``(label, onset_s, offset_s, score)``.

        ``threshold``: one or one per class (default: :attr:`event_threshold`, the model's own when its
        provenance names one, else 0.5); ``min_duration`` / ``min_gap``: seconds (shorter events are dropped,
        shorter gaps filled); ``median_filter``: window in seconds (0 = off).
        """
        self._require_framewise()
        wave, name, warnings = self.prepare(x, sample_rate)
        result = self._result(self._checked(self._run([wave], framewise=True)[0], name), wave, name, warnings, top_k)
        return self._add_events(result, threshold, min_duration, median_filter, min_gap)

    def embed(self, x: Any, sample_rate: int | None = None) -> np.ndarray:
        """The clip embedding (D,), averaged over pieces for long inputs."""
        wave, name, _ = self.prepare(x, sample_rate)
        return self._checked(self._run([wave], framewise=False)[0], name).embedding.float().cpu().numpy()

    def tag_files(
        self,
        paths: Iterable[str | os.PathLike],
        top_k: int = 5,
        events: bool = False,
        threshold: float | Sequence[float] | None = None,
        min_duration: float = 0.0,
        median_filter: float = 0.0,
        min_gap: float = 0.0,
        embeddings: bool = False,
        num_workers: int = 0,
        batch_size: int | None = None,
        resample_on_device: bool | None = None,
        prefetch: int = 2,
        sort_by_length: bool = True,
    ) -> Iterator[TagResult | FileError]:
        """Tag many files; yields, in input order, a :class:`TagResult` or a :class:`FileError` per file.

        ``sort_by_length`` (on a model whose native layout pads onto a grid, where files of different lengths can
        share a forward): files are decoded and batched in order of their length as their headers give it, within
        windows of :data:`SORT_WINDOW_BATCHES` batches or :data:`SORT_WINDOW_S` seconds of audio, so that a batch
        holds few lengths and needs few forward passes; the results are the same and still come in input order
        (those of a window that finish early wait for the earlier files).

        Files are decoded by a ``torch.utils.data.DataLoader`` (``num_workers`` processes, ``prefetch`` batches
        ahead each), ``batch_size`` files a batch.  Each worker stacks the files of one length and rate into one
        tensor (16-bit PCM stays 16-bit until it is on the device), so a batch crosses to the main process, to
        pinned memory (CUDA) and to the device as one block, without a copy per file; the files of a block are
        converted, downmixed, resampled, turned into log-mel spectrograms and cut into pieces together, their
        pieces run through the model ``batch_size`` at a time and are stitched together, and the outputs come back
        to the host in one copy per block, while the next batch is already on its way (no synchronisation per
        file).  ``resample_on_device`` (default: on for CUDA): files at another rate are resampled where the
        model runs (:func:`audiomamba.audio.resample_torch`, within about -100 dB of soxr on audio below 14 kHz)
        instead of with soxr in the workers; it changes scores by less than float tolerance matters.  A file whose
        model output is not finite (a broken checkpoint) is a :class:`FileError` of kind "model".
        """
        from torch.utils.data import DataLoader

        if events:
            self._require_framewise()
        cuda = self.device.type == "cuda"
        on_device = cuda if resample_on_device is None else bool(resample_on_device)
        dataset = _AudioFiles([str(p) for p in paths], self.sample_rate, self.model.frontend.min_samples, on_device)
        per_batch = batch_size or self.batch_size
        order = None
        if sort_by_length and self._grid_batching and len(dataset) > per_batch:
            order = _LengthOrder(dataset.paths, per_batch * SORT_WINDOW_BATCHES, SORT_WINDOW_S)
        loader = DataLoader(dataset, batch_size=per_batch, sampler=order, num_workers=num_workers,
                            collate_fn=_collate, pin_memory=cuda, worker_init_fn=ignore_interrupt,
                            prefetch_factor=max(1, prefetch) if num_workers > 0 else None)
        options = dict(top_k=top_k, events=events, threshold=threshold, min_duration=min_duration,
                       median_filter=median_filter, min_gap=min_gap, embeddings=embeddings)
        ready: dict[int, TagResult | FileError] = {}  # finished, waiting for an earlier file
        pending, next_i = None, 0
        for batch in itertools.chain(loader, [None]):
            launched = None if batch is None else self._launch(batch, framewise=events)  # queued; nothing waits
            if pending is not None:
                ready.update(self._finish(pending, dataset.paths, **options))
                while next_i in ready:
                    yield ready.pop(next_i)
                    next_i += 1
            pending = launched

    def detect_files(self, paths: Iterable[str | os.PathLike], **kwargs: Any) -> Iterator[TagResult | FileError]:
        """:meth:`tag_files` with events."""
        return self.tag_files(paths, events=True, **kwargs)

    def embed_files(self, paths: Iterable[str | os.PathLike], **kwargs: Any) -> Iterator[TagResult | FileError]:
        """:meth:`tag_files` keeping ``result.embedding``."""
        return self.tag_files(paths, embeddings=True, **kwargs)

    # ------------------------------------------------------------------ preprocess
    def prepare(self, x: Any, sample_rate: int | None = None, name: str | None = None) -> tuple[np.ndarray, str | None, list[str]]:
        """Path / array / tensor -> (mono float32 waveform at the model's rate, name, warnings).

        Raises ``FileNotFoundError``, :class:`~audiomamba.audio.AudioDecodeError`, ``TypeError`` or
        ``ValueError`` (:func:`~audiomamba.audio.check_waveform`) with a message naming the input.  Silent audio
        gets a warning; audio shorter than the front end's minimum is zero-padded, with a warning.
        """
        sr = self.sample_rate
        if isinstance(x, (str, os.PathLike)):
            name = str(x)
            if sample_rate is not None:
                raise ValueError(f"{name}: sample_rate is read from the file; do not pass it with a path")
            wave, _ = load_audio(x, sr)
        elif isinstance(x, (np.ndarray, torch.Tensor)):
            name = name or "waveform"
            if sample_rate is None:
                raise ValueError(
                    f"{name}: sample_rate is required with an array (the model expects {sr} Hz audio; pass "
                    f"sample_rate={sr} if it is already at that rate)"
                )
            wave = resample(array_to_mono(x, name), int(sample_rate), sr)
        else:
            raise TypeError(f"expected a path, a numpy array or a torch tensor, got {type(x).__name__}")
        check_waveform(wave, name)
        warnings: list[str] = []
        if float(np.abs(wave).max()) < SILENCE_PEAK:
            warnings.append(f"{name}: audio is silent (peak below -100 dBFS); its scores are not meaningful")
        min_samples = self.model.frontend.min_samples
        if wave.size < min_samples:
            warnings.append(f"{name}: {wave.size} samples, shorter than the {min_samples} the front end needs; zero-padded")
            wave = np.pad(wave, (0, min_samples - wave.size))
        return np.ascontiguousarray(wave, dtype=np.float32), name, warnings

    def spectrogram(self, wave: np.ndarray | torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """Normalised log-mel ``(frames, 64)`` of a mono waveform, as the model computes it, in blocks of 5
        minutes so that a long file never holds its whole STFT.  ``normalise=False``: the log-mel in dB, before
        the model's BatchNorm."""
        return self._spectrogram(torch.as_tensor(wave, dtype=torch.float32, device=self.device).reshape(1, -1), normalise)[0]

    def _spectrogram(self, waves: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """Waves ``(B, samples)`` on the device -> ``(B, frames, 64)``, float32 whatever the tagger's dtype."""
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            logmel = self.model.frontend(waves, block_frames=SPEC_BLOCK_FRAMES)
            return self.model.normalise(logmel) if normalise else logmel

    # ------------------------------------------------------------------ pieces -> model
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Spectrogram pieces ``(B, frames, mels)`` -> (logits, step logits ``(B, classes, steps)`` or None,
        embedding).  :meth:`_framewise` spreads the steps onto frames outside, so that inputs of different lengths
        on one grid (:meth:`_infer_on_grid`) can share a forward and a CUDA graph."""
        out = self.model.forward_head(*self.model.forward_features(x, self.layout), x.shape[1], self.layout)
        return out.logits, out.step_logits, out.embedding

    def _framewise(self, steps: torch.Tensor, frames: int) -> torch.Tensor:
        """Step logits of :meth:`_forward` -> framewise logits ``(B, frames, classes)``, as the model's
        :meth:`~audiomamba.models.AudioMamba.forward_head` spreads them."""
        return steps_to_frames(steps, frames, self.layout, self._step_frames)

    def _run(self, waves: list[np.ndarray], framewise: bool) -> list[_Raw]:
        """Waveforms at the model's rate -> stitched logits / embeddings / framewise logits on the host; waves of
        one length go through the model together (:meth:`_infer`), with one device-to-host copy per length."""
        raws: list[_Raw | None] = [None] * len(waves)
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            by_length.setdefault(w.size, []).append(i)
        groups = list(by_length.values())
        xs = [torch.from_numpy(np.stack([waves[i] for i in idx])).to(self.device) for idx in groups]
        for idx, (logits, fw, emb) in zip(groups, self._infer(xs, framewise)):
            logits, emb = logits.cpu(), emb.cpu()
            fw = None if fw is None else fw.cpu()
            for j, i in enumerate(idx):
                raws[i] = _Raw(logits[j], emb[j], None if fw is None else fw[j])
        return raws  # type: ignore[return-value]

    def _infer(self, groups: list[torch.Tensor], framewise: bool) -> list[tuple[torch.Tensor, torch.Tensor | None,
                                                                                 torch.Tensor]]:
        """Groups of waves ``(n_i, samples_i)`` at the model's rate, on the device -> for each group ``(logits
        (n_i, C), framewise logits (n_i, frames_i, C) or None, embeddings (n_i, D))``, float32 on the device; no
        host synchronisation.

        Inputs shorter than :attr:`min_input_s` are centred in silence that long
        (:func:`~audiomamba.inference.pieces.centre_padding`) and their framewise output cut back to their own
        frames.  Groups that are then equally long go through the model together, so a folder of short files
        of many lengths batches (and on CUDA shares one graph); so do groups whose padded spectrograms are as long
        (:meth:`_batch_key`, :meth:`_infer_on_grid`).  With :attr:`shifts` > 1, the average over the shifted
        passes (each framewise output rolled back)."""
        pads = [model_centre_padding(self.model, x.shape[1], self.min_input_samples) for x in groups]
        together: dict[tuple[str, int], list[int]] = {}
        for k, (x, (left, right)) in enumerate(zip(groups, pads)):
            together.setdefault(self._batch_key(x.shape[1] + left + right), []).append(k)
        out: list = [None] * len(groups)
        for members in together.values():
            xs = [F.pad(groups[k], pads[k]) if any(pads[k]) else groups[k] for k in members]
            if len({x.shape[1] for x in xs}) > 1:
                results = self._infer_on_grid(xs, framewise)
            else:
                logits, fw, emb = self._infer_unpadded(xs[0] if len(xs) == 1 else torch.cat(xs), framewise)
                bounds = np.cumsum([0] + [x.shape[0] for x in xs]).tolist()
                results = [(logits[a:b], None if fw is None else fw[a:b], emb[a:b]) for a, b in zip(bounds, bounds[1:])]
            for k, (logits, fw, emb) in zip(members, results):
                if fw is not None:
                    fw = fw[:, own_frames(self.model, pads[k][0], groups[k].shape[1])]
                out[k] = (logits, fw, emb)
        return out

    @property
    def _grid_batching(self) -> bool:
        """Whether inputs of different lengths can share a forward: one pass each (no shifts) on a model whose
        native layout pads onto a grid."""
        return bool(self._grid) and self.shifts == 1

    def _batch_key(self, samples: int) -> tuple[str, int]:
        """Inputs of one key go through the model together: those of one length; and, one pass each on a model
        whose native layout pads onto a grid (``native_grid_frames``), those whose padded spectrograms are
        equally long, which the model cannot tell apart from their own (:meth:`_infer_on_grid`)."""
        if self._grid_batching:
            frames = self.model.frontend.num_frames(samples)
            if frames <= SPEC_BLOCK_FRAMES and len(self.plan.pieces(frames)) == 1:
                return ("grid", -(-frames // self._grid) * self._grid)
        return ("samples", samples)

    def _infer_on_grid(self, xs: list[torch.Tensor], framewise: bool) -> list[tuple[torch.Tensor, torch.Tensor | None,
                                                                                       torch.Tensor]]:
        """Groups of waves ``(n_k, samples_k)`` of different lengths whose spectrograms the model pads to the same
        grid length, in one batch: each spectrogram is padded as the model pads it (its last frame repeated),
        so the backbone and the head see exactly what they see of each input alone; the framewise logits are
        spread from each input's own steps onto its own frames, as the model's head does.  Returns :meth:`_infer`'s
        triple per group, before any centring is undone."""
        specs = [self._spectrograms(x) for x in xs]
        frames = [s.shape[1] for s in specs]
        grid = -(-max(frames) // self._grid) * self._grid
        spec = torch.cat([native_image(s, grid)[:, 0].transpose(1, 2) for s in specs])
        total = spec.shape[0]
        per_batch = max(1, min(self.batch_size, BATCH_FRAMES // grid))
        parts = []
        with torch.inference_mode(), keep_freed_memory(self.device.type == "cpu"):
            for b0 in range(0, total, per_batch):
                m = min(per_batch, total - b0)
                logits, steps, emb = self._model_pass(spec[b0 : b0 + m], per_batch)
                parts.append((logits[:m].float(), steps[:m] if framewise and steps is not None else None,
                              emb[:m].float()))
        logits, emb = torch.cat([p[0] for p in parts]), torch.cat([p[2] for p in parts])
        steps = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        out, row = [], 0
        for x, t in zip(xs, frames):
            rows = slice(row, row + x.shape[0])
            row += x.shape[0]
            fw = None
            if steps is not None:  # the steps that reach into the input's own frames, spread onto those
                fw = self._framewise(steps[rows, :, : -(-t // self._step_frames)], t).float()
            out.append((logits[rows], fw, emb[rows]))
        return out

    def _infer_unpadded(self, waves: torch.Tensor, framewise: bool) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                              torch.Tensor]:
        """Waves ``(n, samples)`` of one length through the model as they are (one pass, or the mean over the
        shifted passes)."""
        if self.shifts == 1:
            return self._infer_once(waves, framewise)

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
            logits, fw, emb = self._infer_once(x, framewise)
            return logits, emb, fw

        logits, emb, fw = mean_over_shifts(run, waves, self.shifts, self.shift_frames,
                                           self.model.frontend.cfg.hop_length)
        return logits, fw, emb

    def _infer_once(self, waves: torch.Tensor, framewise: bool) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                         torch.Tensor]:
        """One pass of :meth:`_infer_unpadded`.  All ``n`` inputs have the same pieces: they are batched
        (``batch_size`` pieces per forward, padded to a full batch for CUDA graphs) and stitched together by one
        batched stitcher."""
        n, samples = waves.shape
        frames = self.model.frontend.num_frames(samples)
        spec = self._spectrograms(waves)
        pieces = self.plan.pieces(frames)
        length = pieces[0].length
        whole = len(pieces) == 1  # the spectrogram is the piece: no copy
        total = len(pieces) * n
        per_batch = max(1, min(self.batch_size, BATCH_FRAMES // length))
        stitcher = self.plan.stitcher(frames)
        pending: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = []
        rows, k = 0, 0  # rows of model output not yet stitched; next piece to stitch
        with torch.inference_mode(), keep_freed_memory(self.device.type == "cpu"):
            for b0 in range(0, total, per_batch):
                m = min(per_batch, total - b0)
                if whole:
                    x = spec[b0 : b0 + m]
                else:  # flat row r = piece r // n of input r % n
                    x = torch.stack([spec[r % n, pieces[r // n].start : pieces[r // n].start + length]
                                     for r in range(b0, b0 + m)])
                logits, steps, emb = self._model_pass(x, per_batch)
                fw = self._framewise(steps[:m], length).float() if framewise and steps is not None else None
                pending.append((logits[:m].float(), fw, emb[:m].float()))
                rows += m
                while rows >= n and k < len(pieces):  # every input's output of piece k is in: stitch it
                    lg, fws, em = (t[0] if len(pending) == 1 else (None if t[0] is None else torch.cat(t))
                                   for t in zip(*pending))
                    stitcher.add(pieces[k], lg[:n], em[:n], None if fws is None else fws[:n])
                    rows, k = rows - n, k + 1
                    pending = [(lg[n:], None if fws is None else fws[n:], em[n:])] if rows else []
        logits, fw, emb = stitcher.result()
        return logits, fw, emb

    def _spectrograms(self, waves: torch.Tensor) -> torch.Tensor:
        """Waves ``(n, samples)`` of one length -> their spectrograms ``(n, frames, 64)``, at most
        :data:`BATCH_FRAMES` frames at a time."""
        n, samples = waves.shape
        frames = self.model.frontend.num_frames(samples)
        per = 1 if frames > SPEC_BLOCK_FRAMES else max(1, BATCH_FRAMES // frames)
        specs = [self._spectrogram(waves[g0 : g0 + per]) for g0 in range(0, n, per)]
        return specs[0] if len(specs) == 1 else torch.cat(specs)

    def _model_pass(self, x: torch.Tensor, per_batch: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`_forward` of up to ``per_batch`` pieces ``(m, frames, 64)``, eagerly or replayed from a CUDA graph
        (the batch padded to :func:`graph_rows` rows, so that the batches of a length share at most a few graphs;
        the padding rows are left in the outputs)."""
        if self.cuda_graphs is not None:
            rows = graph_rows(x.shape[0], per_batch)
            return self.cuda_graphs(F.pad(x, (0, 0, 0, 0, 0, rows - x.shape[0])), variant=self.layout)
        with autocast(self.device, self.dtype):
            return self._forward(x)

    def _launch(self, batch: "_Batch", framewise: bool) -> "_Launched":
        """Queue a decoded batch's work on the device: copy (asynchronous from pinned memory), convert to float,
        downmix, resample, model, and an asynchronous copy of the outputs into pinned host memory."""
        with torch.inference_mode():
            return self._launch_groups(batch, framewise)

    def _launch_groups(self, batch: "_Batch", framewise: bool) -> "_Launched":
        cuda = self.device.type == "cuda"
        xs = []
        for g in batch.groups:
            x = g.wave.to(self.device, non_blocking=cuda)
            if x.dtype == torch.int16:  # 16-bit PCM: exactly soundfile's float32 decode, channels averaged
                x = x.float()
                x = (x.sum(-1) / x.shape[-1] if x.ndim == 3 else x) * (1.0 / 32768)
            if g.rate != self.sample_rate:
                x = resample_torch(x, g.rate, self.sample_rate)
            xs.append(x)
        outs = []
        for g, (logits, fw, emb) in zip(batch.groups, self._infer(xs, framewise)):
            packed = torch.cat([logits, emb], 1)
            fw = fw if framewise else None
            if cuda:
                host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
                host.copy_(packed, non_blocking=True)
                fw_host = None
                if fw is not None:
                    fw_host = torch.empty(fw.shape, dtype=fw.dtype, pin_memory=True)
                    fw_host.copy_(fw, non_blocking=True)
            else:
                host, fw_host = packed, fw
            outs.append((g, host, fw_host))
        event = None
        if cuda:  # on the tagger's device's stream, whichever device is current
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
        return _Launched(batch, outs, event)

    def _finish(self, launched: "_Launched", paths: list[str], top_k: int, events: bool, threshold, min_duration: float,
                median_filter: float, min_gap: float, embeddings: bool) -> dict[int, TagResult | FileError]:
        """Wait for a launched batch's outputs; its results (and errors) by file index."""
        if launched.event is not None:
            launched.event.synchronize()
        out: dict[int, TagResult | FileError] = dict(launched.batch.errors)
        C = len(self.labels)
        for g, host, fw_host in launched.outs:
            packed = host.numpy().copy()  # out of pinned memory: results must not hold the copy buffers
            finite = np.isfinite(packed).all(axis=1)
            scores = self.activation(torch.from_numpy(packed[:, :C])).numpy()
            fw_scores = None
            if fw_host is not None:
                finite &= torch.isfinite(fw_host).flatten(1).all(1).numpy()
                fw_scores = self.activation(fw_host).numpy()
            for j, i in enumerate(g.index):
                path = paths[i]
                if not finite[j]:
                    out[i] = FileError(path, _nonfinite_message(path), "model")
                    continue
                result = TagResult(self.labels, scores[j], g.duration[j], file=path, top_k=top_k,
                                   framewise=None if fw_scores is None else fw_scores[j].copy(),
                                   frame_rate=self.frame_rate, embedding=packed[j, C:] if embeddings else None,
                                   warnings=list(g.warnings[j]))
                if events:
                    result = self._add_events(result, threshold, min_duration, median_filter, min_gap)
                out[i] = result
        return out

    # ------------------------------------------------------------------ postprocess
    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid (multi-label) or softmax over the class axis (single-label)."""
        return logits_to_scores(logits, self.multi_label)

    def _result(self, raw: _Raw, wave: np.ndarray, name: str | None, warnings: list[str], top_k: int) -> TagResult:
        fw = None if raw.framewise is None else self.activation(raw.framewise).cpu().numpy()
        return TagResult(self.labels, self.activation(raw.logits).cpu().numpy(), wave.size / self.sample_rate, file=name,
                         top_k=top_k, framewise=fw, frame_rate=self.frame_rate,
                         embedding=raw.embedding.float().cpu().numpy(), warnings=list(warnings))

    def _checked(self, raw: _Raw, name: str | None) -> _Raw:
        """``raw``, or :class:`~audiomamba.errors.CheckpointError` (a ``ValueError``) naming the input if the
        model's output is not finite (a broken checkpoint: NaN or inf weights); a NaN is never a score."""
        if not (bool(torch.isfinite(raw.logits).all()) and bool(torch.isfinite(raw.embedding).all())
                and (raw.framewise is None or bool(torch.isfinite(raw.framewise).all()))):
            from audiomamba.errors import CheckpointError

            raise CheckpointError(_nonfinite_message(name or "input"))
        return raw

    def _add_events(self, result: TagResult, threshold, min_duration: float, median_filter: float, min_gap: float) -> TagResult:
        frames = 1 if not median_filter else max(1, int(round(median_filter * self.frame_rate)) | 1)
        threshold = self.event_threshold if threshold is None else threshold
        result.events, _ = detect_events(result.framewise, self.labels, self.frame_rate, threshold=threshold,
                                         median_filter_frames=frames, min_duration=min_duration, min_gap=min_gap,
                                         duration_s=result.duration_s)
        return result

    def _require_framewise(self) -> None:
        if not self.has_framewise:
            raise ValueError("this model has a linear head: it gives clip scores only, no framewise output or events")


def _nonfinite_message(name: str) -> str:
    return (f"{name}: the model's output is not finite (NaN or inf): the checkpoint's weights are broken "
            "(or the model overflowed in this dtype); no scores")


class _AudioFiles(torch.utils.data.Dataset):
    """Decodes file ``i`` for the tagger (in a DataLoader worker): returns ``(i, wave, rate, warnings, duration)``
    or ``(i, FileError)``.

    ``wave``: a tensor, 16-bit PCM kept as int16 ``(samples,)`` or ``(samples, channels)`` (averaged on the
    device), anything else float32 mono.  ``rate``: the model's rate, or the file's own when the tagger resamples
    on the device (``on_device``; files too short for the front end after resampling, and rate pairs without a
    compact filter, are resampled here with soxr).  The checks and warnings are :meth:`Tagger.prepare`'s."""

    def __init__(self, paths: list[str], sample_rate: int, min_samples: int, on_device: bool) -> None:
        self.paths, self.sample_rate, self.min_samples, self.on_device = paths, sample_rate, min_samples, on_device

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            return (i, *self._decode(path))
        except FileNotFoundError as e:
            return i, FileError(path, str(e), "not_found")
        except AudioDecodeError as e:
            return i, FileError(path, str(e), "decode")
        except (ValueError, TypeError) as e:
            return i, FileError(path, str(e), "invalid")

    def _decode(self, path: str):
        sr = self.sample_rate
        x, rate = decode_audio(path, dtype="pcm16")  # (samples, channels)
        if x.shape[0] == 0:
            raise ValueError(f"{path}: audio is empty (0 samples)")
        pcm = x.dtype == np.int16
        n_out = resampled_length(x.shape[0], rate, sr)
        device_rs = rate != sr and self.on_device and n_out >= self.min_samples and device_resampler_fits(rate, sr)
        if rate != sr and not device_rs:
            x = resample(to_mono(x.astype(np.float32) / 32768 if pcm else x), rate, sr)
            pcm, rate = False, sr
        elif not pcm:
            x = to_mono(x)
        elif x.shape[1] == 1:
            x = x[:, 0]
        if pcm:
            silent = _pcm16_silent(x)
        else:
            silent = float(np.abs(x).max()) < SILENCE_PEAK
        warnings: list[str] = []
        if silent:
            warnings.append(f"{path}: audio is silent (peak below -100 dBFS); its scores are not meaningful")
        if n_out < self.min_samples:  # never on the device-resampling path
            warnings.append(f"{path}: {n_out} samples, shorter than the {self.min_samples} the front end needs; zero-padded")
            x = np.pad(x, [(0, self.min_samples - n_out)] + [(0, 0)] * (x.ndim - 1))
            n_out = self.min_samples
        # a tensor, not the numpy array: from a worker process tensors travel through shared memory
        return torch.from_numpy(np.ascontiguousarray(x)), rate, warnings, n_out / sr


class _LengthOrder:
    """The order :meth:`Tagger.tag_files` decodes files in: by duration (from the headers, read lazily, one window
    at a time) within consecutive windows of at most ``files`` files and about ``seconds`` of audio; a file whose
    header cannot be read comes first in its window (its decoding reports the error)."""

    def __init__(self, paths: list[str], files: int, seconds: float) -> None:
        self.paths, self.files, self.seconds = paths, files, seconds

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[int]:
        window: list[tuple[float, int]] = []
        total = 0.0
        for i, path in enumerate(self.paths):
            try:
                seconds = audio_duration(path)
            except (AudioDecodeError, OSError, ValueError):
                seconds = -1.0
            window.append((seconds, i))
            total += max(seconds, 0.0)
            if len(window) == self.files or total >= self.seconds:
                yield from (i for _, i in sorted(window))
                window, total = [], 0.0
        yield from (i for _, i in sorted(window))


def _pcm16_silent(x: np.ndarray) -> bool:
    """Whether 16-bit PCM ``(samples,)`` or ``(samples, channels)`` is silent as :meth:`Tagger.prepare` judges
    it (the peak of the channels' float mean below ``SILENCE_PEAK``), without converting the whole file."""
    if not x.any():
        return True
    if x.ndim == 1:
        return False  # one nonzero sample is 1/32768 > SILENCE_PEAK
    limit = SILENCE_PEAK * 32768 * x.shape[1]
    for part in (x[:4096], x):  # a nonzero channel sum near the start settles it cheaply
        total = part[:, 0].astype(np.int32)
        for c in range(1, x.shape[1]):
            total += part[:, c]
        if np.abs(total).max() >= limit:
            return False
    return True


@dataclass
class _Group:
    """Decoded files of one shape, dtype and rate, stacked into one tensor."""

    index: list[int]
    wave: torch.Tensor  # (files, samples) or (files, samples, channels)
    rate: int
    warnings: list[list[str]]
    duration: list[float]


class _Batch:
    """What a DataLoader worker hands over: the batch's files in :class:`_Group` blocks, and its errors."""

    def __init__(self, groups: list[_Group], errors: list[tuple[int, FileError]]) -> None:
        self.groups, self.errors = groups, errors

    def pin_memory(self, device=None) -> "_Batch":  # the DataLoader's pin-memory thread calls this
        for g in self.groups:
            g.wave = g.wave.pin_memory()
        return self


@dataclass
class _Launched:
    batch: _Batch
    outs: list
    event: Any


def _collate(items: list) -> _Batch:
    """Stack the files of a batch that share shape, dtype and rate (in a worker: straight into shared memory, so
    the block crosses to the main process as one tensor)."""
    errors = [(it[0], it[1]) for it in items if isinstance(it[1], FileError)]
    keyed: dict[tuple, list] = {}
    for it in items:
        if not isinstance(it[1], FileError):
            keyed.setdefault((tuple(it[1].shape), it[1].dtype, it[2]), []).append(it)
    groups = []
    in_worker = torch.utils.data.get_worker_info() is not None
    for (shape, dtype, rate), its in keyed.items():
        waves = [it[1] for it in its]
        if in_worker:  # as default_collate does: the stacked block is allocated in shared memory
            storage = waves[0]._typed_storage()._new_shared(len(waves) * waves[0].numel(), device=waves[0].device)
            out = torch.stack(waves, out=waves[0].new(storage).resize_(len(waves), *shape))
        else:
            out = torch.stack(waves)
        groups.append(_Group([it[0] for it in its], out, rate, [it[3] for it in its], [it[4] for it in its]))
    return _Batch(groups, errors)
