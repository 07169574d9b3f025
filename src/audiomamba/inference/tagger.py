"""Tagging for users: a checkpoint in, clip-level tags, framewise probabilities and timestamped events out.

>>> from audiomamba import Tagger
>>> tagger = Tagger.from_checkpoint("audiomamba_tiny_as2m.safetensors")
>>> tagger.tag("street.wav").tags                      # [(label, score), ...] best first
>>> tagger.detect("street.wav", threshold=0.3).events   # [Event(label, onset, offset, score), ...]
>>> tagger.embed(waveform, sample_rate=44100)           # (D,) numpy
>>> for result in tagger.tag_files(paths, batch_size=8): ...

Any length.  The waveform is turned into one log-mel spectrogram (computed in blocks, so a long file never
holds a full-resolution STFT in memory), which is then cut into *pieces* that go through the backbone and head:

- ``mode="native"`` (any checkpoint; the default for ``layout="native"`` models): the whole spectrogram in one
  pass when it is at most ``chunk_s`` seconds long, otherwise chunks of ``chunk_s`` seconds that overlap by
  ``chunk_overlap_s`` on each side; each chunk contributes only its centre, so the framewise output is
  stitched without seams and clip logits are the frame-weighted mean of the chunks'.  Cost is linear.
- ``mode="windowed"`` (the default for ``layout="fold"`` models, the HTS-AT/AST way): windows of ``window_s``
  seconds every ``hop_s`` seconds (the last flush with the end); clip logits are the ``aggregate`` ("mean"
  or "max") of the windows', framewise logits the mean (or max) over the windows covering each frame.  A
  file shorter than a window is one window.  With ``window_s=10.24, hop_s=5.12`` this is exactly what a
  fold-layout model does by itself on a long input.

Scores are sigmoids for multi-label checkpoints and a softmax over classes for single-label ones
(``multi_label`` in the checkpoint).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from audiomamba.audio import AudioDecodeError, load_audio, resample, to_mono
from audiomamba.inference.events import Event, detect_events
from audiomamba.models.audiomamba import AudioMambaOutput
from audiomamba.models.heads import logits_to_scores
from audiomamba.utils.device import autocast, resolve_device, resolve_dtype
from audiomamba.utils.memory import keep_freed_memory

__all__ = ["Tagger", "TagResult", "FileError", "SILENCE_PEAK"]

SILENCE_PEAK = 1e-5  # peak amplitude below which audio counts as silent (-100 dBFS, the log-mel floor)
_SPEC_BLOCK_FRAMES = 30000  # log-mel computed in blocks of 5 minutes (at 100 frames/s)
_BATCH_FRAMES = 65536  # at most this many spectrogram frames per forward pass (bounds activation memory)
@dataclass
class TagResult:
    """What :meth:`Tagger.tag` / :meth:`Tagger.detect` return for one input.

    ``scores``: (classes,) clip scores; ``framewise``: (frames, classes) probabilities at ``frame_rate``
    frames/s (``detect`` only); ``events``: merged events (``detect`` only); ``warnings``: e.g. silent input.
    """

    labels: list[str]
    scores: np.ndarray
    duration_s: float
    file: str | None = None
    top_k: int = 5
    framewise: np.ndarray | None = None
    frame_rate: float = 100.0
    events: list[Event] = field(default_factory=list)
    embedding: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def top(self, k: int | None = None, threshold: float | None = None) -> list[tuple[str, float]]:
        """The ``k`` best (label, score) pairs, best first, keeping only scores >= ``threshold`` if given."""
        k = self.top_k if k is None else k
        order = np.argsort(-self.scores, kind="stable")[: max(0, k)]
        return [(self.labels[i], float(self.scores[i])) for i in order if threshold is None or self.scores[i] >= threshold]

    @property
    def tags(self) -> list[tuple[str, float]]:
        return self.top()

    @property
    def frame_times(self) -> np.ndarray:
        """Centre time (s) of each framewise row."""
        n = 0 if self.framewise is None else self.framewise.shape[0]
        return np.arange(n) / self.frame_rate

    def to_dict(self, top_k: int | None = None, threshold: float | None = None) -> dict[str, Any]:
        """The CLI's JSON object: ``{"file", "duration_s", "tags": [{"label", "score"}], "events": [...]}``."""
        return {
            "file": self.file,
            "duration_s": round(float(self.duration_s), 3),
            "tags": [{"label": lab, "score": round(s, 4)} for lab, s in self.top(top_k, threshold)],
            "events": [e.to_dict() for e in self.events],
        }


