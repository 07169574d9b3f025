"""Live tagging of an audio stream: one JSON line per hop, with the current tags and the events that have ended.

>>> from audiomamba.inference import stream
>>> source = stream.open_source(sys.stdin.buffer)                     # a WAV stream (header first) ...
>>> source = stream.open_source(sys.stdin.buffer, encoding="s16le", sample_rate=16000, channels=1)  # ... raw PCM
>>> source = stream.Microphone()                                      # ... or a microphone (sounddevice)
>>> stream.run(tagger, source, sys.stdout, window_s=10.0, hop_s=1.0)

What happens, at the model's sample rate (other rates are resampled on the fly by soxr's streaming resampler):

- a ring buffer keeps the last ``window_s`` seconds; every ``hop_s`` seconds of stream the tagger
  (:meth:`Tagger.detect <audiomamba.inference.Tagger.detect>`, or :meth:`~audiomamba.inference.Tagger.tag` for a
  model without framewise output) scores that window.  Windows start on the model's token grid (0.32 s in native
  mode), so a frame falls in the same token in every window as in the whole stream;
- the line's ``"tags"`` are the window's clip tags (``top_k``, at least ``tag_threshold``);
- framewise probabilities (10 ms frames, frame ``i`` centred on ``i`` front-end hops after the start) are
  decided ``lookahead_s`` behind the newest audio, so that each decided frame has that much right-hand context;
  they are thresholded and merged into events exactly as :func:`~audiomamba.inference.events.frames_to_events`
  does for a whole file (``threshold``, ``min_gap``, ``min_duration``; ``median_filter`` runs over the window).
  An event is written once, in the line of the hop where it is over, in absolute stream time;
- at the end of the stream (EOF, or Ctrl-C) a last line with ``"final": true`` covers the tail and closes the
  open events at the stream's end.

Each line: ``{"t": end_of_audio_seen_s, "tags": [{"label", "score"}], "events": [{"label", "onset", "offset",
"score"}]}``.  Latency: a line comes one compute time after its hop's audio arrived; an event, at most
``hop_s + lookahead_s`` (plus ``min_gap``) after it ends.  Memory is constant however long the stream runs: the
ring buffer, one open run per class and, for a microphone, a bounded queue; nothing accumulates.

Tolerance against tagging the whole recording at once: each line's tags are exactly the tagger's on its window,
and the frames are those of the window that decided them.  Where the model's output depends only on audio within
the window, streamed framewise probabilities equal the whole recording's to within 0.002 with the default
``lookahead_s=1.0`` (the last 0.3-1 s of a window lack right-hand context: without lookahead they differ by up
to 0.2), and events match within two frames (tests/inference/test_stream.py checks the events on 60 s of
bursts).  A model that draws on longer context (a scan can remember its whole input; the shipped tagger, trained
on 10 s clips, does) gives framewise probabilities that differ from one pass over a long recording, most around
onsets: the stream reports what the model hears in the last ``window_s``, for such a model best the length it
was trained on.

A live source (a microphone) is never allowed to fall behind: when compute is slower than the hop, the hops that
arrive together are tagged once, at the newest, and their frames are still all decided as long as they fit in the
window (``realtime``).  A file or pipe is tagged hop by hop, whatever the speed.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, Sequence, TextIO

import numpy as np

from audiomamba.audio import to_mono
from audiomamba.errors import AudioDecodeError
from audiomamba.inference.events import DEFAULT_EVENT_THRESHOLD, Event, binarize, median_filter
from audiomamba.models.audiomamba import PATCH_STRIDE

if TYPE_CHECKING:
    from audiomamba.inference.tagger import Tagger

__all__ = [
    "ENCODINGS",
    "AudioSource",
    "PCMSource",
    "Microphone",
    "open_source",
    "read_wav_header",
    "RingBuffer",
    "EventTracker",
    "StreamTagger",
    "tag_stream",
    "run",
]

log = logging.getLogger(__name__)

# raw sample encodings (ffmpeg's names): bytes per sample, numpy dtype of the stored value, full scale
ENCODINGS: dict[str, tuple[int, str, float]] = {
    "u8": (1, "u1", 128.0),
    "s16le": (2, "<i2", 32768.0),
    "s24le": (3, "", 8388608.0),
    "s32le": (4, "<i4", 2147483648.0),
    "f32le": (4, "<f4", 1.0),
    "f64le": (8, "<f8", 1.0),
}
# WAV (format tag, bits per sample) -> encoding: 1 = integer PCM, 3 = IEEE float
_WAV_ENCODINGS = {(1, 8): "u8", (1, 16): "s16le", (1, 24): "s24le", (1, 32): "s32le", (3, 32): "f32le", (3, 64): "f64le"}
_STREAMING_SIZE = 0x7FFF0000  # WAV chunk sizes at or above this (or 0) are a writer's "until the end" placeholder


# ---------------------------------------------------------------------- sources
class AudioSource:
    """A stream of mono float32 blocks (any sizes) at ``sample_rate``.  ``live``: samples arrive in real time and
    cannot wait (a microphone), so the tagger skips ahead rather than fall behind."""

    sample_rate: int
    live: bool = False

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


def _decode(buf: bytes | bytearray | memoryview, encoding: str, channels: int) -> np.ndarray:
    """Interleaved little-endian samples -> mono float32 in [-1, 1)."""
    _, dtype, scale = ENCODINGS[encoding]
    if encoding == "s24le":
        b = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 8  # sign-extend 24 bits
    else:
        x = np.frombuffer(buf, dtype=dtype)
    x = x.astype(np.float32)
    if encoding == "u8":
        x -= 128.0
    if scale != 1.0:
        x /= scale
    return to_mono(x.reshape(-1, channels)) if channels > 1 else x


class PCMSource(AudioSource):
    """Raw interleaved PCM from a binary file object (e.g. ``sys.stdin.buffer``), read as it arrives.

    ``encoding``: one of :data:`ENCODINGS`; ``limit_bytes``: stop after that many bytes (None: at EOF).  Reads
    return what is there (``read1``), so a pipe's samples are tagged as soon as a hop is complete; a partial
    sample frame waits for the rest.
    """

    def __init__(self, f: BinaryIO, sample_rate: int, channels: int = 1, encoding: str = "s16le",
                 block_s: float = 0.1, limit_bytes: int | None = None, name: str = "stream") -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"{name}: encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
        if int(sample_rate) <= 0 or int(channels) <= 0:
            raise ValueError(f"{name}: need sample_rate > 0 and channels > 0, got {sample_rate} Hz, {channels} channels")
        self.f, self.sample_rate, self.channels, self.encoding = f, int(sample_rate), int(channels), encoding
        self.name, self.limit_bytes = name, limit_bytes
        self.frame_bytes = ENCODINGS[encoding][0] * self.channels
        self.block_bytes = max(1, int(block_s * self.sample_rate)) * self.frame_bytes

    def __iter__(self) -> Iterator[np.ndarray]:
        read = getattr(self.f, "read1", self.f.read)
        pending = b""
        left = self.limit_bytes
        while left is None or left > 0:
            chunk = read(self.block_bytes if left is None else min(self.block_bytes, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            pending += chunk
            usable = len(pending) - len(pending) % self.frame_bytes
            if usable:
                yield _decode(pending[:usable], self.encoding, self.channels)
                pending = pending[usable:]
        if pending:
            log.warning("%s: %d trailing byte(s) do not make a whole sample frame; ignored", self.name, len(pending))


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """``n`` bytes, fewer only at EOF (a pipe may return less per read)."""
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


@dataclass(frozen=True)
class WavHeader:
    """What a WAV stream's header says: rate, channels, sample encoding, and the data size (None: until EOF)."""

    sample_rate: int
    channels: int
    encoding: str
    data_bytes: int | None


