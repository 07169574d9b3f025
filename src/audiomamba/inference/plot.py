"""The picture people look at for sound event detection: log-mel spectrogram over framewise activations.

Needs matplotlib (``pip install 'audiomamba[plot]'``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["plot_activations", "plot_path"]


def plot_path(out_dir: str | os.PathLike, file: str | None) -> Path:
    """``out_dir/<file stem>.png``; files with the same stem in different folders get the folder in the name."""
    p = Path(file or "waveform")
    stem = p.stem if p.parent in (Path("."), Path("")) else f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem
    return Path(out_dir) / f"{stem}.png"


def plot_activations(tagger, result, out_dir: str | os.PathLike, top: int = 5, wave: np.ndarray | None = None) -> Path:
    """Write a PNG for ``result`` (from :meth:`Tagger.detect` / ``tag_files(events=True)``): the log-mel
    spectrogram (dB) on top, the framewise probabilities of the ``top`` best clip classes below, with the
    detected events shaded.  ``wave``: the waveform, re-read from ``result.file`` when not given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if result.framewise is None:
        raise ValueError("result has no framewise output; use Tagger.detect or tag_files(events=True)")
    if wave is None:
        wave, _, _ = tagger.prepare(Path(result.file))
    mel = tagger.spectrogram(wave, normalise=False).float().cpu().numpy()  # (frames, 64)
    frames = mel.shape[0]
    t_end = frames / result.frame_rate
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [1, 1]})
    ax0.imshow(mel.T, origin="lower", aspect="auto", extent=(0, t_end, 0, mel.shape[1]), cmap="magma", interpolation="nearest")
    ax0.set_ylabel("mel bin")
    ax0.set_title(f"{result.file or 'waveform'}  ({result.duration_s:.2f} s)", fontsize=10)
    times = np.arange(result.framewise.shape[0]) / result.frame_rate
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (label, score) in enumerate(result.top(top)):
        c = colors[n % len(colors)]
        k = result.labels.index(label)
        ax1.plot(times, result.framewise[:, k], color=c, lw=1.2, label=f"{label} ({score:.2f})")
        for e in result.events:
            if e.label == label:
                ax1.axvspan(e.onset, e.offset, color=c, alpha=0.12)
    ax1.set_ylim(0, 1.02)
    ax1.set_xlim(0, t_end)
    ax1.set_xlabel("time (s)")
    ax1.set_ylabel("probability")
    ax1.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = plot_path(out_dir, result.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
