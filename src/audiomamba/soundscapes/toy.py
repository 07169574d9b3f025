"""A tiny generated dataset for tests, benchmarks and smoke runs: tones and noise bursts in a manifest.

``make_toy_dataset(dir, ...)`` writes ``dir/{train,validation,test}.jsonl``, ``dir/class_labels_indices.csv``
and ``dir/audio/<split>/*.wav`` in the soundscape builder's format (events with onsets/offsets).  Class k is a
tone at its own frequency (amplitude-modulated for odd k); each clip holds 1-2 events of random classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["make_toy_dataset", "TOY_CLASSES"]

TOY_CLASSES = ["Beep", "Whistle", "Hum", "Chirp", "Buzz", "Ring", "Drone", "Ping"]


def _event(kind: int, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    f = 300.0 * (1.45 ** kind)
    x = np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))
    if kind % 2:
        x *= 0.5 * (1 + np.sin(2 * np.pi * (4 + kind) * t))
    if kind % 3 == 2:
        x += 0.5 * np.sin(2 * np.pi * 2.01 * f * t)
    ramp = min(n // 4, int(0.01 * sr))
    if ramp:
        env = np.ones(n)
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
        x *= env
    return x


def make_toy_dataset(root: str | Path, sizes: dict[str, int] | None = None, seconds: float = 2.0,
                     sample_rate: int = 16000, num_classes: int = 4, max_events: int = 2, seed: int = 0,
                     single_label: bool = False) -> Path:
    import soundfile as sf

    from audiomamba.labels import write_class_labels

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = sizes or {"train": 8, "validation": 4}
    names = TOY_CLASSES[:num_classes]
    write_class_labels([{"index": i, "mid": f"/toy/{i}", "display_name": n} for i, n in enumerate(names)],
                       root / "class_labels_indices.csv")
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    for split, count in sizes.items():
        (root / "audio" / split).mkdir(parents=True, exist_ok=True)
        with open(root / f"{split}.jsonl", "w") as f:
            for i in range(count):
                x = 0.01 * rng.standard_normal(n)
                k_events = 1 if single_label else int(rng.integers(1, max_events + 1))
                events = []
                first = i % num_classes  # every class appears in every split
                for e in range(k_events):
                    k = first if e == 0 else int(rng.integers(0, num_classes))
                    length = int(rng.uniform(0.4, 0.9) * n) if single_label else int(rng.uniform(0.25, 0.6) * n)
                    start = int(rng.integers(0, n - length + 1))
                    x[start: start + length] += 0.3 * _event(k, length, sample_rate, rng)
                    events.append({"label": names[k], "onset": round(start / sample_rate, 3),
                                   "offset": round((start + length) / sample_rate, 3)})
                rel = f"audio/{split}/{i:06d}.wav"
                sf.write(root / rel, (x / max(1.0, np.abs(x).max())).astype(np.float32), sample_rate, subtype="PCM_16")
                f.write(json.dumps({"path": rel, "labels": sorted({ev["label"] for ev in events}), "events": events,
                                    "duration": seconds}) + "\n")
    return root