def read_wav_header(f: BinaryIO, name: str = "stream") -> WavHeader:
    """Read a RIFF/RF64 WAVE header from a stream that cannot seek, up to the start of the samples.

    PCM (8/16/24/32-bit), IEEE float (32/64-bit) and their WAVE_FORMAT_EXTENSIBLE forms.  A data size that is a
    writer's placeholder (0, or 0xFFFFFFFF as pipes get from ffmpeg and sox) means "until EOF".  Anything else is
    an :class:`~audiomamba.errors.AudioDecodeError` naming the stream.
    """
    head = _read_exact(f, 12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise AudioDecodeError(
            f"{name}: not a WAV stream (starts with {head[:12]!r}); for raw PCM give its encoding, sample rate and channels"
        )
    rf64 = head[:4] == b"RF64"
    fmt: tuple[int, int, int, int, int] | None = None
    while True:
        chunk = _read_exact(f, 8)
        if len(chunk) < 8:
            raise AudioDecodeError(f"{name}: WAV header ends before its data chunk")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"data":
            break
        if size >= _STREAMING_SIZE:
            raise AudioDecodeError(f"{name}: WAV chunk {cid!r} claims {size} bytes before the data")
        body = _read_exact(f, size + (size & 1))
        if len(body) < size:
            raise AudioDecodeError(f"{name}: WAV header cut short in chunk {cid!r}")
        if cid == b"fmt ":
            if size < 16:
                raise AudioDecodeError(f"{name}: WAV fmt chunk of {size} bytes (need 16)")
            tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and size >= 40:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, align, bits)
    if fmt is None:
        raise AudioDecodeError(f"{name}: WAV stream has no fmt chunk before its data")
    tag, channels, rate, align, bits = fmt
    encoding = _WAV_ENCODINGS.get((tag, bits))
    if encoding is None or channels < 1 or rate < 1 or align != channels * ENCODINGS[encoding][0]:
        raise AudioDecodeError(
            f"{name}: unsupported WAV encoding (format tag {tag}, {bits} bits, {channels} channels, {rate} Hz, "
            f"block align {align}); PCM 8/16/24/32-bit or float 32/64-bit are read"
        )
    data_bytes = None if rf64 or size == 0 or size >= _STREAMING_SIZE else size
    return WavHeader(rate, channels, encoding, data_bytes)


