"""Live tagging of a stream (audiomamba.inference.stream): sources, ring buffer, incremental events, and streams of
bursts at known times checked against tagging the whole recording at once."""

import gc
import io
import json
import logging
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

import audiomamba
from audiomamba import Tagger
from audiomamba.errors import AudioDecodeError
from audiomamba.inference import TagResult, stream
from audiomamba.inference.events import binarize, frames_to_events

BURSTS = [(3.0, 5.0, "noise"), (12.0, 12.5, "tone"), (20.0, 26.0, "noise"), (33.0, 34.0, "tone"), (41.0, 47.5, "noise"),
          (55.0, 57.0, "tone")]


def bursts(seconds: float, sr: int, events=BURSTS, seed: int = 0) -> np.ndarray:
    """Quiet noise (-50 dBFS) with loud noise bursts and 3 kHz tone bursts at the given times."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * sr)).astype(np.float32) * 0.003
    for on, off, kind in events:
        a, b = int(on * sr), int(off * sr)
        if a >= x.size:
            continue
        b = min(b, x.size)
        if kind == "noise":
            x[a:b] += rng.standard_normal(b - a).astype(np.float32) * 0.3
        else:
            x[a:b] += 0.3 * np.sin(2 * np.pi * 3000 * np.arange(a, b) / sr).astype(np.float32)
    return x


def wav_bytes(x: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


class Pipe(io.RawIOBase):
    """A non-seekable reader that returns at most a few (varying, odd) bytes per read, like a pipe under load."""

    def __init__(self, data: bytes, sizes=(1, 7, 4096, 333, 65536, 2)) -> None:
        self._data, self._pos, self._sizes, self._i = data, 0, sizes, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:
        n = min(len(b), self._sizes[self._i % len(self._sizes)], len(self._data) - self._pos)
        self._i += 1
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class EnergyTagger:
    """A stand-in for a Tagger with the attributes and methods StreamTagger uses, whose framewise output depends only
    on the audio within 10 ms of each frame: "loud" follows the frame's level, "bright" the level of its first
    difference (high frequencies).  So a stream of it must reproduce the whole recording's output exactly."""

    labels = ["loud", "bright"]
    has_framewise = True
    mode = "windowed"

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.hop = sample_rate // 100
        self.model = SimpleNamespace(frontend=SimpleNamespace(cfg=SimpleNamespace(hop_length=self.hop)))

    def framewise(self, wave: np.ndarray) -> np.ndarray:
        """Mean power of the 20 ms around each frame centre (reflect-padded at the ends), of the wave and of its
        first difference, in dB -> a sigmoid centred on -25 dB."""
        n, h = 2 * self.hop, self.hop
        padded = np.pad(wave.astype(np.float64), (n // 2, n // 2), mode="reflect")
        starts = np.arange(1 + wave.size // h) * h
        levels = []
        for x in (padded, np.diff(padded, prepend=padded[0])):
            power = np.concatenate([[0.0], np.cumsum(x * x)])
            levels.append(10 * np.log10((power[starts + n] - power[starts]) / n + 1e-10))
        return (1 / (1 + np.exp(-(np.stack(levels, axis=1) + 25.0) / 2.0))).astype(np.float32)

    def detect(self, wave, sample_rate, threshold=0.5, top_k=5):
        assert sample_rate == self.sample_rate
        fw = self.framewise(np.asarray(wave, np.float32))
        return TagResult(self.labels, fw.mean(0), wave.size / self.sample_rate, top_k=top_k, framewise=fw, frame_rate=100.0)


class Sink:
    """A text output that keeps only a count and the last line (a StringIO would grow with the stream)."""

    def __init__(self) -> None:
        self.lines, self.last, self.events = 0, "", 0

    def write(self, s: str) -> None:
        self.lines += s.count("\n")
        self.last = s
        self.events += len(json.loads(s)["events"])

    def flush(self) -> None:
        pass


def read_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def stream_events(lines: list[dict]) -> list[tuple]:
    return sorted((e["label"], e["onset"], e["offset"]) for line in lines for e in line["events"])


def whole_events(probs, labels, threshold, duration_s, **kw) -> list[tuple]:
    events = frames_to_events(binarize(probs, threshold), probs, labels, 100.0, duration_s, **kw)
    return sorted((e.label, round(e.onset, 3), round(e.offset, 3)) for e in events)


# ---------------------------------------------------------------------- parts
def test_ring_buffer_keeps_the_newest_samples():
    ring = stream.RingBuffer(10)
    seen = np.zeros(0, np.float32)
    rng = np.random.default_rng(0)
    for n in [3, 0, 7, 1, 12, 5, 9, 10, 4]:
        x = rng.standard_normal(n).astype(np.float32)
        ring.push(x)
        seen = np.concatenate([seen, x])
        assert ring.size == min(10, seen.size)
        for k in range(ring.size + 1):
            np.testing.assert_array_equal(ring.latest(k), seen[seen.size - k :])
    with pytest.raises(ValueError, match="asked for 11"):
        ring.latest(11)


@pytest.mark.parametrize("min_gap,min_duration,max_block", [(0.0, 0.0, 250), (0.05, 0.0, 250), (0.03, 0.04, 250),
                                                          (0.05, 0.02, 3)])
def test_event_tracker_fed_in_pieces_equals_frames_to_events(min_gap, min_duration, max_block):
    rng = np.random.default_rng(1)
    frames, labels = 3000, ["a", "b", "c", "d"]
    smooth = np.stack([np.convolve(rng.standard_normal(frames), np.ones(15) / 15, "same") for _ in range(4)], axis=1)
    probs = 1 / (1 + np.exp(-6 * smooth))  # smoothed noise: runs of every length, short gaps
    probs[:, 3] = 0.1  # one class never active
    threshold = [0.5, 0.7, 0.3, 0.5]
    tracker = stream.EventTracker(labels, 100.0, threshold, min_duration, min_gap)
    got, pos = [], 0
    while pos < frames:
        n = int(rng.integers(0, max_block))
        got += tracker.update(probs[pos : pos + n])
        pos += n
    got += tracker.close(frames / 100.0)
    expected = frames_to_events(binarize(probs, threshold), probs, labels, 100.0, frames / 100.0, min_duration, min_gap)
    assert len(expected) > 20
    assert sorted(got, key=lambda e: (e.onset, e.label)) == expected


# ---------------------------------------------------------------------- sources
@pytest.mark.parametrize(
    "subtype,channels,fmt",
    [("PCM_16", 1, "WAV"), ("PCM_U8", 1, "WAV"), ("PCM_24", 2, "WAV"), ("PCM_32", 1, "WAV"), ("FLOAT", 2, "WAV"),
     ("DOUBLE", 1, "WAV"), ("PCM_24", 3, "WAVEX"), ("FLOAT", 1, "WAVEX")],
)
def test_wav_stream_decodes_like_soundfile(subtype, channels, fmt):
    rng = np.random.default_rng(2)
    x = np.clip(rng.standard_normal((22050, channels)) * 0.3, -1, 1).astype(np.float32)
    data = wav_bytes(x, 22050, subtype, fmt)
    source = stream.open_source(Pipe(data), name="stdin")
    assert (source.sample_rate, source.channels) == (22050, channels)
    got = np.concatenate(list(source))
    expected = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].mean(axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_wav_stream_sizes_placeholders_and_trailing_chunks():
    x = (np.arange(1000) % 50 / 100).astype(np.float32)
    data = bytearray(wav_bytes(x, 8000))
    at = data.index(b"data")
    declared = bytes(data) + b"LIST" + struct.pack("<I", 4) + b"junk"  # a trailing chunk after the samples
    assert np.concatenate(list(stream.open_source(io.BytesIO(declared)))).size == 1000
    streaming = bytearray(data)  # what a writer to a pipe puts where it cannot come back: "until EOF"
    streaming[4:8] = streaming[at + 4 : at + 8] = b"\xff\xff\xff\xff"
    streaming += b"\x00\x00" * 10  # ten more samples than a real size would say
    assert np.concatenate(list(stream.open_source(io.BytesIO(bytes(streaming))))).size == 1010


@pytest.mark.parametrize(
    "data,match",
    [(b"", "not a WAV stream"), (b"OggS" + bytes(40), "not a WAV stream"), (b"RIFF\x00\x00\x00\x00WAVE", "before its data"),
     (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "no fmt chunk")],
)
def test_malformed_wav_stream_is_a_decode_error_naming_it(data, match):
    with pytest.raises(AudioDecodeError, match=f"stdin: .*{match}"):
        stream.open_source(io.BytesIO(data), name="stdin")


def test_unsupported_wav_encoding_is_named():
    data = wav_bytes(np.zeros(100, np.float32), 8000, "ALAW")
    with pytest.raises(AudioDecodeError, match="stdin: unsupported WAV encoding .*format tag 6"):
        stream.open_source(io.BytesIO(data), name="stdin")


def test_raw_pcm_with_frames_split_across_reads():
    rng = np.random.default_rng(3)
    stereo = (rng.standard_normal((4000, 2)) * 8000).astype("<i2")
    source = stream.open_source(Pipe(stereo.tobytes()), encoding="s16le", sample_rate=8000, channels=2)
    got = np.concatenate(list(source))
    np.testing.assert_allclose(got, stereo.astype(np.float32).mean(axis=1) / 32768, atol=1e-7)
    f32 = rng.standard_normal(999).astype("<f4")
    got = np.concatenate(list(stream.open_source(Pipe(f32.tobytes()), encoding="f32le", sample_rate=8000)))
    np.testing.assert_array_equal(got, f32)
    with pytest.raises(ValueError, match="needs its sample rate"):
        stream.open_source(io.BytesIO(b""), encoding="s16le")
    with pytest.raises(ValueError, match="encoding must be one of"):
        stream.open_source(io.BytesIO(b""), encoding="mp3", sample_rate=8000)


# ---------------------------------------------------------------------- streams of known bursts
def test_stream_reproduces_the_whole_recording_and_the_known_bursts():
    """A 10-minute WAV through a pipe-like reader: every line in order, every event once, identical to the events of
    the whole recording (the stand-in's output is local, so nothing may differ), at the bursts' times."""
    tagger = EnergyTagger()
    sr = tagger.sample_rate
    events = [(on + 60 * k, off + 60 * k, kind) for k in range(10) for on, off, kind in BURSTS]
    x = bursts(600.0, sr, events)
    out = io.StringIO()
    stream.run(tagger, stream.open_source(Pipe(wav_bytes(x, sr))), out, window_s=2.0, hop_s=0.5, lookahead_s=0.1)
    lines = read_lines(out.getvalue())
    assert [line["t"] for line in lines[:-1]] == pytest.approx(np.arange(1, 1201) * 0.5)
    assert lines[-1]["final"] and lines[-1]["t"] == 600.0 and not any(line.get("final") for line in lines[:-1])
    got = stream_events(lines)
    assert got == whole_events(tagger.framewise(x), tagger.labels, 0.5, 600.0)
    loud = [(on, off) for label, on, off in got if label == "loud"]
    np.testing.assert_allclose(loud, [(on, off) for on, off, _ in events], atol=0.02)
    for line in lines:  # an event is reported once it is over: at most hop + lookahead after its end
        for e in line["events"]:
            assert line["t"] - 0.5 - 0.1 - 0.01 <= e["offset"] <= line["t"]


def test_memory_stays_flat_however_long_the_stream_runs():
    """40 minutes of audio, generated block by block: what the streamer holds does not grow."""
    tagger = EnergyTagger(8000)
    sr = tagger.sample_rate
    template = bursts(60.0, sr)

    class Generated(stream.AudioSource):
        sample_rate = sr

        def __init__(self, minutes: int) -> None:
            self.minutes = minutes

        def __iter__(self):
            for minute in range(self.minutes):
                for i in range(0, template.size, sr // 2):
                    yield template[i : i + sr // 2]
                    if marks is not None and i == 0:  # once a minute; a full collection also empties CPython's
                        gc.collect()  # free lists, which tracemalloc counts as allocated
                        marks[minute] = held()

    # What the package, numpy and this test hold: threads other tests left running (the whole suite shares one
    # process) allocate too, and on a loaded machine more of it falls between two marks.
    folders = [os.path.join(os.path.dirname(m.__file__), "*") for m in (audiomamba, np)]
    mine = [tracemalloc.Filter(True, pattern) for pattern in [__file__, *folders]]

    def held() -> int:
        return sum(t.size for t in tracemalloc.take_snapshot().filter_traces(mine).traces)

    marks = None
    stream.run(tagger, Generated(2), Sink(), window_s=2.0, hop_s=1.0)  # warm up (first-call allocations)
    marks = np.zeros(40, np.int64)  # no Python objects: a list of ints would itself grow by one int a minute
    sink = Sink()
    tracemalloc.start()
    try:
        stream.run(tagger, Generated(40), sink, window_s=2.0, hop_s=1.0)
    finally:
        tracemalloc.stop()
    assert sink.lines == 2401 and sink.events >= 40 * 6
    # The first minutes fill numpy's and CPython's caches; after that what is traced wanders by up to about 10 kB
    # (numpy keeps freed small buffers for reuse, and which it keeps varies run to run). A leak of one Python int
    # kept per hop (one a second, in a list) adds 1200 * 36 B = 43 kB between minute 20 and minute 40 (checked).
    growth = int(marks[20:].max() - marks[20])
    assert growth < 32768, f"traced memory grew by {growth} bytes between minute 20 and minute 40: {marks.tolist()}"


def test_resampled_stream_matches_the_resampled_recording():
    tagger = EnergyTagger(16000)
    x48 = bursts(30.0, 48000, BURSTS[:3])
    raw = (np.clip(x48, -1, 1) * 32767).astype("<i2").tobytes()
    out = io.StringIO()
    stream.run(tagger, stream.open_source(Pipe(raw), encoding="s16le", sample_rate=48000), out, window_s=3.0, hop_s=1.0)
    lines = read_lines(out.getvalue())
    assert lines[-1]["t"] == pytest.approx(30.0, abs=0.01)
    got = stream_events(lines)
    np.testing.assert_allclose([e[1:] for e in got if e[0] == "loud"], [(on, off) for on, off, _ in BURSTS[:3]], atol=0.03)


def test_realtime_tags_once_per_block_and_still_decides_every_frame(caplog):
    tagger = EnergyTagger()
    sr = tagger.sample_rate
    x = bursts(30.0, sr, BURSTS[:3])
    steady = stream.StreamTagger(tagger, 4.0, 1.0, lookahead_s=0.2)
    lines = [line for i in range(0, x.size, sr) for line in steady.feed(x[i : i + sr])] + steady.flush()
    live = stream.StreamTagger(tagger, 4.0, 1.0, lookahead_s=0.2, realtime=True)
    late = [line for i in range(0, x.size, 3 * sr) for line in live.feed(x[i : i + 3 * sr])] + live.flush()
    assert [line["t"] for line in late] == [3.0 * k for k in range(1, 11)] + [30.0]
    assert stream_events(late) == stream_events(lines)
    jumpy = stream.StreamTagger(tagger, 4.0, 1.0, lookahead_s=0.2, realtime=True)
    with caplog.at_level(logging.WARNING, logger="audiomamba.inference.stream"):
        jumpy.feed(x[: 10 * sr])  # ten seconds at once: six of them were never in a window
    assert jumpy.lost_frames > 500 and "not scored" in caplog.text


def test_interrupt_ends_the_stream_with_a_final_line():
    tagger = EnergyTagger()
    sr = tagger.sample_rate
    x = bursts(6.0, sr, [(4.0, 9.0, "noise")])

    class Interrupted(stream.AudioSource):
        sample_rate = sr

        def __iter__(self):
            yield x
            raise KeyboardInterrupt

    lines = list(stream.tag_stream(tagger, Interrupted(), window_s=2.0, hop_s=1.0))
    assert lines[-1]["final"] and lines[-1]["t"] == 6.0
    loud = [(e["onset"], e["offset"]) for e in lines[-1]["events"] if e["label"] == "loud"]
    assert loud == [(pytest.approx(4.0, abs=0.02), 6.0)]


def test_empty_stream_gives_one_final_line():
    out = io.StringIO()
    stream.run(EnergyTagger(), stream.open_source(io.BytesIO(wav_bytes(np.zeros(0, np.float32), 16000))), out)
    assert read_lines(out.getvalue()) == [{"t": 0.0, "tags": [], "events": [], "final": True}]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="hop_s \\+ lookahead_s <= window_s"):
        stream.StreamTagger(EnergyTagger(), window_s=1.0, hop_s=0.5, lookahead_s=0.6)
    with pytest.raises(ValueError, match="0 < hop_s"):
        stream.StreamTagger(EnergyTagger(), window_s=1.0, hop_s=0.0)


# ---------------------------------------------------------------------- microphone (sounddevice stand-in)
def fake_sounddevice(signal: np.ndarray, sr: int, threaded: bool = True):
    """A stand-in for the sounddevice module: an InputStream that calls back with ``signal`` block by block from
    another thread, as PortAudio does (no audio device or PortAudio library on CI); ``threaded=False``: all of it
    at once when the stream starts, before the tagger can read any."""

    class InputStream:
        def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
            assert (samplerate, dtype) == (sr, "float32")
            self.channels, self.blocksize, self.callback = channels, blocksize, callback

        def __enter__(self):
            def play():
                frames = np.repeat(signal[:, None], self.channels, axis=1)
                for i in range(0, len(frames), self.blocksize):
                    self.callback(frames[i : i + self.blocksize], self.blocksize, None, None)

            if threaded:
                threading.Thread(target=play, daemon=True).start()
            else:
                play()
            return self

        def __exit__(self, *exc):
            return False

    return SimpleNamespace(InputStream=InputStream, query_devices=lambda device, kind: {"default_samplerate": float(sr)})


def test_microphone_stream(monkeypatch):
    tagger = EnergyTagger()
    x = bursts(8.0, 48000, [(2.0, 3.0, "noise")])
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(x, 48000))
    mic = stream.Microphone(channels=2, duration_s=6.0)
    assert mic.sample_rate == 48000 and mic.live
    out = io.StringIO()
    # realtime=False: the stand-in delivers faster than real time; tagging it as a live source would (rightly) skip
    # ahead, which test_realtime_tags_once_per_block_and_still_decides_every_frame covers
    stream.run(tagger, mic, out, window_s=2.0, hop_s=0.5, lookahead_s=0.1, realtime=False)
    lines = read_lines(out.getvalue())
    assert lines[-1]["final"] and lines[-1]["t"] == pytest.approx(6.0, abs=0.01)
    assert [e[1:] for e in stream_events(lines) if e[0] == "loud"] == [pytest.approx((2.0, 3.0), abs=0.03)]


def test_microphone_backlog_is_bounded_and_keeps_the_newest_audio(monkeypatch, caplog):
    x = np.arange(48000, dtype=np.float32) / 48000  # one second: 20 blocks of 50 ms
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(x, 48000, threaded=False))
    mic = stream.Microphone(block_s=0.05, max_backlog_s=0.1, duration_s=0.1)  # room for two blocks
    with caplog.at_level(logging.WARNING, logger="audiomamba.inference.stream"):
        got = np.concatenate(list(mic))
    np.testing.assert_array_equal(got, x[-4800:])
    assert "the oldest 18 blocks were dropped" in caplog.text


def test_microphone_without_sounddevice_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(ImportError, match=r"audiomamba\[stream\]"):
        stream.Microphone()


# ---------------------------------------------------------------------- the real tagger
@pytest.fixture(scope="module")
def local_tagger():
    """audiomamba_nano (random weights) whose scans forget quickly.  A trained tagger's output is local; a random
    one's scans remember the whole input at random rates, which no window can reproduce, so the comparison below
    would measure the random memory, not the streaming.  A large step size (delta) makes each scan step forget."""
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native").eval()
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "dt_projs_bias"):
                m.dt_projs_bias.fill_(2.0)
    return Tagger(model, labels=["Speech", "Dog", "Music"])


def robust_threshold(probs: np.ndarray) -> float:
    """A threshold with about a tenth of the frames above it and no step value within 0.005 of it.  The framewise
    output is interpolated between the 0.32 s steps' centres (frames 15 and 16 of each step hold the step's value to
    1/64 of the way to its neighbours): a threshold near a step's value could make or split a whole event on
    rounding; away from them, a change of 0.002 moves a crossing between two steps by a few frames at most."""
    values = np.unique(np.concatenate([probs[15::32], probs[16::32]]))
    lo, hi = np.searchsorted(values, np.quantile(probs, [0.8, 0.95]))
    gaps = np.diff(values[lo : hi + 1])
    i = lo + int(np.argmax(gaps))
    assert values[i + 1] - values[i] > 0.01
    return float(values[i] + values[i + 1]) / 2


def test_tagger_stream_matches_tagging_the_whole_file(local_tagger):
    """60 s of bursts through the real Tagger, window 5 s, hop 2.5 s, lookahead 1 s: the whole file's events, their
    times within two frames (the documented tolerance: framewise probabilities within 0.002)."""
    sr = local_tagger.sample_rate
    x = bursts(60.0, sr)
    whole = local_tagger.detect(x, sample_rate=sr, threshold=np.inf).framewise
    threshold = [robust_threshold(whole[:, c]) for c in range(whole.shape[1])]
    out = io.StringIO()
    stream.run(local_tagger, stream.open_source(Pipe(wav_bytes(x, sr, "FLOAT"))), out, window_s=5.0, hop_s=2.5,
               lookahead_s=1.0, threshold=threshold, min_duration=0.05)
    lines = read_lines(out.getvalue())
    assert len(lines) == 25 and lines[-1]["final"]
    got = stream_events(lines)
    expected = whole_events(whole, local_tagger.labels, threshold, 60.0, min_duration=0.05)
    assert len(got) == len(expected) > 10
    assert [e[0] for e in got] == [e[0] for e in expected]
    np.testing.assert_allclose([e[1:] for e in got], [e[1:] for e in expected], atol=0.021)
    for line, t in zip(lines, np.arange(1, 25) * 2.5):  # each line's tags are the tagger's on its window
        window = x[max(0, int((t - 5.0) * sr) // 10240 * 10240) : int(t * sr)]
        expected_tags = local_tagger.tag(window, sample_rate=sr).to_dict()["tags"]
        assert line["tags"] == expected_tags


def test_pipe_lines_arrive_while_the_stream_is_open(nano_ckpt):
    """A real OS pipe into a separate process: lines for the first hops come before the input ends (bounded
    latency), and closing the input gives the final line."""
    code = (
        "import sys; from audiomamba import Tagger; from audiomamba.inference import stream; "
        "t = Tagger.from_checkpoint(sys.argv[1]); "
        "stream.run(t, stream.open_source(sys.stdin.buffer, encoding='s16le', sample_rate=16000), sys.stdout, "
        "window_s=2.0, hop_s=1.0, lookahead_s=0.0)"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(nano_ckpt)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env)
    try:
        pcm = (bursts(3.0, 16000, [(1.0, 2.0, "noise")]) * 32767).astype("<i2").tobytes()
        proc.stdin.write(pcm)
        proc.stdin.flush()
        first = []
        # two lines, not three: the resampler (16 -> 32 kHz) holds back a few milliseconds until more input comes
        reader = threading.Thread(target=lambda: first.extend(json.loads(proc.stdout.readline()) for _ in range(2)))
        reader.start()
        reader.join(timeout=240)
        assert [line["t"] for line in first] == [1.0, 2.0], "no lines while the input stayed open"
        proc.stdin.write(pcm[: 16000])  # half a second more, then end of input
        proc.stdin.close()
        rest = read_lines(proc.stdout.read().decode())
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert [line["t"] for line in rest] == [3.0, 3.5] and rest[-1]["final"]
    assert {tag["label"] for tag in first[0]["tags"]} == {"Speech", "Dog", "Music"}
