"""The source bank: every built-in source recording in one compact file, and soundscapes mixed from it on the fly.

Building soundscapes as WAV files (:mod:`audiomamba.soundscapes.mixer`) needs the source packages installed and
writes 640 KB per 10 s clip.  A training run on a GPU machine wants hundreds of thousands of clips, has no package
manager and receives at most a few tens of MB.  The bank is what travels instead:

``DIR/test.ogg``, ``DIR/validation.ogg``, ``DIR/train.ogg``
    each split's recordings, trimmed to their active part (-40 dB), cut to at most ``max_seconds``,
    peak-normalised, mono, concatenated (with short silent gaps) into one Ogg Vorbis stream per split at the
    bank's sample rate; lossy, as the field's training audio is (AudioSet is YouTube audio).  One stream per split,
    because a lossy codec's output for a stretch depends on where its blocks fall: adding or removing training
    recordings then leaves every validation and test sample as it was, bit for bit, and a copy of the bank for a
    training machine can leave the test stream out (it then never holds the test audio).
``DIR/bank.json``
    the format tag, sample rate, classes, the mixing settings and clip counts of each split, the seed, the streams
    (file and samples per split) and one row per recording: key, label, source group, split, origin, licence,
    first sample and length in its split's stream.

Splits are drawn by source group exactly as for the WAV soundscapes (:func:`~audiomamba.soundscapes.mixer.assign_splits`),
so no recording, kit, soundfont or voice is shared between train, validation and test.

Mixing (:meth:`SourceBank.plan_split` then :meth:`SourceBank.render`): clip ``i`` of split ``s`` gets its event
labels dealt from class permutations (every class about equally often) and a plan drawn from uniforms, both
depending on ``(seed, s, i)`` alone: background colour, level and offset, and per event a recording of that label from the
split's groups, a window of it (at most ``mix.max_event_s``), an onset and an SNR.  A plan is a small tuple, so a
:class:`~audiomamba.datasets.core.Clip` carries it and the DataLoader workers render clips from the bank in memory
(about a millisecond per 10 s clip): the same index always gives the same audio, whatever the number of workers,
and validation and test are fixed sets.

Training may also change each event's recording as it is rendered (:class:`SourceAugment`: a speed change, which
moves pitch and tempo together, and a random equaliser), drawn from the training item's seed: the ~2,100 source
recordings then never sound quite the same twice, which is what generalising to recordings made elsewhere asks.
Event onsets and lengths stay those of the plan, so the strong labels hold.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from audiomamba.audio import AudioDecodeError, load_audio, resample
from audiomamba.errors import DataBuildError, DatasetError
from audiomamba.soundscapes.mixer import (
    DEFAULT_FRACTIONS,
    EVENT_THRESHOLD_DB,
    SPLITS,
    NOISE_COLOURS,
    MixConfig,
    _class_order,
    _pools,
    _stable,
    _select,
    background_noise,
)
from audiomamba.soundscapes.sources import SourceItem, active_region
from audiomamba.utils.io import atomic_write

__all__ = ["BANK_FORMAT", "BankRecording", "BankSummary", "SourceAugment", "SourceBank", "build_bank", "open_bank",
           "room_impulse"]

log = logging.getLogger("audiomamba.data")

BANK_FORMAT = "audiomamba-source-bank"
BANK_VERSION = 2  # 2: one stream per split; 1 (still read): one stream, bank.ogg, for all splits
GAP_S = 0.05  # silence between recordings in the stream: the codec's window never mixes two recordings
PEAK = 0.5  # recordings are stored at this peak (headroom for the codec); mixing sets levels by RMS anyway
NOISE_S = 30.0  # length of each precomputed background noise buffer
EQ_BANDS = 2  # peaking filters of the random equaliser
EQ_Q = (0.5, 3.0)  # their quality factors, drawn log-uniformly
EQ_MIN_HZ = 60.0  # their centre frequencies, log-uniform from here to 0.45 x the sample rate
REVERB_PROB = 0.5  # share of events given a room (the others stay dry)
REVERB_MIN_S = 0.1  # the room's reverberation time (RT60) is uniform from here to SourceAugment.reverb
REVERB_DRR_DB = (-3.0, 12.0)  # its direct-to-reverberant energy ratio, uniform in this range
REVERB_PREDELAY_S = 0.004  # from the direct sound to the start of the diffuse tail


@dataclass(frozen=True)
class SourceAugment:
    """Changes to each event's recording at render time (training only), drawn per event from the item's seed.

    ``speed``: the recording plays at a factor drawn log-uniformly from ``[1 / (1 + speed), 1 + speed]`` (pitch
    and tempo together, by resampling): the event keeps its planned length, so more or less of the recording fills
    it.  ``eq_db``: :data:`EQ_BANDS` peaking filters (RBJ audio-EQ cookbook biquads) with gains uniform in
    ``[-eq_db, eq_db]``, centre frequencies log-uniform from :data:`EQ_MIN_HZ` to 0.45 x the sample rate and Q
    log-uniform in :data:`EQ_Q`.  ``reverb``: a share :data:`REVERB_PROB` of the events sounds in a room, a
    synthetic impulse response (:func:`room_impulse`) whose RT60 is uniform from :data:`REVERB_MIN_S` to
    ``reverb`` seconds and whose direct-to-reverberant ratio is uniform in :data:`REVERB_DRR_DB`; the tail is cut
    at the event's planned end.  The event's level is set after all of them, so its SNR is the plan's."""

    speed: float = 0.0
    eq_db: float = 0.0
    reverb: float = 0.0

    def __post_init__(self) -> None:
        for key in ("speed", "eq_db", "reverb"):
            v = getattr(self, key)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"SourceAugment.{key} must be a finite number >= 0, got {v}")

    def __bool__(self) -> bool:
        return bool(self.speed or self.eq_db or self.reverb)


