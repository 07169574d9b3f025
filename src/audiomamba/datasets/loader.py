"""Opening any supported dataset, decoding clips, and the torch ``Dataset`` used by training and evaluation."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from audiomamba.audio import audio_duration, check_waveform, load_audio, resample
from audiomamba.datasets.audioset import read_audioset
from audiomamba.errors import AudioDecodeError
from audiomamba.datasets.bank import read_bank
from audiomamba.datasets.core import Clip, ClipSet, DatasetError
from audiomamba.datasets.esc50 import esc50_folds, read_esc50
from audiomamba.datasets.folder import read_folder
from audiomamba.datasets.manifest import find_manifest, read_manifest
from audiomamba.datasets.shards import read_member, read_shards
from audiomamba.soundscapes.bank import SourceAugment, open_bank

log = logging.getLogger("audiomamba.datasets")

FORMATS = ("auto", "manifest", "audioset", "esc50", "folder", "shards", "bank")
__all__ = ["detect_format", "open_split", "load_clip", "describe_failure", "ClipDataset", "collate", "batch_events",
           "FORMATS", "MAX_EVENTS"]

MAX_EVENTS = 16  # strong-label rows per clip in a batch (see batch_events)


def detect_format(data: str | Path) -> str:
    p = Path(data)
    if p.is_file():
        if p.suffix in (".jsonl", ".csv", ".json"):
            return "manifest"
        raise DatasetError(f"{p}: cannot tell the dataset format of a {p.suffix or 'suffix-less'} file")
    if not p.is_dir():
        raise DatasetError(f"dataset not found: {p}")
    if (p / "bank.json").is_file():
        return "bank"
    if (p / "meta" / "esc50.csv").is_file():
        return "esc50"
    if any(p.glob("*.index.json")):
        return "shards"
    if any(p.glob("*_segments.csv")):
        return "audioset"
    if any(p.glob("*.jsonl")) or any(f.name in ("train.csv", "validation.csv", "test.csv") for f in p.glob("*.csv")):
        return "manifest"
    return "folder"


_AUDIOSET_SPLITS = {"train": "balanced_train_segments.csv", "train_full": "balanced_train_segments.csv,unbalanced_train_segments.csv",
                    "validation": "eval_segments.csv", "test": "eval_segments.csv", "eval": "eval_segments.csv"}


def open_split(data: str | Path, split: str, fmt: str = "auto", labels: str | None = None, fold: int | None = None,
               val_fraction: float = 0.1, check_files: bool = True) -> ClipSet:
    """Read one split of a dataset of any format (see docs/training.md for what ``split`` means per format)."""
    fmt = detect_format(data) if fmt == "auto" else fmt
    root = Path(data)
    if fmt == "manifest":
        path = root if root.is_file() else find_manifest(root, split)
        return read_manifest(path, labels, check_files=check_files)
    if fmt == "audioset":
        return read_audioset(root, _AUDIOSET_SPLITS.get(split, split), labels=labels)
    if fmt == "esc50":
        all_folds = esc50_folds(root)
        if split == "all":
            folds = None
        elif split.startswith("folds="):
            folds = [int(f) for f in split[6:].split(",")]
        elif split.startswith("fold") and split[4:].isdigit():
            folds = [int(split[4:])]
        else:
            if fold is None:
                raise DatasetError(f"{root}: ESC-50 split {split!r} needs data.fold (the held-out fold, one of {all_folds})")
            if fold not in all_folds:
                raise DatasetError(f"{root}: fold {fold} not in the metadata's folds {all_folds}")
            folds = [f for f in all_folds if f != fold] if split == "train" else [fold]
        return read_esc50(root, folds, check_files=check_files)
    if fmt == "folder":
        return read_folder(root, split, val_fraction)
    if fmt == "shards":
        return read_shards(root, split)
    if fmt == "bank":
        return read_bank(root, split)
    raise DatasetError(f"unknown dataset format {fmt!r}; one of {', '.join(FORMATS)}")


MAX_SAMPLE = 1e6  # |sample| above this is damage (or a float file scaled wildly wrong), not audio


def load_clip(clip: Clip, sample_rate: int, start: float = 0.0, seconds: float | None = None,
              source_augment: SourceAugment | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Decode ``clip`` (from ``start`` seconds into it, at most ``seconds``) as mono float32 at ``sample_rate``.

    A clip of a source bank is rendered from its plan; ``source_augment`` (with ``rng`` drawing its choices)
    changes each event's recording as it is rendered (:class:`~audiomamba.soundscapes.bank.SourceAugment`), and
    is ignored for other clips.

    The whole clip (its ``offset``/``duration`` range of the file) is decoded and checked before the part asked
    for is cut out, so a crop never hides damage elsewhere in the clip: undecodable or truncated audio (a header
    promising more samples than the file holds), NaN or infinite samples anywhere, samples beyond
    :data:`MAX_SAMPLE`, or an empty clip raise (``AudioDecodeError`` / ``ValueError``, naming the file)."""
    if clip.plan is not None:
        bank = open_bank(clip.path)
        x, sr = bank.render(clip.plan, rng, source_augment), bank.sample_rate
    elif clip.shard is not None:
        x, sr = read_member(clip)
    else:
        x, sr = load_audio(clip.path, None, offset_s=clip.offset, duration_s=clip.duration)
    check_waveform(x, clip.name)  # the whole clip: empty, NaN or inf anywhere
    peak = float(np.abs(x).max())
    if peak > MAX_SAMPLE:
        raise ValueError(f"{clip.name}: samples far outside [-1, 1] (peak {peak:.3g}); no audio is that loud, and "
                         "the features would overflow")
    a = int(round(start * sr))
    x = x[a: a + int(round(seconds * sr))] if seconds is not None else x[a:]
    if sr != sample_rate:
        x = resample(x, sr, sample_rate)
    return check_waveform(x, clip.name)