def open_source(
    f: BinaryIO,
    encoding: str | None = None,
    sample_rate: int | None = None,
    channels: int = 1,
    block_s: float = 0.1,
    name: str = "stdin",
) -> PCMSource:
    """A WAV stream (``encoding=None``: the header says the rest) or raw PCM (``encoding`` from
    :data:`ENCODINGS`, with ``sample_rate`` and ``channels``) read from the binary file object ``f``."""
    if encoding is None:
        if sample_rate is not None:
            raise ValueError(f"{name}: a WAV stream's header gives its sample rate; pass sample_rate only with a raw encoding")
        h = read_wav_header(f, name)
        return PCMSource(f, h.sample_rate, h.channels, h.encoding, block_s, h.data_bytes, name)
    if sample_rate is None:
        raise ValueError(f"{name}: raw {encoding} needs its sample rate")
    return PCMSource(f, sample_rate, channels, encoding, block_s, None, name)


class Microphone(AudioSource):
    """An input device through ``sounddevice`` (PortAudio; the ``stream`` extra).

    ``sample_rate``: None for the device's default; ``device``: a sounddevice device name or index (None: the
    default input); ``duration_s``: stop after that long (None: until Ctrl-C).  Blocks of ``block_s`` seconds are
    queued by PortAudio's thread and handed over all at once when the tagger asks; at most ``max_backlog_s``
    seconds wait (the oldest are dropped beyond that, with a warning), so memory stays bounded even if the
    tagger stalls.
    """

    live = True

    def __init__(self, sample_rate: int | None = None, channels: int = 1, device: int | str | None = None,
                 block_s: float = 0.05, max_backlog_s: float = 30.0, duration_s: float | None = None) -> None:
        try:
            import sounddevice
        except (ImportError, OSError) as e:  # OSError: the PortAudio library itself is missing
            raise ImportError(
                "microphone input needs the sounddevice package and the PortAudio library: "
                f"pip install 'audiomamba[stream]' (and e.g. apt install libportaudio2): {e}"
            ) from e
        self._sd = sounddevice
        if sample_rate is None:
            sample_rate = int(sounddevice.query_devices(device, "input")["default_samplerate"])
        self.sample_rate, self.channels, self.device = int(sample_rate), int(channels), device
        self.block = max(1, int(block_s * self.sample_rate))
        self.max_blocks = max(1, math.ceil(max_backlog_s / block_s))
        self.dropped_blocks = 0
        self.limit = None if duration_s is None else max(0, int(round(duration_s * self.sample_rate)))

    def __iter__(self) -> Iterator[np.ndarray]:
        blocks: queue.Queue[np.ndarray] = queue.Queue(maxsize=self.max_blocks)

        def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread
            if status:
                log.warning("microphone: %s", status)
            try:
                blocks.put_nowait(indata.copy())
            except queue.Full:  # keep the newest audio: drop the oldest block
                self.dropped_blocks += 1
                try:
                    blocks.get_nowait()
                    blocks.put_nowait(indata.copy())
                except (queue.Empty, queue.Full):
                    pass

        with self._sd.InputStream(samplerate=self.sample_rate, channels=self.channels, dtype="float32",
                                  blocksize=self.block, device=self.device, callback=callback):
            left = self.limit
            while left is None or left > 0:
                got = [blocks.get()]
                while True:
                    try:
                        got.append(blocks.get_nowait())
                    except queue.Empty:
                        break
                if self.dropped_blocks:
                    log.warning("microphone: the tagger fell behind; the oldest %d blocks were dropped", self.dropped_blocks)
                    self.dropped_blocks = 0
                x = to_mono(np.concatenate(got).reshape(-1, self.channels).astype(np.float32, copy=False))
                if left is not None:
                    x = x[:left]
                    left -= x.size
                yield x


