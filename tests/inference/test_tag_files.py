"""Tagger.tag_files' batched path (equal-length files stacked in the workers, decoded 16-bit PCM converted where
the model runs, pieces of many files batched and stitched together, resampling on the device) against the
per-file path (Tagger.tag / detect on each file), and its handling of broken files and broken models."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import audiomamba
from audiomamba import Tagger
from audiomamba.inference.results import FileError, TagResult

from conftest import SR, noise


def _write(path, seconds, sr=SR, channels=1, seed=0, subtype="PCM_16"):
    x = np.stack([noise(seconds, sr, seed=seed + c) for c in range(channels)], axis=1)
    sf.write(path, x, sr, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    return {
        "same": [_write(d / f"same{i}.wav", 2.7, seed=i) for i in range(5)],  # one length: one block
        "float": _write(d / "float.wav", 2.7, seed=9, subtype="FLOAT"),  # float32 file, same length
        "stereo44": [_write(d / f"st{i}.flac", 1.3, sr=44100, channels=2, seed=20 + i) for i in range(3)],
        "short": _write(d / "short.wav", 0.004, sr=44100),  # shorter than the STFT after resampling: padded
        "silent": d / "silent.wav",
        "odd": _write(d / "odd.wav", 1.9, seed=30),
    }


@pytest.fixture(scope="module")
def windowed(tagger):
    # 1 s windows every 0.5 s: a 2.7 s file is 5 pieces, so blocks of files straddle model batches of 4
    return Tagger(tagger.model, mode="windowed", window_s=1.0, hop_s=0.5, batch_size=4)


def _same(a, b, atol=1e-5):
    assert isinstance(a, TagResult) and isinstance(b, TagResult)
    assert a.file == b.file and a.duration_s == pytest.approx(b.duration_s) and a.warnings == b.warnings
    np.testing.assert_allclose(a.scores, b.scores, atol=atol)
    if a.framewise is not None or b.framewise is not None:
        np.testing.assert_allclose(a.framewise, b.framewise, atol=atol)
        assert [(e.label, e.onset, e.offset) for e in a.events] == [(e.label, e.onset, e.offset) for e in b.events]


@pytest.mark.parametrize("mode", ["native", "windowed"])
def test_batched_files_match_the_per_file_path(tagger, windowed, files, mode):
    sf.write(files["silent"], np.zeros(SR, np.float32), SR)
    t = windowed if mode == "windowed" else tagger
    paths = [*files["same"][:3], files["odd"], files["float"], *files["same"][3:], *files["stereo44"], files["short"],
             files["silent"]]
    got = list(t.tag_files(paths, batch_size=7, events=True, threshold=0.5, embeddings=True))
    assert [r.file for r in got] == [str(p) for p in paths]
    for p, r in zip(paths, got):
        want = t.detect(p, threshold=0.5)
        _same(r, want)
        np.testing.assert_allclose(r.embedding, t.embed(p), atol=1e-5)
    assert any("zero-padded" in w for w in got[-2].warnings) and any("silent" in w for w in got[-1].warnings)


def test_pieces_of_a_block_are_stitched_like_one_file_at_a_time(windowed, files):
    """Five 2.7 s files (5 windows each, 25 pieces in model batches of 4) stitched together == each alone,
    clip and framewise, mean and max."""
    for aggregate in ("mean", "max"):
        t = Tagger(windowed.model, mode="windowed", window_s=1.0, hop_s=0.5, batch_size=4, aggregate=aggregate)
        assert len(t.plan.pieces(t.model.frontend.num_frames(int(2.7 * SR)))) == 5
        got = list(t.tag_files(files["same"], events=True))
        for p, r in zip(files["same"], got):
            _same(r, t.detect(p))


def test_resampling_on_the_device_agrees_with_soxr_in_the_workers(tagger, files):
    paths = files["stereo44"]
    soxr_path = list(tagger.tag_files(paths, events=True, resample_on_device=False))
    device_path = list(tagger.tag_files(paths, events=True, resample_on_device=True))
    for a, b in zip(soxr_path, device_path):
        assert a.duration_s == b.duration_s
        np.testing.assert_allclose(a.scores, b.scores, atol=2e-4)
        np.testing.assert_allclose(a.framewise, b.framewise, atol=2e-3)


def test_workers_hand_over_int16_blocks_unchanged(tagger, files):
    paths = [*files["same"][:2], *files["stereo44"], files["float"]]
    here = list(tagger.tag_files(paths, num_workers=0, resample_on_device=True))
    there = list(tagger.tag_files(paths, num_workers=2, batch_size=3, resample_on_device=True))
    for a, b in zip(here, there):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_broken_files_are_file_errors_in_place(tagger, files, tmp_path):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(files["same"][0].read_bytes()[:2000])  # header promises 2.7 s
    nan = tmp_path / "nan.wav"
    x = noise(1.0)
    x[-5] = np.nan
    sf.write(nan, x, SR, subtype="FLOAT")
    out = list(tagger.tag_files([files["same"][0], cut, nan, files["same"][1]], batch_size=4))
    assert [type(o).__name__ for o in out] == ["TagResult", "FileError", "FileError", "TagResult"]
    assert out[1].kind == "decode" and "cut.wav: truncated" in out[1].message
    assert out[2].kind == "decode" and "nan.wav" in out[2].message and "NaN" in out[2].message


@pytest.fixture(scope="module")
def nan_tagger():
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native").eval()
    with torch.no_grad():
        model.head.tscam_conv.weight.fill_(float("nan"))  # a checkpoint with broken weights
    return Tagger(model)


def test_non_finite_model_output_is_an_error_never_a_score(nan_tagger, files):
    from audiomamba.errors import CheckpointError

    with pytest.raises(CheckpointError, match="good.wav|waveform") as e:
        nan_tagger.tag(noise(1.0), sample_rate=SR)
    assert "not finite" in str(e.value)
    with pytest.raises(CheckpointError, match="same0.wav: the model's output is not finite"):
        nan_tagger.detect(files["same"][0])
    with pytest.raises(ValueError, match="not finite"):
        nan_tagger.embed(files["same"][0])
    out = list(nan_tagger.tag_files([files["same"][0], files["odd"]], events=True))
    assert all(isinstance(o, FileError) and o.kind == "model" and "not finite" in o.message for o in out)
    assert out[0].file == str(files["same"][0])


def test_tag_result_json_is_always_valid():
    r = TagResult(["a", "b", "c"], np.array([0.5, np.nan, np.inf], np.float32), 1.0, file="x.wav", top_k=3)
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)  # raises on NaN / inf
    assert {"label": "a", "score": 0.5} in json.loads(text)["tags"]
    assert all(t["score"] is None or math.isfinite(t["score"]) for t in d["tags"])


def test_pcm16_silence_check_is_prepares():
    from audiomamba.inference.tagger import SILENCE_PEAK, _pcm16_silent

    rng = np.random.default_rng(0)
    cases = [np.zeros(100, np.int16), np.array([0, 1, 0], np.int16), np.zeros((9000, 2), np.int16)]
    a = rng.integers(-30000, 30000, 9000).astype(np.int16)
    cases += [np.stack([a, -a], 1), np.stack([a, a], 1), np.stack([a, -a, np.zeros_like(a)], 1)]
    late = np.zeros((9000, 2), np.int16)
    late[8000] = (3, -2)  # a nonzero mean only after the first 4096 frames
    cases += [late, np.full((10, 4), 0, np.int16) + np.array([1, 0, 0, 0], np.int16)]
    for x in cases:
        f = x.astype(np.float32) / 32768
        want = float(np.abs(f if f.ndim == 1 else f.mean(axis=1)).max()) < SILENCE_PEAK
        assert _pcm16_silent(x) == want, x


def test_short_files_of_many_lengths_share_one_forward(tagger, files):
    """Files shorter than min_input_s are centred in silence that long, so files of different lengths in one
    batch go through the model together (one pass), with the same results as one file at a time."""
    paths = [*files["stereo44"][:2], files["odd"], files["short"]]  # 1.3 s at 44.1 kHz, 1.9 s, 4 ms
    calls = []
    inner = tagger._infer_unpadded

    def counted(waves, framewise):
        calls.append(tuple(waves.shape))
        return inner(waves, framewise)

    tagger._infer_unpadded = counted
    try:
        got = list(tagger.tag_files(paths, batch_size=4, events=True, threshold=0.5, resample_on_device=False))
    finally:
        del tagger._infer_unpadded
    assert calls == [(4, int(tagger.min_input_s * SR))]
    for p, r in zip(paths, got):
        _same(r, tagger.detect(p, threshold=0.5))
