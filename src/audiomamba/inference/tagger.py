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

Scores are sigmoids for multi-label checkpoints and a softmax over classes for single-label ones
(``multi_label`` in the checkpoint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from audiomamba.audio import AudioDecodeError, array_to_mono, check_waveform, load_audio, resample
from audiomamba.inference.events import detect_events
from audiomamba.inference.pieces import Piece, PiecePlan
from audiomamba.inference.results import FileError, TagResult
from audiomamba.models.heads import logits_to_scores
from audiomamba.utils.device import autocast, resolve_device, resolve_dtype
from audiomamba.utils.memory import keep_freed_memory

__all__ = ["Tagger", "TagResult", "FileError", "SILENCE_PEAK"]

SILENCE_PEAK = 1e-5  # peak amplitude below which audio counts as silent (-100 dBFS, the log-mel floor)
SPEC_BLOCK_FRAMES = 30000  # log-mel computed in blocks of 5 minutes (at 100 frames/s)
BATCH_FRAMES = 65536  # at most this many spectrogram frames per forward pass (bounds activation memory)


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
    :class:`~audiomamba.utils.cuda_graphs.GraphedInference`); batches are padded to ``batch_size`` pieces so they
    share a graph.  It removes the host's launch cost, which bounds the eager GPU speed.

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
    ) -> None:
        meta = getattr(model, "meta", None) or {}
        num_classes = int(getattr(model, "num_classes"))
        if labels is None:
            labels = [lab["display_name"] for lab in meta.get("labels", [])] or [f"class_{i}" for i in range(num_classes)]
        self.labels = [str(lab) for lab in labels]
        if len(self.labels) != num_classes:
            raise ValueError(f"{len(self.labels)} labels for a model with {num_classes} classes")
        self.multi_label = bool(meta.get("multi_label", True) if multi_label is None else multi_label)
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
        self.batch_size = batch_size
        if mode == "windowed":
            self.plan = PiecePlan.windowed(self.window_frames, self.hop_frames, aggregate)
        else:
            self.plan = PiecePlan.native(self.chunk_frames, self.overlap_frames)
        self.cuda_graphs = None
        if cuda_graph:
            if self.device.type != "cuda":
                raise ValueError(f"cuda_graph=True needs a CUDA device; this tagger runs on {self.device}")
            from audiomamba.utils.cuda_graphs import GraphedInference

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
        return self._result(self._run([wave], framewise=False)[0], wave, name, warnings, top_k)

    def detect(
        self,
        x: Any,
        sample_rate: int | None = None,
        threshold: float | Sequence[float] = 0.5,
        min_duration: float = 0.0,
        median_filter: float = 0.0,
        min_gap: float = 0.0,
        top_k: int = 5,
    ) -> TagResult:
        """Clip scores, framewise probabilities and merged events ``(label, onset_s, offset_s, score)``.

        ``threshold``: one or one per class; ``min_duration`` / ``min_gap``: seconds (shorter events are
        dropped, shorter gaps filled); ``median_filter``: window in seconds (0 = off).
        """
        self._require_framewise()
        wave, name, warnings = self.prepare(x, sample_rate)
        result = self._result(self._run([wave], framewise=True)[0], wave, name, warnings, top_k)
        return self._add_events(result, threshold, min_duration, median_filter, min_gap)

    def embed(self, x: Any, sample_rate: int | None = None) -> np.ndarray:
        """The clip embedding (D,), averaged over pieces for long inputs."""
        wave, _, _ = self.prepare(x, sample_rate)
        return self._run([wave], framewise=False)[0].embedding.float().cpu().numpy()

    def tag_files(
        self,
        paths: Iterable[str | os.PathLike],
        top_k: int = 5,
        events: bool = False,
        threshold: float | Sequence[float] = 0.5,
        min_duration: float = 0.0,
        median_filter: float = 0.0,
        min_gap: float = 0.0,
        embeddings: bool = False,
        num_workers: int = 0,
        batch_size: int | None = None,
    ) -> Iterator[TagResult | FileError]:
        """Tag many files; yields, in input order, a :class:`TagResult` or a :class:`FileError` per file.

        Files are decoded and resampled by a ``torch.utils.data.DataLoader`` (``num_workers`` processes);
        ``batch_size`` files are decoded together and their pieces (windows/chunks of equal length) go
        through the model ``batch_size`` at a time.
        """
        from torch.utils.data import DataLoader

        if events:
            self._require_framewise()
        dataset = _AudioFiles([str(p) for p in paths], self)
        loader = DataLoader(dataset, batch_size=batch_size or self.batch_size, num_workers=num_workers, collate_fn=list)
        for batch in loader:
            ok = [(idx, w.numpy(), warn) for idx, w, warn in batch if not isinstance(w, FileError)]
            raws = self._run([w for _, w, _ in ok], framewise=events) if ok else []
            by_index = {idx: (raw, w, warn) for (idx, w, warn), raw in zip(ok, raws)}
            for idx, payload, _ in batch:
                if isinstance(payload, FileError):
                    yield payload
                    continue
                raw, wave, warnings = by_index[idx]
                result = self._result(raw, wave, dataset.paths[idx], warnings, top_k)
                if not embeddings:
                    result.embedding = None
                if events:
                    result = self._add_events(result, threshold, min_duration, median_filter, min_gap)
                yield result

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

    def _spectrograms(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """:meth:`spectrogram` of each wave; waves of one length (the usual case: clips of a dataset) go through
        the front end together, at most ``BATCH_FRAMES`` frames at a time, with one host-to-device copy (pageable:
        pinning a fresh buffer per batch costs more than the copy); a wave longer than a block goes alone."""
        specs: list[torch.Tensor | None] = [None] * len(waves)
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            by_length.setdefault(w.size, []).append(i)
        for samples, idx in by_length.items():
            frames = self.model.frontend.num_frames(samples)
            per = 1 if frames > SPEC_BLOCK_FRAMES else max(1, BATCH_FRAMES // frames)
            for g0 in range(0, len(idx), per):
                group = idx[g0 : g0 + per]
                out = self._spectrogram(torch.from_numpy(np.stack([waves[i] for i in group])).to(self.device))
                for j, i in enumerate(group):
                    specs[i] = out[j]
        return specs  # type: ignore[return-value]

    # ------------------------------------------------------------------ pieces -> model
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Spectrogram pieces ``(B, frames, mels)`` -> (logits, framewise logits or None, embedding)."""
        out = self.model.forward_head(*self.model.forward_features(x, self.layout), x.shape[1], self.layout)
        return out.logits, out.framewise_logits, out.embedding

    def _run(self, waves: list[np.ndarray], framewise: bool) -> list[_Raw]:
        """Waveforms -> stitched logits / embeddings / framewise logits, the pieces of all waves batched by length."""
        specs = self._spectrograms(waves)
        jobs: dict[int, list[tuple[int, Piece]]] = {}  # piece length -> [(wave, piece)]
        for i, spec in enumerate(specs):
            for piece in self.plan.pieces(spec.shape[0]):
                jobs.setdefault(piece.length, []).append((i, piece))
        stitchers = [self.plan.stitcher(spec.shape[0]) for spec in specs]
        with torch.inference_mode(), keep_freed_memory(self.device.type == "cpu"):
            for length, items in jobs.items():
                per_batch = max(1, min(self.batch_size, BATCH_FRAMES // length))
                for b0 in range(0, len(items), per_batch):
                    group = items[b0 : b0 + per_batch]
                    x = torch.stack([specs[i][p.start : p.start + p.length] for i, p in group])
                    if self.cuda_graphs is not None:  # padded to a full batch: every batch of a length shares a graph
                        x = F.pad(x, (0, 0, 0, 0, 0, per_batch - len(group)))
                        logits, fw, emb = self.cuda_graphs(x, variant=self.layout)
                    else:
                        with autocast(self.device, self.dtype):
                            logits, fw, emb = self._forward(x)
                    keep_fw = framewise and fw is not None
                    for j, (i, p) in enumerate(group):
                        stitchers[i].add(p, logits[j].float(), emb[j].float(), fw[j].float() if keep_fw else None)
        outs = [st.result() for st in stitchers]
        # one device-to-host copy per kind for the whole batch, not one (and a sync) per file and kind
        logits, embs = torch.stack([o[0] for o in outs]).cpu(), torch.stack([o[2] for o in outs]).cpu()
        if any(o[1] is None for o in outs):
            return [_Raw(lg, e, None) for lg, e in zip(logits, embs)]
        fws = torch.cat([o[1] for o in outs]).cpu().split([o[1].shape[0] for o in outs])
        return [_Raw(lg, e, fw) for lg, e, fw in zip(logits, embs, fws)]

    # ------------------------------------------------------------------ postprocess
    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid (multi-label) or softmax over the class axis (single-label)."""
        return logits_to_scores(logits, self.multi_label)

    def _result(self, raw: _Raw, wave: np.ndarray, name: str | None, warnings: list[str], top_k: int) -> TagResult:
        fw = None if raw.framewise is None else self.activation(raw.framewise).cpu().numpy()
        return TagResult(self.labels, self.activation(raw.logits).cpu().numpy(), wave.size / self.sample_rate, file=name,
                         top_k=top_k, framewise=fw, frame_rate=self.frame_rate,
                         embedding=raw.embedding.float().cpu().numpy(), warnings=list(warnings))

    def _add_events(self, result: TagResult, threshold, min_duration: float, median_filter: float, min_gap: float) -> TagResult:
        frames = 1 if not median_filter else max(1, int(round(median_filter * self.frame_rate)) | 1)
        result.events, _ = detect_events(result.framewise, self.labels, self.frame_rate, threshold=threshold,
                                         median_filter_frames=frames, min_duration=min_duration, min_gap=min_gap,
                                         duration_s=result.duration_s)
        return result

    def _require_framewise(self) -> None:
        if not self.has_framewise:
            raise ValueError("this model has a linear head: it gives clip scores only, no framewise output or events")


class _AudioFiles(torch.utils.data.Dataset):
    """Decodes file ``i`` to the tagger's rate; returns ``(i, wave tensor, warnings)`` or ``(i, FileError, [])``."""

    def __init__(self, paths: list[str], tagger: Tagger) -> None:
        self.paths = paths
        self._prepare = tagger.prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            wave, _, warnings = self._prepare(Path(path))
            # a tensor, not the numpy array: from a worker process the DataLoader passes tensors through shared
            # memory, while it pickles arrays through a pipe, which is slower (figures in docs/tagging.md)
            return i, torch.from_numpy(wave), warnings
        except FileNotFoundError as e:
            return i, FileError(path, str(e), "not_found"), []
        except AudioDecodeError as e:
            return i, FileError(path, str(e), "decode"), []
        except (ValueError, TypeError) as e:
            return i, FileError(path, str(e), "invalid"), []