def describe_failure(clip: Clip, exc: BaseException) -> str:
    """One line naming a clip that cannot be used and why: ``FILE (MANIFEST:LINE): CAUSE``."""
    where = clip.path if clip.shard is None and clip.plan is None else clip.name
    msg = str(exc) or type(exc).__name__
    for prefix in (clip.path, clip.name):  # decoders name the file themselves: say it once
        if prefix and msg.startswith(prefix + ": "):
            msg = msg[len(prefix) + 2:]
            break
    return f"{where} ({clip.source}): {msg}" if clip.source and clip.source != where else f"{where}: {msg}"


def _known_duration(clip: Clip) -> float | None:
    if clip.duration is not None:
        return clip.duration
    if clip.shard is not None:
        return None
    path = Path(clip.path)
    if path.is_dir():  # say so (libsndfile would say "format not recognised")
        raise AudioDecodeError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    return max(0.0, audio_duration(clip.path) - clip.offset)


class ClipDataset(torch.utils.data.Dataset):
    """Clips -> ``{"wave", "target", "events", "index"}`` (or ``{"index", "error"}`` for a clip that cannot be
    used: one that does not decode, is truncated, or holds NaN or infinite samples anywhere -- checked on the whole
    clip, before any crop; ``error`` names the file and why, see :func:`load_clip`).

    Training (``train=True``): items are requested as ``(clip_index, seed)``; a ``clip_seconds`` crop at a random
    position (or the start without ``random_crop``), zero-padded at a random position, random gain (+-``gain_db``)
    and circular time shift (up to ``time_shift`` of the crop), all drawn from ``seed``, so a run is reproducible
    whatever the number of workers.  ``source_augment`` changes the events of source-bank clips as they are
    rendered (:class:`~audiomamba.soundscapes.bank.SourceAugment`), from a stream of ``seed`` of its own.  With
    strong labels, a crop's targets are the events that overlap it by at least ``min_event_overlap`` s (labels
    without events are kept).
    Evaluation: the whole clip (at most ``eval_seconds``), at least ``min_seconds`` long.

    ``events``: the strong labels where they are in ``wave`` (:meth:`_event_rows`), None for a clip with a label
    that has no events (:attr:`~audiomamba.datasets.core.Clip.strongly_labelled`).
    """

    def __init__(self, clips: ClipSet, sample_rate: int, train: bool = False, clip_seconds: float = 10.0,
                 eval_seconds: float | None = None, random_crop: bool = True, gain_db: float = 0.0,
                 time_shift: float = 0.0, min_seconds: float = 0.1, min_event_overlap: float = 0.05,
                 source_augment: SourceAugment | None = None) -> None:
        self.cs, self.sr, self.train = clips, int(sample_rate), train
        self.source_augment = source_augment if source_augment else None
        self.clip_seconds, self.eval_seconds = clip_seconds, eval_seconds
        self.random_crop, self.gain_db, self.time_shift = random_crop, gain_db, time_shift
        self.min_seconds, self.min_event_overlap = min_seconds, min_event_overlap

    def __len__(self) -> int:
        return len(self.cs.clips)

    def _counts(self, on: float, off: float, lo: float, hi: float) -> bool:
        """Whether an event ``[on, off]`` (seconds) belongs to the crop ``[lo, hi]``: it overlaps it by at least
        ``min_event_overlap`` s, or by half its length when it is shorter than twice that."""
        return min(off, hi) - max(on, lo) >= min(self.min_event_overlap, (off - on) / 2)

    def _target(self, clip: Clip, lo: float | None = None, hi: float | None = None) -> np.ndarray:
        y = np.zeros(self.cs.num_classes, dtype=np.float32)
        with_events = {e[0] for e in clip.events}
        for t in clip.targets:
            if t not in with_events or lo is None:
                y[t] = 1.0
        if lo is not None:
            for t, on, off in clip.events:
                if self._counts(on, off, lo, hi):
                    y[t] = 1.0
        return y

    def _event_rows(self, clip: Clip, start: float, kept: int, crop: tuple[float, float] | None, pad_at: int = 0,
                    shift: int = 0, n: int = 0) -> np.ndarray | None:
        """The clip's events as they lie in an item's waveform: ``(E, 3)`` float64 rows ``(class, first sample,
        end sample)``, or None when the clip is not strongly labelled.

        The item holds ``kept`` samples of the clip from ``start`` seconds, after ``pad_at`` samples of padding,
        rolled by ``shift`` samples in its ``n`` (an event cut by the roll becomes two rows).  Events are cut to
        the audio kept; with ``crop`` (the training crop, seconds) only those that count for the crop's target
        (:meth:`_counts`) are kept.  Overlapping events of one class are merged, so a class's rows never
        overlap."""
        if not clip.strongly_labelled:
            return None
        rows = []
        for t, on, off in clip.events:
            if crop is not None and not self._counts(on, off, *crop):
                continue
            a, b = max((on - start) * self.sr, 0.0), min((off - start) * self.sr, float(kept))
            if b <= a:
                continue
            a, b = a + pad_at + shift, b + pad_at + shift
            if shift:  # np.roll: sample i moves to (i + shift) mod n
                wrap = math.floor(a / n) * n
                a, b = a - wrap, b - wrap
                if b > n:
                    rows.append((t, 0.0, b - n))
                    b = float(n)
            rows.append((t, a, b))
        return _merge_rows(rows)

    def __getitem__(self, item):
        idx, seed = item if isinstance(item, tuple) else (item, None)
        clip = self.cs.clips[idx]
        try:
            if self.train:
                return self._train_item(idx, clip, seed or 0)
            x = load_clip(clip, self.sr, 0.0, self.eval_seconds)
            events = self._event_rows(clip, 0.0, len(x), None)
            n = max(len(x), int(math.ceil(self.min_seconds * self.sr)))
            if len(x) < n:
                x = np.pad(x, (0, n - len(x)))
            return {"wave": x, "target": self._target(clip), "events": events, "index": idx}
        except Exception as e:  # noqa: BLE001 - a bad clip is reported and skipped, not fatal
            return {"index": idx, "error": describe_failure(clip, e)}

    def _train_item(self, idx: int, clip: Clip, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        n = int(round(self.clip_seconds * self.sr))
        aug = {}
        if self.source_augment and clip.plan is not None:  # its own stream: the crop and gain draws stay put
            aug = {"source_augment": self.source_augment, "rng": np.random.default_rng([seed, 1])}
        dur = _known_duration(clip) if clip.shard is None else None
        start = 0.0
        if dur is not None and dur > self.clip_seconds and self.random_crop:
            start = float(rng.uniform(0.0, dur - self.clip_seconds))
            x = load_clip(clip, self.sr, start, self.clip_seconds, **aug)
        elif dur is not None:
            x = load_clip(clip, self.sr, 0.0, self.clip_seconds, **aug)
        else:
            x = load_clip(clip, self.sr, **aug)
            if len(x) > n:
                a = int(rng.integers(0, len(x) - n + 1)) if self.random_crop else 0
                start, x = a / self.sr, x[a: a + n]
        x = x[:n]
        kept, pad_at, shift = len(x), 0, 0
        if len(x) < n:
            pad_at = int(rng.integers(0, n - len(x) + 1)) if self.random_crop else 0
            x = np.pad(x, (pad_at, n - len(x) - pad_at))
        if self.gain_db:
            x = x * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if self.time_shift:
            shift = int(rng.integers(-int(self.time_shift * n), int(self.time_shift * n) + 1))
            x = np.roll(x, shift)
        crop = (start, start + self.clip_seconds)
        target = self._target(clip, *crop) if clip.events else self._target(clip)
        events = self._event_rows(clip, start, kept, crop, pad_at, shift, n)
        return {"wave": np.ascontiguousarray(x, dtype=np.float32), "target": target, "events": events, "index": idx}


def _merge_rows(rows: list[tuple[int, float, float]]) -> np.ndarray:
    """``(class, a, b)`` intervals -> ``(E, 3)`` float64, sorted by class and start, overlapping or touching
    intervals of one class merged into one."""
    merged: list[list[float]] = []
    for t, a, b in sorted(rows):
        if merged and merged[-1][0] == t and a <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], b)
        else:
            merged.append([t, a, b])
    return np.array(merged, dtype=np.float64).reshape(-1, 3)


