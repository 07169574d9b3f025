"""Sound event post-processing: framewise probabilities -> merged, timestamped events.

Pipeline (per class, the usual SED recipe of DCASE baselines and HTS-AT's evaluation):

1. optional median filter along time (``median_filter`` frames, odd; a per-class list is accepted);
2. threshold (one value, or one per class) -> active frames;
3. runs of active frames -> events; gaps shorter than ``min_gap`` seconds between two events of a class
   are filled (the two merge);
4. events shorter than ``min_duration`` seconds are dropped;
5. each event gets ``score`` = the highest (filtered) probability inside it.

Time convention: frame ``i`` of a centred STFT with hop ``h`` samples is centred on ``i * h / sr`` seconds;
an event made of frames ``a..b`` (inclusive) is reported as ``onset = a / fps`` and ``offset = (b + 1) / fps``
(clipped to the audio's duration), the convention of sed_eval/psds_eval frame-based outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

__all__ = ["DEFAULT_EVENT_THRESHOLD", "model_event_threshold", "Event", "median_filter", "binarize", "frames_to_events",
           "detect_events"]

DEFAULT_EVENT_THRESHOLD = 0.5  # for a model whose provenance names no event threshold of its own


def model_event_threshold(meta: dict) -> float:
    """The event threshold chosen for a model on validation data, when its checkpoint's provenance names one
    (``scripts/ship_pretrained.py --event-threshold``); else :data:`DEFAULT_EVENT_THRESHOLD`."""
    return float((meta.get("provenance") or {}).get("event_threshold", DEFAULT_EVENT_THRESHOLD))


@dataclass(frozen=True)
class Event:
    """One detected event: class name, onset and offset in seconds, and its peak probability."""

    label: str
    onset: float
    offset: float
    score: float

    @property
    def duration(self) -> float:
        return self.offset - self.onset

    def to_dict(self, digits: int | None = 3) -> dict:
        d = asdict(self)
        if digits is not None:
            d.update(onset=round(self.onset, digits), offset=round(self.offset, digits), score=round(self.score, 4))
        return d

    def __iter__(self):  # unpack as (label, onset_s, offset_s, score)
        return iter((self.label, self.onset, self.offset, self.score))


def _per_class(value, num_classes: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(num_classes, float(arr))
    if arr.shape != (num_classes,):
        raise ValueError(f"{name}: expected one value or {num_classes} (one per class), got shape {arr.shape}")
    return arr


def median_filter(probs: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Median filter along time of ``(frames, classes)`` probabilities; ``size`` frames (odd; 1 = off), one
    value or one per class.  Edges are padded by repeating the first/last frame."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2:
        raise ValueError(f"expected (frames, classes) probabilities, got shape {probs.shape}")
    sizes = _per_class(size, probs.shape[1], "median_filter").astype(int)
    if np.any(sizes < 1):
        raise ValueError(f"median filter sizes must be >= 1 frame, got {sizes.min()}")
    out = probs.copy()
    for k in np.unique(sizes):
        if k <= 1:
            continue
        cols = np.flatnonzero(sizes == k)
        k = int(k) | 1  # odd, so that the window is centred
        x = np.pad(probs[:, cols], ((k // 2, k // 2), (0, 0)), mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=0)  # (frames, cols, k)
        out[:, cols] = np.median(windows, axis=-1)
    return out


def binarize(probs: np.ndarray, threshold: float | Sequence[float]) -> np.ndarray:
    """``probs >= threshold`` with one threshold or one per class: ``(frames, classes)`` bool."""
    probs = np.asarray(probs)
    return probs >= _per_class(threshold, probs.shape[1], "threshold")[None, :].astype(probs.dtype)


def frames_to_events(
    active: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    frame_rate: float,
    duration_s: float | None = None,
    min_duration: float = 0.0,
    min_gap: float = 0.0,
) -> list[Event]:
    """Runs of ``active`` (frames, classes) frames -> events sorted by onset (then label)."""
    if active.shape != probs.shape:
        raise ValueError(f"active {active.shape} and probs {probs.shape} differ in shape")
    if len(labels) != active.shape[1]:
        raise ValueError(f"{len(labels)} labels for {active.shape[1]} classes")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
    frames = active.shape[0]
    end_s = frames / frame_rate if duration_s is None else float(duration_s)
    max_gap_frames = int(round(min_gap * frame_rate))
    events: list[Event] = []
    for c in np.flatnonzero(active.any(axis=0)):
        col = active[:, c].astype(np.int8)
        edges = np.diff(np.concatenate([[0], col, [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # stops exclusive
        runs: list[list[int]] = []
        for a, b in zip(starts, stops):
            if runs and max_gap_frames and a - runs[-1][1] <= max_gap_frames:
                runs[-1][1] = b  # fill a short gap: merge with the previous run
            else:
                runs.append([a, b])
        for a, b in runs:
            onset, offset = a / frame_rate, min(b / frame_rate, end_s)
            if offset - onset + 1e-9 < min_duration:
                continue
            events.append(Event(str(labels[c]), float(onset), float(offset), float(probs[a:b, c].max())))
    events.sort(key=lambda e: (e.onset, e.label))
    return events


def detect_events(
    probs: np.ndarray,
    labels: Sequence[str],
    frame_rate: float,
    threshold: float | Sequence[float] = DEFAULT_EVENT_THRESHOLD,
    median_filter_frames: int | Sequence[int] = 1,
    min_duration: float = 0.0,
    min_gap: float = 0.0,
    duration_s: float | None = None,
) -> tuple[list[Event], np.ndarray]:
    """Framewise probabilities ``(frames, classes)`` -> (events, filtered probabilities).  See the module doc."""
    filtered = median_filter(probs, median_filter_frames)
    active = binarize(filtered, threshold)
    events = frames_to_events(active, filtered, labels, frame_rate, duration_s, min_duration, min_gap)
    return events, filtered
