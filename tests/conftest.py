"""Shared fixtures: small randomly initialised checkpoints (no trained weights exist yet) and audio files; helpers
to find where a training crop came from and where its strong labels lie."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

SR = 32000
ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """``scripts/NAME.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # two cores on CI: do not oversubscribe


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def toy_train_raw(root, out, clip_seconds: float = 0.5, sample_rate: int = 16000, **over) -> dict:
    """The raw training config the training tests share: nano at ``sample_rate``, native layout, no augmentation,
    constant lr 3e-3, one epoch of batch 4 on the toy dataset at ``root``; ``section__key=value`` overrides any
    key."""
    raw = {
        "model": {"name": "audiomamba_nano", "layout": "native", "sample_rate": sample_rate, "spec_augment": False,
                  "drop_path_rate": 0.0},
        "data": {"root": str(root), "validation": None, "clip_seconds": clip_seconds},
        "augment": {"random_crop": False},
        "optim": {"lr": 3e-3, "schedule": "constant", "weight_decay": 0.0},
        "train": {"output_dir": str(out), "epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False,
                  "threads": 1, "checkpoint_every": 100},
    }
    for k, v in over.items():
        sec, key = k.split("__")
        raw.setdefault(sec, {})[key] = v
    return raw


def noise(seconds: float, sr: int = SR, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * sr)) * amp).astype(np.float32)


def write_manifest(folder: Path, split: str, waves: list[np.ndarray], sr: int, labels: list[str],
                   subtype: str | None = None) -> Path:
    """``folder/audio/c{i}.wav`` for each wave and ``folder/{split}.jsonl`` listing them with their labels."""
    import json

    import soundfile as sf

    (folder / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (x, label) in enumerate(zip(waves, labels)):
        sf.write(folder / "audio" / f"c{i}.wav", x, sr, subtype=subtype)
        lines.append(json.dumps({"path": f"audio/c{i}.wav", "labels": [label]}))
    (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def locate(part: np.ndarray, whole: np.ndarray) -> int:
    """Where ``part`` starts in ``whole``, sample for sample (it must be there exactly once)."""
    from numpy.lib.stride_tricks import sliding_window_view

    probe = part[:64]
    starts = np.flatnonzero((sliding_window_view(whole, len(probe)) == probe).all(axis=1))
    starts = [a for a in starts if np.array_equal(whole[a: a + len(part)], part)]
    assert len(starts) == 1, f"found {len(starts)} times"
    return int(starts[0])


def event_mask(events, num_classes: int, n: int, scale: float) -> np.ndarray:
    """``(num_classes, n)`` bool: sample ``i`` is marked for each ``(class, onset, offset)`` (times in units of
    ``scale`` samples, class < 0 ignored) that holds its centre."""
    mask = np.zeros((num_classes, n), dtype=bool)
    centres = (np.arange(n) + 0.5) / scale
    for c, on, off in events:
        if c >= 0:
            mask[int(c)] |= (centres >= on) & (centres < off)
    return mask


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