def batch_events(rows: list[np.ndarray | None], samples: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The strong labels of a batch in a fixed shape, for the frame loss to rasterise on any step grid.

    ``rows``: each clip's :meth:`ClipDataset._event_rows` (in samples of its waveform), ``samples``: the batch's
    waveform length.  Returns ``events`` ``(B, MAX_EVENTS, 3)`` float32 rows ``(class, onset, offset)`` with
    onset and offset as fractions of ``samples`` (padding rows: class -1, onset = offset = 0), ``has_events``
    ``(B,)`` bool (the clip is strongly labelled and its rows fit), and the number of strongly labelled clips
    with more than :data:`MAX_EVENTS` rows, which get ``has_events`` False rather than lose events."""
    events = torch.zeros(len(rows), MAX_EVENTS, 3)
    events[..., 0] = -1
    has = torch.zeros(len(rows), dtype=torch.bool)
    overflow = 0
    for i, r in enumerate(rows):
        if r is None:
            continue
        if len(r) > MAX_EVENTS:
            overflow += 1
            continue
        has[i] = True
        if len(r):
            events[i, : len(r), 0] = torch.from_numpy(r[:, 0])
            events[i, : len(r), 1:] = torch.from_numpy(r[:, 1:] / samples)
    return events, has, overflow


def collate(items: list[dict]) -> dict:
    """Stack good items (zero-padding waves to the longest); bad ones go to ``"errors"`` (their messages) and
    ``"error_indices"`` (their clip indices).  The strong labels: ``"events"``, ``"has_events"`` and
    ``"events_overflow"`` (:func:`batch_events`)."""
    good = [it for it in items if "error" not in it]
    errors = [it["error"] for it in items if "error" in it]
    bad = [it["index"] for it in items if "error" in it]
    if not good:
        return {"wave": None, "target": None, "index": torch.zeros(0, dtype=torch.long), "lengths": None,
                "errors": errors, "error_indices": bad, "events": None, "has_events": None, "events_overflow": 0}
    n = max(len(it["wave"]) for it in good)
    wave = torch.zeros(len(good), n)
    for i, it in enumerate(good):
        wave[i, : len(it["wave"])] = torch.from_numpy(it["wave"])
    events, has_events, overflow = batch_events([it.get("events") for it in good], n)
    return {
        "wave": wave,
        "target": torch.from_numpy(np.stack([it["target"] for it in good])),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "lengths": torch.tensor([len(it["wave"]) for it in good], dtype=torch.long),
        "errors": errors,
        "error_indices": bad,
        "events": events,
        "has_events": has_events,
        "events_overflow": overflow,
    }