class _Resampler:
    """soxr's streaming resampler (its state carries across blocks, so block edges leave no artefacts)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        import soxr

        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        return self._stream.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)


# ---------------------------------------------------------------------- state
class RingBuffer:
    """The last ``capacity`` samples of a stream, in a fixed array."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._buf = np.zeros(capacity, np.float32)
        self._end = 0  # where the next sample goes
        self.size = 0  # samples held (<= capacity)

    @property
    def capacity(self) -> int:
        return self._buf.size

    def push(self, x: np.ndarray) -> None:
        """Append samples, forgetting the oldest beyond the capacity."""
        cap, n = self._buf.size, len(x)
        if n >= cap:
            self._buf[:] = x[n - cap :]
            self._end, self.size = 0, cap
            return
        first = min(n, cap - self._end)
        self._buf[self._end : self._end + first] = x[:first]
        self._buf[: n - first] = x[first:]
        self._end = (self._end + n) % cap
        self.size = min(cap, self.size + n)

    def latest(self, n: int) -> np.ndarray:
        """A contiguous copy of the newest ``n`` samples, oldest first."""
        if not 0 <= n <= self.size:
            raise ValueError(f"asked for {n} samples, {self.size} held")
        start = (self._end - n) % self._buf.size
        if start + n <= self._buf.size:
            return self._buf[start : start + n].copy()
        return np.concatenate([self._buf[start:], self._buf[: self._end]])


class EventTracker:
    """:func:`~audiomamba.inference.events.frames_to_events` one block of frames at a time.

    Feed consecutive blocks of ``(frames, classes)`` probabilities with :meth:`update`; it returns the events
    that are over (no later frame can extend them: inactive for more than ``min_gap``), with absolute times, and
    holds one open run per class.  :meth:`close` ends the stream.  Fed a whole array in any split, it gives the
    same events as ``frames_to_events`` on it, in the order they end.
    """

    def __init__(self, labels: Sequence[str], frame_rate: float, threshold: float | Sequence[float] = DEFAULT_EVENT_THRESHOLD,
                 min_duration: float = 0.0, min_gap: float = 0.0) -> None:
        if frame_rate <= 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
        self.labels, self.frame_rate = [str(lab) for lab in labels], float(frame_rate)
        self.threshold, self.min_duration = threshold, float(min_duration)
        self.max_gap = int(round(min_gap * frame_rate))
        c = len(self.labels)
        self._start = np.full(c, -1, np.int64)  # first frame of the open run, -1: none
        self._stop = np.zeros(c, np.int64)  # one past its last active frame
        self._peak = np.zeros(c, np.float64)
        self.frames = 0  # frames seen

    def update(self, probs: np.ndarray) -> list[Event]:
        """The next ``(n, classes)`` frames -> events that ended, sorted by onset then label."""
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[1] != len(self.labels):
            raise ValueError(f"expected (frames, {len(self.labels)}) probabilities, got {probs.shape}")
        first, end = self.frames, self.frames + probs.shape[0]
        active = binarize(probs, self.threshold).astype(np.int8)
        edges = np.diff(active, axis=0, prepend=0, append=0).T  # (classes, n + 1): +1 where a run starts, -1 after it
        ended: list[Event] = []
        # runs of this block, class by class and in time order (the +1s and -1s of a class alternate), and the
        # highest probability in each (one reduction over the class-major probabilities for all of them)
        classes, starts = np.nonzero(edges == 1)
        stops = np.nonzero(edges == -1)[1]
        n = probs.shape[0]
        bounds = np.stack([classes * n + starts, classes * n + stops], axis=1).ravel()
        peaks = np.maximum.reduceat(np.append(probs.T.ravel(), 0), bounds)[::2] if bounds.size else bounds
        for c, a, b, peak in zip(classes.tolist(), starts.tolist(), stops.tolist(), peaks.tolist()):
            if self._start[c] >= 0 and first + a - self._stop[c] > self.max_gap:  # too far to merge: the open run ends
                ended += self._end(c, None)
            if self._start[c] < 0:
                self._start[c], self._peak[c] = first + a, peak
            else:
                self._peak[c] = max(self._peak[c], peak)
            self._stop[c] = first + b
        # runs that no later frame can extend: inactive for more than max_gap frames by the end of the block
        for c in np.flatnonzero((self._start >= 0) & (end - self._stop > self.max_gap)):
            ended += self._end(c, None)
        self.frames = end
        return sorted(ended, key=lambda e: (e.onset, e.label))

    def close(self, end_s: float | None = None) -> list[Event]:
        """End of stream: the open runs as events (offsets clipped to ``end_s``), sorted by onset then label."""
        ended = [e for c in np.flatnonzero(self._start >= 0) for e in self._end(c, end_s)]
        return sorted(ended, key=lambda e: (e.onset, e.label))

    def _end(self, c: int, end_s: float | None) -> list[Event]:
        onset, offset = self._start[c] / self.frame_rate, self._stop[c] / self.frame_rate
        if end_s is not None:
            offset = min(offset, float(end_s))
        self._start[c] = -1
        if offset - onset + 1e-9 < self.min_duration:
            return []
        return [Event(self.labels[c], float(onset), float(offset), float(self._peak[c]))]