def room_impulse(rt60: float, drr_db: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response (float32): the direct sound (1 at sample 0), then after
    :data:`REVERB_PREDELAY_S` a diffuse tail of Gaussian noise whose envelope falls by 60 dB in ``rt60`` seconds,
    cut there, scaled so that the direct sound's energy is ``drr_db`` above the tail's.  A plain model of the
    late reverberation (Schroeder's exponential decay), written here because the rooms need only be varied,
    not measured."""
    if not (rt60 > 0 and np.isfinite(rt60) and np.isfinite(drr_db)):
        raise ValueError(f"room_impulse: rt60 must be > 0 and drr_db finite, got {rt60}, {drr_db}")
    start = max(1, int(round(REVERB_PREDELAY_S * sample_rate)))
    t = np.arange(max(1, int(round(rt60 * sample_rate)))) / sample_rate
    tail = rng.standard_normal(len(t)) * 10.0 ** (-3 * t / rt60)  # amplitude -60 dB at rt60
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
    h = np.zeros(start + len(t), np.float64)
    h[0] = 1.0
    h[start:] = tail
    return h.astype(np.float32)


def peaking_sos(freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One second-order section ``(1, 6)`` of a peaking equaliser (RBJ audio-EQ cookbook): gain ``gain_db`` at
    ``freq`` Hz, bandwidth set by ``q``, unity gain far from ``freq``."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    return (np.array(b + den) / den[0])[None]


@dataclass(frozen=True)
class BankRecording:
    """One recording in the bank: its identity, class, split group, split, licence and place in its stream (in
    ``bank.json``: in its split's stream; once opened: in :attr:`SourceBank.audio`, all streams present)."""

    key: str
    label: str
    group: str
    split: str
    origin: str
    licence: str
    start: int  # first sample
    length: int  # samples


@dataclass
class BankSummary:
    """What :func:`build_bank` wrote."""

    out: str
    recordings: dict[str, int]  # per split
    classes: list[str]
    dropped_classes: dict[str, str]
    seconds: float  # audio in the bank
    bytes: int  # size of the streams
    failed_reads: int


# ----------------------------------------------------------------------------------------------------------- build
def _prepare_one(task: tuple[str, int, float]) -> np.ndarray | None:
    """Decode, resample, trim to the active part, cut to ``max_s`` and peak-normalise one recording."""
    path, sr, max_s = task
    try:
        x, _ = load_audio(path, sr)
    except (AudioDecodeError, FileNotFoundError, ValueError) as e:
        log.warning("skipping unreadable recording %s: %s", path, e)
        return None
    a, b = active_region(x, sr, EVENT_THRESHOLD_DB)
    x = x[a: min(b, a + int(round(max_s * sr)))]
    peak = float(np.abs(x).max()) if x.size else 0.0
    if x.size < sr // 100 or peak <= 1e-5:  # under 10 ms, or silent
        return None
    return (x * (PEAK / peak)).astype(np.float32)


def build_bank(
    items: list[SourceItem],
    out: str | os.PathLike,
    *,
    sample_rate: int = 32000,
    max_seconds: float = 8.0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    classes: list[str] | None = None,
    mix: MixConfig | None = None,
    clips: dict[str, int] | None = None,
    seed: int = 0,
    quality: float = 0.3,
    jobs: int = 2,
    pinned: dict[str, str] | None = None,
) -> BankSummary:
    """Write a source bank of ``items`` into the folder ``out`` (see the module documentation); ``pinned`` groups
    keep their split (:func:`~audiomamba.soundscapes.mixer.assign_splits`).

    ``mix`` and ``clips`` (clips per split, default train 100000, validation 2000, test 2000) and ``seed`` are the
    defaults that :func:`audiomamba.datasets.open_split` uses for the bank's splits.  ``quality``: Vorbis quality
    in 0..1 (soundfile's ``compression_level`` is its complement).
    """
    mix = mix or MixConfig(sample_rate=sample_rate)
    if mix.sample_rate != sample_rate:
        raise DataBuildError(f"mix sample rate {mix.sample_rate} differs from the bank's {sample_rate}")
    mix.check()
    if not 0.0 <= quality <= 1.0:
        raise DataBuildError(f"--quality must be within 0..1, got {quality}")
    if max_seconds <= 0:
        raise DataBuildError(f"--max-seconds must be positive, got {max_seconds}")
    clips = {"train": 100000, "validation": 2000, "test": 2000, **(clips or {})}
    if set(clips) != set(SPLITS) or any(int(n) < 1 for n in clips.values()):
        raise DataBuildError(f"clips per split must name {', '.join(SPLITS)} with counts >= 1, got {clips}")
    items = _select(items, classes)
    _, dropped, where = _pools(items, list(SPLITS), list(fractions), pinned)
    for label, why in dropped.items():
        log.warning("dropping class %r: %s", label, why)
    items = [it for it in items if it.label not in dropped]
    if not items:
        raise DataBuildError("no class has recordings for every split")
    items = sorted(items, key=lambda it: it.key)
    tasks = [(it.path, sample_rate, max_seconds) for it in items]
    log.info("reading %d recordings at %d Hz on %d process(es)", len(items), sample_rate, jobs)
    if jobs > 1:
        ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ctx.Pool(jobs) as pool:
            audio = pool.map(_prepare_one, tasks, chunksize=8)
    else:
        audio = [_prepare_one(t) for t in tasks]
    gap = np.zeros(int(round(GAP_S * sample_rate)), np.float32)
    parts: dict[str, list[np.ndarray]] = {s: [gap] for s in SPLITS}
    pos = {s: len(gap) for s in SPLITS}
    rows, failed = [], 0
    for it, x in zip(items, audio):
        if x is None:
            failed += 1
            continue
        split = where[it.group]
        rows.append(BankRecording(it.key, it.label, it.group, split, it.origin, it.licence, pos[split], len(x)))
        parts[split] += [x, gap]
        pos[split] += len(x) + len(gap)
    kept = _class_order({r.label for r in rows})
    short = [c for c in kept if any(not any(r.label == c and r.split == s for r in rows) for s in SPLITS)]
    if short:
        raise DataBuildError(f"class(es) {short} lost every readable recording of some split; check the sources")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        stream = np.concatenate(parts[split])
        atomic_write(out / f"{split}.ogg", lambda tmp, x=stream: _write_vorbis(tmp, x, sample_rate, quality))
    meta = {
        "format": BANK_FORMAT, "version": BANK_VERSION, "sample_rate": sample_rate,
        "streams": {s: {"file": f"{s}.ogg", "samples": int(pos[s])} for s in SPLITS},
        "classes": kept, "mix": asdict(mix), "clips": {s: int(clips[s]) for s in SPLITS}, "seed": int(seed),
        "max_seconds": max_seconds, "split_fractions": list(fractions), "dropped_classes": dropped,
        "fields": ["key", "label", "group", "split", "origin", "licence", "start", "length"],
        "recordings": [[r.key, r.label, r.group, r.split, r.origin, r.licence, r.start, r.length] for r in rows],
    }
    atomic_write(out / "bank.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=0) + "\n"))
    (out / "bank.ogg").unlink(missing_ok=True)  # the one stream of a version-1 bank built here before
    per_split = {s: sum(r.split == s for r in rows) for s in SPLITS}
    return BankSummary(str(out), per_split, kept, dropped, round(sum(pos.values()) / sample_rate, 1),
                       sum((out / f"{s}.ogg").stat().st_size for s in SPLITS), failed)


def _write_vorbis(path: str, x: np.ndarray, sr: int, quality: float) -> None:
    import soundfile as sf

    # Written in blocks: libsndfile's Vorbis encoder crashes on very large single writes.
    with sf.SoundFile(path, "w", sr, 1, format="OGG", subtype="VORBIS", compression_level=1.0 - quality) as f:
        for a in range(0, len(x), 1 << 16):
            f.write(x[a: a + (1 << 16)])


# ------------------------------------------------------------------------------------------------------------ read
_OPEN: dict[str, "SourceBank"] = {}


def open_bank(root: str | os.PathLike) -> "SourceBank":
    """The bank in folder ``root``, decoded once per process (forked DataLoader workers share the parent's copy)."""
    key = str(Path(root).resolve())
    bank = _OPEN.get(key)
    if bank is None:
        bank = _OPEN[key] = SourceBank(root)
    return bank


def _decode(path: Path, threads: int | None = None, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Decode a mono Ogg Vorbis file to int16, in ``threads`` segments at once (libsndfile seeks sample-accurately
    in Vorbis and soundfile releases the GIL while decoding); into ``out`` when given (as long as the file)."""
    import soundfile as sf
    from concurrent.futures import ThreadPoolExecutor

    info = sf.info(str(path))
    if info.channels != 1:
        raise ValueError(f"expected mono audio, got {info.channels} channels")
    if out is None:
        out = np.empty(info.frames, np.int16)
    elif len(out) != info.frames:
        raise ValueError(f"{info.frames} samples, but {len(out)} expected")
    threads = threads or min(8, os.cpu_count() or 1)
    bounds = np.linspace(0, info.frames, threads + 1).astype(np.int64)

    def segment(k: int) -> None:
        with sf.SoundFile(str(path)) as f:
            f.seek(int(bounds[k]))
            f.read(int(bounds[k + 1] - bounds[k]), dtype="int16", out=out[bounds[k]: bounds[k + 1]])

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(segment, range(threads)))
    return out, info.samplerate


def _uniforms(seed: int, split: str, n: int, k: int) -> np.ndarray:
    """``(n, k)`` uniform draws in [0, 1): row ``i`` depends only on ``(seed, split, i)`` (SplitMix64 of a counter),
    so clip ``i`` is the same however many clips are planned, and planning 100k clips takes well under a second."""
    with np.errstate(over="ignore"):
        base = np.uint64((seed * 0x9E3779B97F4A7C15 + _stable(split) * 0xBF58476D1CE4E5B9) % 2**64)
        z = base + np.arange(n, dtype=np.uint64)[:, None] * np.uint64(k) + np.arange(k, dtype=np.uint64)[None, :]
        z = z * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _deal_labels(seed: int, split: str, counts: np.ndarray, classes: list[str]) -> list[tuple[str, ...]]:
    """Event labels of each clip (``counts[i]`` of them), dealt from successive random permutations of the classes,
    so every class occurs about equally often; permutation ``k`` depends on ``(seed, split, k)`` only, so clip
    ``i``'s labels do not depend on how many clips follow it."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    perms = [np.random.default_rng([seed, _stable(split), _stable("labels"), k]).permutation(len(classes))
             for k in range(-(-total // len(classes)))]
    stream = np.concatenate(perms) if perms else np.zeros(0, np.int64)
    starts = ends - counts
    return [tuple(classes[j] for j in stream[a:b]) for a, b in zip(starts, ends)]


class SourceBank:
    """A decoded bank: recordings in memory (int16), their metadata, and the mixer.  Use :func:`open_bank`."""

    def __init__(self, root: str | os.PathLike) -> None:
        import soundfile as sf

        root = Path(root)
        meta_path = root / "bank.json"
        if not meta_path.is_file():
            raise DatasetError(f"{root}: not a source bank (no bank.json); build one with `audiomamba data bank`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"{meta_path}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT:
            raise DatasetError(f"{meta_path}: not an audiomamba source bank (format {meta.get('format')!r})"
                               if isinstance(meta, dict) else f"{meta_path}: not an audiomamba source bank")
        if meta.get("version") not in (1, BANK_VERSION):
            raise DatasetError(f"{meta_path}: bank version {meta.get('version')} is not supported (need {BANK_VERSION})")
        try:
            self.sample_rate = int(meta["sample_rate"])
            self.classes: list[str] = list(meta["classes"])
            self.mix = MixConfig(**{**meta["mix"], "snr_db": tuple(meta["mix"]["snr_db"]),
                                    "background_db": tuple(meta["mix"]["background_db"])})
            self.clips: dict[str, int] = {s: int(n) for s, n in meta["clips"].items()}
            self.seed = int(meta["seed"])
            rows = [BankRecording(*row) for row in meta["recordings"]]
            # split -> its stream's file; version 1 kept every split in one stream, bank.ogg
            files = ({s: str(v["file"]) for s, v in meta["streams"].items()} if meta["version"] > 1
                     else dict.fromkeys(SPLITS, "bank.ogg"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(f"{meta_path}: malformed bank metadata ({e!r})") from None
        self.root, self.meta = root, meta
        self.stream_files = {s: root / f for s, f in files.items()}
        # Decode each stream present, once, into its place in one array; a copy of the bank may lack a split's
        # stream (carry_bank.sh leaves the test split out), and only asking for that split fails.
        present = [p for p in dict.fromkeys(self.stream_files.values()) if p.is_file()]
        if not present:
            raise DatasetError(f"{root}: none of the bank's audio streams is there "
                               f"({', '.join(sorted({p.name for p in self.stream_files.values()}))})")
        base, frames, total = {}, {}, 0  # each stream's first sample in the one array, and its length
        for path in present:
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError) as e:
                raise DatasetError(f"{path}: cannot decode the bank's audio ({e})") from None
            if info.samplerate != self.sample_rate:
                raise DatasetError(f"{path}: expected mono audio at {self.sample_rate} Hz, got {info.samplerate} Hz")
            end = max((r.start + r.length for r in rows if self.stream_files.get(r.split) == path), default=0)
            if end > info.frames:
                raise DatasetError(f"{path}: {info.frames} samples, but the index reaches {end}; the bank is damaged")
            base[path], frames[path] = total, info.frames
            total += info.frames
        self.audio = np.empty(total, np.int16)
        for path, first in base.items():
            try:
                _decode(path, out=self.audio[first: first + frames[path]])
            except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                raise DatasetError(f"{path}: cannot decode the bank's audio ({e})") from None
        self.splits = tuple(s for s in SPLITS if self.stream_files.get(s) in base)
        self.recordings = [replace(r, start=r.start + base[self.stream_files[r.split]])
                           if self.stream_files.get(r.split) in base else r for r in rows]
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        # split -> label -> sorted groups -> recording indices, for drawing events
        self._pool: dict[str, dict[str, list[list[int]]]] = {}
        for s in self.splits:
            by_label: dict[str, dict[str, list[int]]] = {}
            for i, r in enumerate(self.recordings):
                if r.split == s:
                    by_label.setdefault(r.label, {}).setdefault(r.group, []).append(i)
            self._pool[s] = {c: [g[k] for k in sorted(g)] for c, g in by_label.items()}
        self._noise: dict[tuple[int, int], np.ndarray] = {}

    # ------------------------------------------------------------------ planning
    def plan(self, split: str, labels: tuple[str, ...], u: np.ndarray, duration: float | None = None) -> tuple:
        """The mixing plan of one clip of ``split`` with events of ``labels``, its random choices taken from the
        uniforms ``u`` (4 + 5 per event): ``(samples, noise colour, noise offset, background dB, ((recording,
        first sample, length, onset, snr dB), ...))``."""
        mix, sr = self.mix, self.sample_rate
        n = int(round((duration or mix.duration) * sr))

        def pick(x: float, k: int) -> int:
            return min(int(x * k), k - 1)

        kind = pick(u[0], len(NOISE_COLOURS))
        offset = pick(u[1], max(int(NOISE_S * sr), n) - n + 1)
        bg_db = mix.background_db[0] + u[2] * (mix.background_db[1] - mix.background_db[0])
        max_len = min(n, int(round(mix.max_event_s * sr)))
        events = []
        for j, label in enumerate(labels):
            v = u[4 + 5 * j: 9 + 5 * j]
            groups = self._pool[split][label]
            group = groups[pick(v[0], len(groups))]
            rec = group[pick(v[1], len(group))]
            length = self.recordings[rec].length
            take = min(length, max_len)
            first = pick(v[2], length - take + 1)
            onset = pick(v[3], n - take + 1)
            snr = mix.snr_db[0] + v[4] * (mix.snr_db[1] - mix.snr_db[0])
            events.append((rec, first, take, onset, round(float(snr), 3)))
        events.sort(key=lambda e: (e[3], self.recordings[e[0]].label))
        return (n, kind, offset, round(float(bg_db), 3), tuple(events))

    def plan_split(self, split: str, n_clips: int | None = None, seed: int | None = None) -> list[tuple]:
        """Plans of the first ``n_clips`` clips of ``split`` (default: the bank's count for it).  Clip ``i``'s
        labels come from the class permutations of :func:`~audiomamba.soundscapes.mixer` (every class about equally
        often), its other choices from uniforms that depend on ``(seed, split, i)`` only."""
        if split in SPLITS and split not in self._pool:
            stream = self.stream_files.get(split, self.root / f"{split}.ogg")
            raise DatasetError(f"{stream}: missing; this copy of the bank holds only {', '.join(self.splits)} "
                               f"(the {split} split's audio was left out)")
        if split not in self._pool:
            raise DatasetError(f"{self.root}: no split {split!r} in the bank (one of {', '.join(SPLITS)})")
        n_clips = self.clips.get(split, 0) if n_clips is None else n_clips
        seed = self.seed if seed is None else seed
        classes = [c for c in self.classes if c in self._pool[split]]
        u = _uniforms(seed, split, n_clips, 4 + 5 * self.mix.max_events)
        lo, hi = self.mix.min_events, self.mix.max_events
        counts = lo + np.minimum((u[:, 3] * (hi - lo + 1)).astype(np.int64), hi - lo)
        labels = _deal_labels(seed, split, counts, classes)
        return [self.plan(split, lab, u[i]) for i, lab in enumerate(labels)]

    def events_of(self, plan: tuple) -> list[tuple[int, float, float]]:
        """``(class index, onset s, offset s)`` of each event of ``plan``."""
        sr = self.sample_rate
        return [(self.class_index[self.recordings[rec].label], onset / sr, (onset + take) / sr)
                for rec, _, take, onset, _ in plan[4]]

    # ------------------------------------------------------------------ rendering
    def _background(self, kind: int, n: int) -> np.ndarray:
        """The precomputed unit-RMS noise buffer of colour ``kind``, at least ``n`` samples long."""
        length = max(int(NOISE_S * self.sample_rate), n)
        key = (kind, length)
        buf = self._noise.get(key)
        if buf is None:
            rng = np.random.default_rng([_stable("bank-noise"), kind, length])
            buf, _ = background_noise(rng, length, self.sample_rate, kind)
            buf = self._noise[key] = buf.astype(np.float32)
        return buf

    def _augmented(self, r: BankRecording, first: int, take: int, rng: np.random.Generator,
                   augment: SourceAugment) -> np.ndarray:
        """``take`` samples of recording ``r`` from ``first``, changed as ``augment`` says (:class:`SourceAugment`),
        the random choices drawn from ``rng`` in a fixed order."""
        span = np.log1p(augment.speed)
        factor = float(np.exp(rng.uniform(-span, span))) if augment.speed else 1.0
        read = min(max(1, int(round(take * factor))), r.length)
        first = min(first, r.length - read)  # a faster event reads past the window: start earlier, never outside
        x = self.audio[r.start + first: r.start + first + read].astype(np.float32)
        if read != take:
            x = resample(x, read, take)[:take]
            x = np.pad(x, (0, take - len(x)))
        if augment.eq_db:
            from scipy.signal import sosfilt

            sr = self.sample_rate
            u = rng.uniform(size=(EQ_BANDS, 3))
            top = 0.45 * sr
            freqs = EQ_MIN_HZ * (top / EQ_MIN_HZ) ** u[:, 0]
            gains = augment.eq_db * (2 * u[:, 1] - 1)
            qs = EQ_Q[0] * (EQ_Q[1] / EQ_Q[0]) ** u[:, 2]
            sos = np.concatenate([peaking_sos(f, g, q, sr) for f, g, q in zip(freqs, gains, qs)])
            x = sosfilt(sos, x).astype(np.float32)
        if augment.reverb:
            u = rng.uniform(size=3)
            if u[0] < REVERB_PROB:
                from scipy.signal import fftconvolve

                low = min(augment.reverb, REVERB_MIN_S)  # a maximum below REVERB_MIN_S is the RT60 itself
                rt60 = low + (augment.reverb - low) * u[1]
                drr = REVERB_DRR_DB[0] + (REVERB_DRR_DB[1] - REVERB_DRR_DB[0]) * u[2]
                h = room_impulse(rt60, drr, self.sample_rate, rng)
                x = fftconvolve(x, h)[:take].astype(np.float32)
        return x

    def render(self, plan: tuple, rng: np.random.Generator | None = None,
               augment: SourceAugment | None = None) -> np.ndarray:
        """The float32 mono clip of ``plan`` at the bank's sample rate; with ``augment`` (and ``rng``, which draws
        its choices), each event's recording is changed first (:class:`SourceAugment`)."""
        if augment and rng is None:
            raise ValueError("render: augment needs an rng to draw from")
        n, kind, offset, bg_db, events = plan
        bg_rms = np.float32(10 ** (bg_db / 20))
        clip = self._background(kind, n)[offset: offset + n] * bg_rms
        for rec, first, take, onset, snr in events:
            r = self.recordings[rec]
            if augment:
                x = self._augmented(r, first, take, rng, augment)
            else:
                x = self.audio[r.start + first: r.start + first + take].astype(np.float32)
            rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12
            clip[onset: onset + take] += x * np.float32(bg_rms * 10 ** (snr / 20) / rms)
        peak = float(np.abs(clip).max())
        if peak > 0.9:  # scale the whole clip: SNRs stay as drawn
            clip *= np.float32(0.9 / peak)
        return clip
