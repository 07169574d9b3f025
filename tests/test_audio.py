"""audiomamba.audio: decoding checks (truncated files, non-finite samples), 16-bit PCM decoding, and the
polyphase resampler of the tagger's device path against soxr."""

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from audiomamba.audio import (
    AudioDecodeError, decode_audio, device_resampler_fits, load_audio, resample, resample_torch, resampled_length,
)

RATE_PAIRS = [(44100, 32000), (48000, 32000), (22050, 32000), (16000, 32000), (8000, 32000), (96000, 32000),
              (32000, 16000)]


def tones(sr: int, seconds: float, top_hz: float, seed: int = 0) -> np.ndarray:
    """A sum of tones below ``top_hz`` with random phases, peak about 0.8."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    freqs = [f for f in (60, 440, 1000, 2500, 5000, 9000, 12000, 13500) if f < top_hz]
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs) / len(freqs)
    return (0.8 * x).astype(np.float32)


@pytest.mark.parametrize("orig,target", RATE_PAIRS)
def test_resample_torch_matches_soxr(orig, target):
    """Error bound: on audio band-limited to 0.85 of the lower Nyquist frequency (and at most 13.5 kHz, the mel
    bank's top is 14 kHz), away from the first and last 8 ms (edge transients are filtered differently), the
    device resampler is within 2e-4 absolute (peak 0.8) and at least 65 dB SNR of soxr HQ; most pairs agree to
    about 120 dB.  Lengths are soxr's exactly."""
    x = tones(orig, 1.0, 0.85 * min(orig, target) / 2)
    ref = soxr.resample(x, orig, target, quality="HQ")
    y = resample_torch(torch.from_numpy(x)[None], orig, target)[0].numpy()
    assert y.shape == ref.shape == (resampled_length(x.size, orig, target),)
    edge = int(0.008 * target)
    err = (y - ref)[edge:-edge]
    snr = 10 * np.log10(np.mean(ref[edge:-edge] ** 2) / np.mean(err ** 2))
    assert np.abs(err).max() < 2e-4 and snr > 65, (np.abs(err).max(), snr)
    assert np.abs(y - ref).max() < 0.05  # edges too, less tightly


def test_resample_torch_in_chunks_is_the_same(monkeypatch):
    import audiomamba.audio as audio

    x = torch.from_numpy(np.stack([tones(44100, 0.4, 10000, seed=s) for s in range(2)]))
    whole = resample_torch(x, 44100, 32000)
    monkeypatch.setattr(audio, "RESAMPLE_CHUNK", 2 * 638 * 7)  # 7 blocks of 320 outputs per product
    np.testing.assert_allclose(resample_torch(x, 44100, 32000).numpy(), whole.numpy(), atol=1e-6)
    up = resample_torch(x[:, :16000], 16000, 32000)
    assert up.shape == (2, 32000)


def test_resample_torch_batches_lengths_and_identity():
    x = np.stack([tones(44100, 0.5, 10000, seed=s) for s in range(3)])
    y = resample_torch(torch.from_numpy(x), 44100, 32000)
    for i in range(3):  # each row as alone
        np.testing.assert_allclose(y[i].numpy(), resample_torch(torch.from_numpy(x[i]), 44100, 32000).numpy(), atol=1e-6)
    for n in (1, 2, 99, 441, 44099, 44101):
        assert resample_torch(torch.zeros(n), 44100, 32000).shape[-1] == len(soxr.resample(np.zeros(n, np.float32), 44100, 32000))
    same = torch.randn(2, 100)
    assert resample_torch(same, 32000, 32000) is same
    assert device_resampler_fits(44100, 32000) and not device_resampler_fits(44101, 32000)  # a 32000-phase bank
    with pytest.raises(ValueError, match="positive"):
        resample_torch(same, 0, 32000)


@pytest.mark.parametrize("ext,channels", [("wav", 1), ("wav", 2), ("flac", 2)])
def test_pcm16_decode_is_the_float_decode_exactly(tmp_path, ext, channels):
    rng = np.random.default_rng(1)
    x = np.clip(rng.standard_normal((5000, channels)) * 0.3, -1, 1)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 44100, subtype="PCM_16")
    pcm, sr = decode_audio(path, dtype="pcm16")
    flt, _ = decode_audio(path)
    assert sr == 44100 and pcm.dtype == np.int16 and pcm.shape == flt.shape == (5000, channels)
    np.testing.assert_array_equal(pcm.astype(np.float32) / 32768, flt)
    # the tagger's device downmix: channel sum / channels / 32768 == load_audio's mono
    mono = torch.from_numpy(pcm).float().sum(-1) / channels * (1.0 / 32768)
    np.testing.assert_array_equal(mono.numpy(), load_audio(path)[0])
    sf.write(tmp_path / "f.wav", x, 44100, subtype="FLOAT")
    assert decode_audio(tmp_path / "f.wav", dtype="pcm16")[0].dtype == np.float32  # not 16-bit: float32