# ---------------------------------------------------------------------- the streaming tagger
class StreamTagger:
    """Feeds a stream's samples (at the tagger's rate) and returns a JSON-ready dict per hop; see the module doc.

    ``window_s``: audio scored per hop; ``hop_s``: stream time between lines (both rounded to whole 10 ms
    frames; ``hop_s + lookahead_s <= window_s``); ``lookahead_s``: right-hand context of a frame before it is
    decided (events come that much later, and match whole-file ones better).  ``top_k``, ``tag_threshold``: the
    tags of each line.  ``threshold`` (one, or one per class; default the tagger's ``event_threshold``),
    ``min_duration``, ``min_gap`` (s),
    ``median_filter`` (s, 0 = off): the events, as in :meth:`Tagger.detect <audiomamba.inference.Tagger.detect>`.
    ``realtime``: when one :meth:`feed` brings several hops, tag once at the newest (a live source must not fall
    behind).
    """

    def __init__(
        self,
        tagger: "Tagger",
        window_s: float = 10.0,
        hop_s: float = 1.0,
        *,
        top_k: int = 5,
        tag_threshold: float | None = None,
        threshold: float | Sequence[float] | None = None,
        min_duration: float = 0.0,
        min_gap: float = 0.0,
        median_filter: float = 0.0,
        lookahead_s: float = 1.0,
        realtime: bool = False,
    ) -> None:
        if not 0 < hop_s <= window_s or lookahead_s < 0 or hop_s + lookahead_s > window_s:
            raise ValueError(f"need 0 < hop_s, 0 <= lookahead_s and hop_s + lookahead_s <= window_s; got "
                             f"window_s={window_s}, hop_s={hop_s}, lookahead_s={lookahead_s}")
        self.tagger, self.top_k, self.tag_threshold, self.realtime = tagger, top_k, tag_threshold, realtime
        self.sample_rate = tagger.sample_rate
        self.frame_hop = tagger.model.frontend.cfg.hop_length  # samples per frame
        self.frame_rate = self.sample_rate / self.frame_hop
        self.hop = max(1, int(round(hop_s * self.frame_rate))) * self.frame_hop
        self.window = max(self.hop, int(round(window_s * self.frame_rate)) * self.frame_hop)
        self.lookahead = int(round(lookahead_s * self.frame_rate))  # frames
        if self.hop + self.lookahead * self.frame_hop > self.window:
            raise ValueError(f"hop_s + lookahead_s must fit in window_s (after rounding to "
                             f"{1000 / self.frame_rate:g} ms frames)")
        # Windows start on a frame and, in native mode, on the model's token grid (PATCH_STRIDE frames): a frame
        # then falls in the same token in every window as in the whole stream.  A window is up to one grid step
        # longer than ``window_s``; the ring holds that much.
        self._align = self.frame_hop * (PATCH_STRIDE if tagger.mode == "native" else 1)
        self._ring = RingBuffer(self.window + self._align)
        self._median = 1 if not median_filter else max(1, int(round(median_filter * self.frame_rate))) | 1
        self.events = tagger.has_framewise
        if threshold is None:
            threshold = getattr(tagger, "event_threshold", DEFAULT_EVENT_THRESHOLD)
        self._tracker = EventTracker(tagger.labels, self.frame_rate, threshold, min_duration, min_gap) if self.events else None
        self.samples = 0  # samples seen
        self._next = self.hop  # stream position of the next hop
        self.lost_frames = 0  # frames older than the window when a live source jumped ahead

    def feed(self, samples: np.ndarray) -> list[dict[str, Any]]:
        """Push samples; one dict per hop they complete (one in all with ``realtime``)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        lines = []
        pos = 0
        while pos < samples.size:
            take = min(samples.size - pos, self._next - self.samples)
            self._ring.push(samples[pos : pos + take])
            self.samples += take
            pos += take
            if self.samples == self._next:
                if not (self.realtime and samples.size - pos >= self.hop):  # else a newer hop is in this block
                    lines.append(self._score(final=False))
                self._next += self.hop
        return lines

    def flush(self) -> list[dict[str, Any]]:
        """End of stream: the last line (``"final": true``) with the tail's tags and every event still open."""
        if self.samples == 0:
            return [{"t": 0.0, "tags": [], "events": [], "final": True}]
        return [self._score(final=True)]

    def _score(self, final: bool) -> dict[str, Any]:
        end = self.samples
        h = self.frame_hop
        start = max(0, (end - self.window) // self._align * self._align)
        wave = self._ring.latest(end - start)
        tagger = self.tagger
        if self.events:
            # threshold=inf: the tagger's own, window-relative event pass finds nothing; events are tracked here
            result = tagger.detect(wave, sample_rate=self.sample_rate, threshold=math.inf, top_k=self.top_k)
        else:
            result = tagger.tag(wave, sample_rate=self.sample_rate, top_k=self.top_k)
        line: dict[str, Any] = {"t": round(end / self.sample_rate, 3),
                                "tags": result.to_dict(self.top_k, self.tag_threshold)["tags"], "events": []}
        if self.events:
            ended = self._decide(result.framewise, start // h, end // h + 1 if final else end // h - self.lookahead)
            if final:
                ended += self._tracker.close(end / self.sample_rate)
            line["events"] = [e.to_dict() for e in ended]
        if final:
            line["final"] = True
        return line

    def _decide(self, probs: np.ndarray, first: int, upto: int) -> list[Event]:
        """Frames ``[decided, upto)`` of the stream, from a window whose frame 0 is stream frame ``first``."""
        tracker = self._tracker
        ended: list[Event] = []
        if tracker.frames < first:  # a live source jumped further than a window: those frames were never scored
            self.lost_frames += first - tracker.frames
            log.warning("stream: %.2f s of audio were not scored (compute fell more than a window behind)",
                        (first - tracker.frames) / self.frame_rate)
            ended += tracker.close()
            tracker.frames = first
        if self._median > 1:
            probs = median_filter(probs, self._median)
        upto = max(tracker.frames, min(upto, first + probs.shape[0]))  # nothing yet while within the lookahead
        ended += tracker.update(probs[tracker.frames - first : upto - first])
        return ended


def tag_stream(
    tagger: "Tagger", source: AudioSource, *, realtime: bool | None = None, **options: Any
) -> Iterator[dict[str, Any]]:
    """The lines of :class:`StreamTagger` (``options``: its settings) for ``source``, as they come; resampled to
    the tagger's rate when the source's differs.  Ctrl-C ends the stream like its end: the last line follows."""
    streamer = StreamTagger(tagger, realtime=source.live if realtime is None else realtime, **options)
    resample = None if source.sample_rate == streamer.sample_rate else _Resampler(source.sample_rate, streamer.sample_rate)
    blocks = iter(source)
    try:
        for block in blocks:
            yield from streamer.feed(resample(block) if resample else block)
    except KeyboardInterrupt:
        log.info("stream: interrupted; closing")
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()  # stops a microphone
    if resample is not None:
        yield from streamer.feed(resample(np.zeros(0, np.float32), last=True))
    yield from streamer.flush()


def run(tagger: "Tagger", source: AudioSource, out: TextIO, **options: Any) -> None:
    """Tag ``source`` live, writing one JSON line per hop to ``out`` (flushed at once); see :func:`tag_stream`."""
    for line in tag_stream(tagger, source, **options):
        out.write(json.dumps(line) + "\n")
        out.flush()
