"""How the tagger scores short recordings: a bank split's single source recordings (each one labelled sound,
median 1.2 s), tagged one by one by ``Tagger(min_input_s=...)`` for each padding length asked, and their clip
metrics (mAP, mAUC, top-1 accuracy) side by side (docs/results.md, "Short recordings").

    python scripts/short_inputs.py --data .bank --split validation --min-input 0 2.5 5 7.5 10 \
        [--checkpoint FILE] [--out runs/short_inputs/validation.json]

Choose the padding on the validation split; score the test split once, with the chosen length and 0 (off).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from audiomamba import Tagger
from audiomamba.evaluation.metrics import tagging_metrics
from audiomamba.soundscapes.bank import open_bank


def recordings(bank, split: str) -> list[tuple[np.ndarray, str]]:
    """The split's recordings as float32 waveforms at the bank's rate, with their labels."""
    return [(bank.audio[r.start : r.start + r.length].astype(np.float32) / 32768.0, r.label)
            for r in bank.recordings if r.split == split]


def score(tagger: Tagger, items: list[tuple[np.ndarray, str]], sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, targets)``, both ``(recordings, classes)`` in the tagger's class order."""
    index = {c: i for i, c in enumerate(tagger.labels)}
    scores = np.zeros((len(items), len(tagger.labels)), np.float32)
    targets = np.zeros_like(scores)
    for k, (wave, label) in enumerate(items):
        scores[k] = tagger.tag(wave, sample_rate=sample_rate).scores
        targets[k, index[label]] = 1.0
    return scores, targets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=".bank", help="source bank folder")
    p.add_argument("--split", default="validation")
    p.add_argument("--min-input", type=float, nargs="+", default=[0.0, 5.0], metavar="SECONDS")
    p.add_argument("--checkpoint", default=None, help="default: the shipped tagger")
    p.add_argument("--out", default=None, help="JSON of the figures (default runs/short_inputs/SPLIT.json)")
    a = p.parse_args()
    bank = open_bank(a.data)
    items = recordings(bank, a.split)
    lengths = np.array([len(w) for w, _ in items]) / bank.sample_rate
    out = {"data": a.data, "split": a.split, "recordings": len(items),
           "seconds": {"median": round(float(np.median(lengths)), 3), "max": round(float(lengths.max()), 3)},
           "checkpoint": a.checkpoint or "shipped", "settings": {}}
    for m in a.min_input:
        t0 = time.time()
        tagger = (Tagger.from_checkpoint(a.checkpoint, min_input_s=m) if a.checkpoint
                  else Tagger.from_pretrained(min_input_s=m))
        scores, targets = score(tagger, items, bank.sample_rate)
        present = targets.sum(0) > 0
        metrics = tagging_metrics(scores[:, present], targets[:, present], 0.5, True)
        row = {"mAP": round(float(metrics["mAP"]), 4), "mAUC": round(float(metrics["mAUC"]), 4),
               "top1": round(float(np.mean(scores.argmax(1) == targets.argmax(1))), 4),
               "seconds": round(time.time() - t0, 1)}
        out["settings"][f"{m:g}"] = row
        print(f"min_input_s={m:g}: " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    path = Path(a.out or f"runs/short_inputs/{a.split}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