def test_truncated_wav_is_a_decode_error_naming_the_file(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, np.full(192000, 0.1, np.float32), 32000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 112])  # header promises 192000 samples, 56 follow
    with pytest.raises(AudioDecodeError, match=r"cut\.wav: truncated.*192000.*56"):
        load_audio(cut)
    with pytest.raises(AudioDecodeError, match="cut.wav: truncated"):
        decode_audio(cut, dtype="pcm16")
    assert load_audio(full)[0].shape == (192000,)  # the intact file reads as before
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((1000, 2), np.float32), 32000, subtype="PCM_16")
    stereo.write_bytes(stereo.read_bytes()[:-10])
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_audio(stereo)
    flac = tmp_path / "cut.flac"
    sf.write(flac, np.random.default_rng(0).standard_normal(64000) * 0.1, 32000)
    flac.write_bytes(flac.read_bytes()[: len(flac.read_bytes()) // 2])
    with pytest.raises(AudioDecodeError, match="cut.flac"):
        load_audio(flac)


@pytest.mark.parametrize("placeholder", [0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFF])
def test_a_streamed_wav_with_a_placeholder_size_reads_as_far_as_it_goes(tmp_path, placeholder):
    import struct

    full = tmp_path / "full.wav"
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (9000, 2)).astype(np.float32)
    sf.write(full, x, 16000, subtype="PCM_16")
    data = bytearray(full.read_bytes())
    assert data[36:40] == b"data"  # a plain 44-byte header
    data[40:44] = struct.pack("<I", placeholder)  # as a writer of unknown length leaves it (Linphone: 0x7FFFF000)
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    got, sr = decode_audio(streamed)
    np.testing.assert_array_equal(got, decode_audio(full)[0])
    assert sr == 16000 and got.shape == (9000, 2)
    # a size that is not a placeholder, over what the file holds, is still a truncated file
    data[40:44] = struct.pack("<I", 9000 * 4 + 4)
    streamed.write_bytes(bytes(data))
    with pytest.raises(AudioDecodeError, match="streamed.wav: truncated"):
        decode_audio(streamed)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_a_decode_error(tmp_path, bad):
    x = np.full((3200, 2), 0.1, np.float32)
    x[3000, 1] = bad  # anywhere: near the end, in one channel
    path = tmp_path / "bad.wav"
    sf.write(path, x, 32000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="bad.wav: audio contains NaN or infinite samples"):
        load_audio(path)
    with pytest.raises(AudioDecodeError, match="bad.wav"):
        load_audio(path, 16000)  # before resampling spreads it


def test_load_audio_resamples_with_soxr(tmp_path):
    x = tones(44100, 0.3, 10000)
    sf.write(tmp_path / "a.wav", x, 44100, subtype="FLOAT")
    y, sr = load_audio(tmp_path / "a.wav", 32000)
    assert sr == 32000
    np.testing.assert_array_equal(y, resample(x, 44100, 32000))


def test_short_compressed_stream_decodes_to_what_it_holds(tmp_path):
    """An MP3's frame count is libsndfile's estimate (bitrate, Xing header), so fewer decodable frames than it
    says is no error there (three of the bank's source recordings are such files); WAV/FLAC counts are exact."""
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    x = (0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32)
    sf.write(tmp_path / "full.mp3", x, 16000, format="MP3")
    data = (tmp_path / "full.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: int(len(data) * 0.6)])
    with sf.SoundFile(tmp_path / "cut.mp3") as f:
        promised = f.frames
    wave, _ = load_audio(tmp_path / "cut.mp3", 16000)
    assert 0 < wave.size < promised
