"""The log-mel front end against an independent numpy implementation, and SpecAugment."""

import math

import numpy as np
import pytest
import torch

from audiomamba.models.features import FrontendConfig, LogMel, SpecAugment


def slaney_mel(f):
    # Written from the definition: 3 mels per 200 Hz below 1 kHz, then 27 mels per factor 6.4.
    return f * 3.0 / 200.0 if f < 1000.0 else 15.0 + 27.0 * math.log(f / 1000.0) / math.log(6.4)


def slaney_hz(m):
    return m * 200.0 / 3.0 if m < 15.0 else 1000.0 * 6.4 ** ((m - 15.0) / 27.0)


def numpy_logmel(x, sr=32000, n_fft=1024, hop=320, n_mels=64, fmin=50.0, fmax=14000.0):
    mlo, mhi = slaney_mel(fmin), slaney_mel(fmax)
    pts = [slaney_hz(mlo + (mhi - mlo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        left, centre, right = pts[i], pts[i + 1], pts[i + 2]
        for j, f in enumerate(freqs):
            if left < f <= centre:
                fb[i, j] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[i, j] = (right - f) / (right - centre)
        fb[i] *= 2.0 / (right - left)
    padded = np.pad(x, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = 1 + len(x) // hop
    out = np.empty((frames, n_mels))
    for t in range(frames):
        seg = padded[t * hop : t * hop + n_fft] * window
        power = np.abs(np.fft.rfft(seg)) ** 2
        out[t] = 10 * np.log10(np.maximum(fb @ power, 1e-10))
    return out


def realistic_signal(sr=32000, seconds=1.5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    chirp = np.sin(2 * np.pi * (200 * t + 1500 * t**2))
    harmonics = sum(0.3 / k * np.sin(2 * np.pi * 440 * k * t) for k in range(1, 6))
    noise = 0.05 * rng.standard_normal(t.size)
    env = np.where((t > 0.6) & (t < 0.8), 0.0, 1.0)  # a silent gap
    return ((chirp + harmonics) * env + noise * (1 - 0.9 * env)).astype(np.float32)


def test_logmel_matches_numpy_reference():
    x = realistic_signal()
    ref = numpy_logmel(x.astype(np.float64))
    out = LogMel()(torch.from_numpy(x)[None])[0].numpy()
    assert out.shape == ref.shape == (1 + len(x) // 320, 64)
    np.testing.assert_allclose(out, ref, atol=2e-3, rtol=0)


def test_blocked_and_conv_forms_match_one_pass():
    """Blocks (the long-input mode) give the frames of one pass; the conv1d-DFT form (export) the same log-mel."""
    x = torch.from_numpy(np.stack([realistic_signal(seed=1), realistic_signal(seed=2) * 1e-3]))
    fe = LogMel()
    one = fe(x)
    for block in (1, 37, 150, 151, 10_000):
        blocked = fe(x, block_frames=block)
        assert blocked.shape == one.shape == (2, 151, 64)
        torch.testing.assert_close(blocked, one, atol=1e-4, rtol=0)
    conv = LogMel(stft="conv")
    loud = one > -60  # well above float32 rounding of the DFT sums
    assert (conv(x) - one)[loud].abs().max() < 1e-3
    torch.testing.assert_close(conv(x, block_frames=40), conv(x), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="stft"):
        LogMel(stft="fft")


def test_filterbank_against_librosa_when_available():
    librosa = pytest.importorskip("librosa")
    from audiomamba.models.features import mel_filterbank

    ref = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    np.testing.assert_allclose(mel_filterbank(32000, 1024, 64, 50, 14000), ref, rtol=1e-5, atol=1e-7)


def test_ten_seconds_gives_1001_frames():
    assert LogMel()(torch.zeros(1, 320000) + 0.01).shape == (1, 1001, 64)
    assert LogMel().num_frames(320000) == 1001


def test_other_sample_rates_keep_10ms_hop():
    cfg = FrontendConfig.for_sample_rate(16000)
    assert (cfg.hop_length, cfg.n_fft, cfg.fmax) == (160, 512, 8000.0)


def test_spec_augment_only_in_training_and_within_limits():
    aug = SpecAugment()
    x = torch.randn(8, 300, 64) + 10  # no exact zeros in the input
    assert torch.equal(aug.eval()(x), x)
    y = aug.train()(x)
    zero = y == 0
    assert zero.any()
    for i in range(8):
        rows = zero[i].all(dim=1)  # fully masked frames: at most 2 stripes of < 64
        cols = zero[i].all(dim=0)
        assert rows.sum() <= 2 * 63 and cols.sum() <= 2 * 7
        # every zero lies in a masked frame or a masked bin
        assert torch.equal(zero[i], rows[:, None] | cols[None, :])
