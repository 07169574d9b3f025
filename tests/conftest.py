"""Shared fixtures: small randomly initialised checkpoints (no trained weights exist yet) and audio files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

SR = 32000


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # two cores on CI: do not oversubscribe


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def noise(seconds: float, sr: int = SR, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * sr)) * amp).astype(np.float32)


@pytest.fixture(scope="session")
def nano_ckpt(tmp_path_factory):
    """audiomamba_nano, native layout, 3 classes, multi-label."""
    import audiomamba

    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native")
    path = tmp_path_factory.mktemp("ckpt") / "nano.safetensors"
    audiomamba.save_model(model, path, labels=["Speech", "Dog", "Music"], provenance={"note": "random init, tests"})
    return path


@pytest.fixture(scope="session")
def tagger(nano_ckpt):
    from audiomamba import Tagger

    return Tagger.from_checkpoint(nano_ckpt)


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory):
    """good.wav (1 s, 32 kHz), sub/other.flac (1.5 s stereo, 44.1 kHz), silent.wav, corrupt.wav, empty.wav."""
    import soundfile as sf

    d = tmp_path_factory.mktemp("audio")
    (d / "sub").mkdir()
    sf.write(d / "good.wav", noise(1.0), SR)
    stereo = np.stack([noise(1.5, 44100, seed=1), noise(1.5, 44100, seed=2)], axis=1)
    sf.write(d / "sub" / "other.flac", stereo, 44100)
    sf.write(d / "silent.wav", np.zeros(SR // 2, np.float32), SR)
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(64))
    sf.write(d / "empty.wav", np.zeros(0, np.float32), SR)
    return d