@dataclass
class FileError:
    """A file that could not be tagged (yielded by :meth:`Tagger.tag_files` in its place)."""

    file: str
    message: str
    kind: str = "error"  # "not_found", "decode", "invalid"

    def __str__(self) -> str:
        return self.message


@dataclass
class _Raw:
    logits: torch.Tensor  # (C,)
    embedding: torch.Tensor  # (D,)
    framewise: torch.Tensor | None  # (frames, C) logits


class Tagger:
    """Wraps an Audio Mamba model for inference on files, arrays and tensors of any length.

    Build it with :meth:`from_checkpoint` (or directly from a model, e.g. one from
    :func:`audiomamba.load`).  ``mode``: "auto" (native for native-layout models, windowed for fold-layout
    ones), "native" or "windowed"; see the module documentation for ``window_s``, ``hop_s``, ``aggregate``,
    ``chunk_s`` and ``chunk_overlap_s``.  ``dtype``: ``torch.float32`` (default), or ``torch.bfloat16`` /
    ``torch.float16`` to run the backbone under autocast (the front end stays float32).  ``cuda_graph=True``
    (CUDA devices only) replays the backbone and head from CUDA graphs, one per piece length, captured the
    second time a length comes (:mod:`audiomamba.utils.cuda_graphs`); batches are padded to ``batch_size``
    pieces so they share a graph.  It removes the host's launch cost, which bounds the eager GPU speed.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        labels: Sequence[str] | None = None,
        multi_label: bool | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        mode: str = "auto",
        window_s: float = 10.0,
        hop_s: float = 5.0,
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
        labels = [str(lab) for lab in labels]
        if len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for a model with {num_classes} classes")
        self.labels = labels
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
        self.frame_rate = model.sample_rate / model.frontend.cfg.hop_length
        self.window_frames = max(1, int(round(window_s * self.frame_rate)))
        self.hop_frames = max(1, int(round(hop_s * self.frame_rate)))
        self.chunk_frames = max(1, int(round(chunk_s * self.frame_rate)))
        self.overlap_frames = max(0, int(round(chunk_overlap_s * self.frame_rate)))
        if window_s <= 0 or hop_s <= 0 or hop_s > window_s:
            raise ValueError(f"need 0 < hop_s <= window_s, got window_s={window_s}, hop_s={hop_s}")
        if mode == "windowed" and model.layout == "fold" and self.window_frames > 1024:
            raise ValueError(f"window_s={window_s} is longer than a fold-layout model's 10.24 s input; use mode='native'")
        if mode == "native" and self.chunk_frames <= 2 * self.overlap_frames + 32:
            raise ValueError(f"chunk_s={chunk_s} must exceed twice chunk_overlap_s={chunk_overlap_s} by at least 0.32 s")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._graphed = None
        if cuda_graph:
            if self.device.type != "cuda":
                raise ValueError(f"cuda_graph=True needs a CUDA device; this tagger runs on {self.device}")
            from audiomamba.utils.cuda_graphs import GraphedInference

            autocast = None if self.dtype == torch.float32 else self.dtype
            self._graphed = GraphedInference(self._forward, autocast_dtype=autocast)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device | None = "cpu", dtype: torch.dtype | str | None = None, **kwargs: Any
    ) -> "Tagger":
        """Load an audiomamba ``.safetensors`` checkpoint (see :mod:`audiomamba.checkpoint`) into a tagger."""
        from audiomamba.checkpoint import load

        dev = resolve_device(device)
        return cls(load(path, device=dev), device=dev, dtype=dtype, **kwargs)

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
        raw = self._run([wave], framewise=False)[0]
        return self._result(raw, wave, name, warnings, top_k)

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
        raw = self._run([wave], framewise=True)[0]
        result = self._result(raw, wave, name, warnings, top_k)
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
        bs = batch_size or self.batch_size
        dataset = _AudioFiles([str(p) for p in paths], self)
        loader = DataLoader(dataset, batch_size=bs, num_workers=num_workers, collate_fn=list)
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

    # ------------------------------------------------------------------ inputs
    def prepare(self, x: Any, sample_rate: int | None = None, name: str | None = None) -> tuple[np.ndarray, str | None, list[str]]:
        """Path / array / tensor -> (mono float32 waveform at the model's rate, name, warnings).

        Raises ``FileNotFoundError``, :class:`~audiomamba.audio.AudioDecodeError`, ``TypeError`` or
        ``ValueError`` with a message naming the input.
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
            wave = _array_to_mono(x, name)
            if int(sample_rate) != sr:
                wave = resample(wave, int(sample_rate), sr)
        else:
            raise TypeError(f"expected a path, a numpy array or a torch tensor, got {type(x).__name__}")
        warnings: list[str] = []
        if wave.size == 0:
            raise ValueError(f"{name}: audio is empty (0 samples)")
        if not np.all(np.isfinite(wave)):
            raise ValueError(f"{name}: audio contains NaN or infinite samples")
        if float(np.abs(wave).max()) < SILENCE_PEAK:
            warnings.append(f"{name}: audio is silent (peak below -100 dBFS); its scores are not meaningful")
        min_samples = self.model.frontend.min_samples
        if wave.size < min_samples:
            warnings.append(f"{name}: {wave.size} samples, shorter than the {min_samples} the front end needs; zero-padded")
            wave = np.pad(wave, (0, min_samples - wave.size))
        return np.ascontiguousarray(wave, dtype=np.float32), name, warnings

    # ------------------------------------------------------------------ inference
    def spectrogram(self, wave: np.ndarray | torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """Normalised log-mel ``(frames, 64)`` of a mono waveform, as ``model.spectrogram`` computes it, but in
        blocks of 5 minutes so that a long file never holds its whole STFT.  ``normalise=False``: the log-mel
        in dB, before the model's BatchNorm."""
        w = torch.as_tensor(wave, dtype=torch.float32, device=self.device).reshape(1, -1)
        fe = self.model.frontend
        cfg = fe.cfg
        frames = fe.num_frames(w.shape[1])
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            if frames <= _SPEC_BLOCK_FRAMES:
                return self.model.spectrogram(w)[0] if normalise else fe(w)[0]
            padded = F.pad(w.unsqueeze(0), (cfg.n_fft // 2, cfg.n_fft // 2), mode="reflect")[0]
            blocks = []
            for f0 in range(0, frames, _SPEC_BLOCK_FRAMES):
                f1 = min(frames, f0 + _SPEC_BLOCK_FRAMES)
                seg = padded[:, f0 * cfg.hop_length : (f1 - 1) * cfg.hop_length + cfg.n_fft]
                spec = torch.stft(seg, cfg.n_fft, cfg.hop_length, window=fe.window, center=False, return_complex=True)
                power = spec.real.square() + spec.imag.square()
                blocks.append(10.0 * torch.log10(torch.matmul(power.transpose(1, 2), fe.mel_fb).clamp(min=1e-10)))
            x = torch.cat(blocks, dim=1)
            if not normalise:
                return x[0]
            x = self.model.bn0(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
            return x[0]

    def _pieces(self, frames: int) -> list[tuple[int, int, int, int]]:
        """(start, length, keep_from, keep_to) in frames; keep_* only matter in native mode."""
        if self.mode == "windowed":
            w, h = self.window_frames, self.hop_frames
            if frames <= w:
                return [(0, frames, 0, frames)]
            starts = list(range(0, frames - w, h)) + [frames - w]
            return [(s, w, s, s + w) for s in starts]
        if frames <= self.chunk_frames:
            return [(0, frames, 0, frames)]
        step = self.chunk_frames - 2 * self.overlap_frames
        out = []
        for a in range(0, frames, step):
            b = min(a + step, frames)
            if frames - b < self.overlap_frames:  # a tail too short to give this core its right context: absorb it
                b = frames
            s = min(max(a - self.overlap_frames, 0), frames - self.chunk_frames)
            out.append((s, self.chunk_frames, a, b))
            if b == frames:
                break
        return out

    @contextlib.contextmanager
    def _layout(self):
        """Run the model in native layout for mode='native' (same weights), restoring it afterwards."""
        old = self.model.layout
        if self.mode == "native":
            self.model.layout = "native"
        try:
            yield
        finally:
            self.model.layout = old

    def _autocast(self):
        return autocast(self.device, self.dtype)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Spectrogram pieces ``(B, frames, mels)`` -> (logits, framewise logits or None, embedding)."""
        out = self.model.forward_head(*self.model.forward_features(x), x.shape[1])
        return out.logits, out.framewise_logits, out.embedding

    def _run(self, waves: list[np.ndarray], framewise: bool) -> list[_Raw]:
        """Waveforms -> raw aggregated logits / embeddings / framewise logits, pieces batched by length."""
        specs = self._spectrograms(waves)
        jobs: dict[int, list[tuple[int, int, int, int, int]]] = {}  # piece length -> [(file, start, len, keep_a, keep_b)]
        for i, spec in enumerate(specs):
            for piece in self._pieces(spec.shape[0]):
                jobs.setdefault(piece[1], []).append((i, *piece))
        C, D = self.model.num_classes, self.model.num_features
        acc = []
        for spec in specs:
            frames = spec.shape[0]
            fw = None
            if framewise and self.has_framewise:
                init = -math.inf if (self.mode == "windowed" and self.aggregate == "max") else 0.0
                fw = torch.full((frames, C), init, dtype=torch.float32, device=self.device)
            acc.append(
                {
                    "logits": torch.full((C,), -math.inf if self.aggregate == "max" and self.mode == "windowed" else 0.0, device=self.device),
                    "emb": torch.zeros(D, device=self.device),
                    "w": 0.0,
                    "fw": fw,
                    "count": torch.zeros(frames, 1, device=self.device) if fw is not None else None,
                }
            )
        with torch.inference_mode(), self._layout(), keep_freed_memory(self.device.type == "cpu"):
            for length, items in jobs.items():
                per_batch = max(1, min(self.batch_size, _BATCH_FRAMES // max(length, 1)))
                for b0 in range(0, len(items), per_batch):
                    group = items[b0 : b0 + per_batch]
                    x = torch.stack([specs[i][s : s + n] for i, s, n, _, _ in group])
                    if self._graphed is not None:  # pad to a full batch, so that every batch of a length shares a graph
                        x = F.pad(x, (0, 0, 0, 0, 0, per_batch - len(group)))
                        out = AudioMambaOutput(*self._graphed(x, variant=self.model.layout))
                    else:
                        with self._autocast():
                            out = AudioMambaOutput(*self._forward(x))
                    for j, (i, s, n, ka, kb) in enumerate(group):
                        self._accumulate(acc[i], out, j, s, n, ka, kb)
        logits, embs, fws = [], [], []
        for a in acc:
            fw = a["fw"]
            if fw is not None and self.mode == "windowed" and self.aggregate == "mean":
                fw = fw / a["count"].clamp(min=1)
            logits.append(a["logits"] if (self.mode == "windowed" and self.aggregate == "max") else a["logits"] / a["w"])
            embs.append(a["emb"] / a["w"])
            fws.append(fw)
        # one device-to-host copy per kind for the whole batch, not one (and a sync) per file and kind
        logits, embs = torch.stack(logits).cpu(), torch.stack(embs).cpu()
        if all(fw is None for fw in fws):
            return [_Raw(lg, e, None) for lg, e in zip(logits, embs)]
        fws = list(torch.cat(fws).cpu().split([fw.shape[0] for fw in fws]))
        return [_Raw(lg, e, fw) for lg, e, fw in zip(logits, embs, fws)]

    def _spectrograms(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """:meth:`spectrogram` of each wave; waves of one length (the usual case: clips of a dataset) go through
        the front end together, at most ``_BATCH_FRAMES`` frames at a time, with one host-to-device copy (pageable:
        pinning a fresh buffer per batch cost more than the copy on an H200)."""
        specs: list[torch.Tensor | None] = [None] * len(waves)
        by_frames: dict[tuple[int, int], list[int]] = {}  # (samples, frames) -> waves of that length
        for i, w in enumerate(waves):
            frames = self.model.frontend.num_frames(w.size)
            if frames > _SPEC_BLOCK_FRAMES:
                specs[i] = self.spectrogram(w)  # long: in blocks, alone
            else:
                by_frames.setdefault((w.size, frames), []).append(i)
        for (_, frames), idx in by_frames.items():
            per = max(1, _BATCH_FRAMES // frames)
            for g0 in range(0, len(idx), per):
                group = idx[g0 : g0 + per]
                w = torch.from_numpy(np.stack([waves[i] for i in group])).to(self.device)
                with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
                    out = self.model.spectrogram(w)
                for j, i in enumerate(group):
                    specs[i] = out[j]
        return specs  # type: ignore[return-value]

    def _accumulate(self, a: dict, out, j: int, s: int, n: int, ka: int, kb: int) -> None:
        logits = out.logits[j].float()
        emb = out.embedding[j].float()
        fw = None if out.framewise_logits is None else out.framewise_logits[j].float()  # (n, C)
        if self.mode == "native":
            weight = float(kb - ka)
            a["logits"] += weight * logits
            a["emb"] += weight * emb
            a["w"] += weight
            if a["fw"] is not None and fw is not None:
                a["fw"][ka:kb] = fw[ka - s : kb - s]
            return
        a["emb"] += emb
        a["w"] += 1.0
        if self.aggregate == "max":
            a["logits"] = torch.maximum(a["logits"], logits)
            if a["fw"] is not None and fw is not None:
                a["fw"][s : s + n] = torch.maximum(a["fw"][s : s + n], fw)
        else:
            a["logits"] += logits
            if a["fw"] is not None and fw is not None:
                a["fw"][s : s + n] += fw
                a["count"][s : s + n] += 1

    # ------------------------------------------------------------------ outputs
    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid (multi-label) or softmax over the class axis (single-label)."""
        return logits_to_scores(logits, self.multi_label)

    def _result(self, raw: _Raw, wave: np.ndarray, name: str | None, warnings: list[str], top_k: int) -> TagResult:
        scores = self.activation(raw.logits).cpu().numpy()
        fw = None if raw.framewise is None else self.activation(raw.framewise).cpu().numpy()
        return TagResult(
            labels=self.labels,
            scores=scores,
            duration_s=wave.size / self.sample_rate,
            file=name,
            top_k=top_k,
            framewise=fw,
            frame_rate=self.frame_rate,
            embedding=raw.embedding.float().cpu().numpy(),
            warnings=list(warnings),
        )

    def _add_events(self, result: TagResult, threshold, min_duration: float, median_filter: float, min_gap: float) -> TagResult:
        frames = 1 if not median_filter else max(1, int(round(median_filter * self.frame_rate)) | 1)
        result.events, _ = detect_events(
            result.framewise,
            self.labels,
            self.frame_rate,
            threshold=threshold,
            median_filter_frames=frames,
            min_duration=min_duration,
            min_gap=min_gap,
            duration_s=result.duration_s,
        )
        return result

    def _require_framewise(self) -> None:
        if not self.has_framewise:
            raise ValueError("this model has a linear head: it gives clip scores only, no framewise output or events")


# ---------------------------------------------------------------------- helpers
def _array_to_mono(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """1-D samples, or 2-D with a channel axis of at most 16 (either way round), -> mono float32."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected numeric audio samples, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim == 2:
        if x.shape[0] <= 16 and x.shape[0] < x.shape[1]:
            x = x.T  # (channels, samples), the torch convention
        elif x.shape[1] > 16:
            raise ValueError(f"{name}: cannot tell the channel axis of an array of shape {x.shape}; pass mono (samples,)")
        x = to_mono(x)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected audio of shape (samples,) or (channels, samples), got {x.shape}")
    return x


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
            # memory, while it pickles arrays through a pipe (3x slower for 10 s clips; docs/tagging.md)
            return i, torch.from_numpy(wave), warnings
        except FileNotFoundError as e:
            return i, FileError(path, str(e), "not_found"), []
        except AudioDecodeError as e:
            return i, FileError(path, str(e), "decode"), []
        except (ValueError, TypeError) as e:
            return i, FileError(path, str(e), "invalid"), []
