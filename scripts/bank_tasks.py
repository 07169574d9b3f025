"""Derived tasks of a source bank for the pretraining ablation (issue 17), made on the machine that trains, from
the bank alone (no source packages needed):

    python scripts/bank_tasks.py exclude --bank .bank --out runs/bank43      # the bank without the held-out classes
    python scripts/bank_tasks.py esc50 --bank .bank --out runs/esc_heldout    # ESC-50-shaped 5-fold task of them

``exclude`` writes a bank folder whose ``bank.json`` lists every recording but those of the held-out classes (and
the classes without them); its audio streams are links to the original ones, whose sample offsets stay valid.
Soundscapes mixed from it never contain a held-out sound; its splits keep their source groups.

``esc50`` renders single-label clips (``--seconds``, default 5) of the held-out classes from all their recordings
in the bank, in the ESC-50 layout (``meta/esc50.csv`` + ``audio/``): each class's source groups are dealt to
folds 1-5 (so folds are disjoint by source group), ``--per-class`` clips per class (default 10, 2 per fold).
A clip is one event (a window of at most 4 s of a recording, at a random onset, SNR 10-30 dB) over the bank's
background noise, rendered by the bank's mixer.  Same seed, same bytes.

``--classes`` (";"-separated) overrides :data:`HELD_OUT`, ten classes with at least five source groups each.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HELD_OUT = ("Clapping", "Cowbell", "Maraca", "Organ", "Acoustic guitar", "Synthesizer", "Groan",
            "Canidae, dogs, wolves", "Gunshot, gunfire", "Beep, bleep")
FOLDS = 5


def _names(text: str | None) -> list[str]:
    return list(HELD_OUT) if not text else [t.strip() for t in text.split(";") if t.strip()]


def _read(bank: Path) -> dict:
    return json.loads((bank / "bank.json").read_text(encoding="utf-8"))


def _check_classes(meta: dict, classes: list[str]) -> None:
    unknown = [c for c in classes if c not in meta["classes"]]
    if unknown:
        raise SystemExit(f"error: not classes of the bank: {unknown}")


def exclude(bank: Path, out: Path, classes: list[str]) -> dict:
    meta = _read(bank)
    _check_classes(meta, classes)
    drop = set(classes)
    label = meta["fields"].index("label")
    kept = dict(meta)
    kept["classes"] = [c for c in meta["classes"] if c not in drop]
    kept["recordings"] = [r for r in meta["recordings"] if r[label] not in drop]
    kept["excluded_classes"] = sorted(drop)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bank.json").write_text(json.dumps(kept), encoding="utf-8")
    streams = {v["file"] for v in meta["streams"].values()} if "streams" in meta else {"bank.ogg"}  # version 1: one
    for name in sorted(streams):
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        if (bank / name).exists():  # a copy of the bank may lack the test stream
            os.symlink((bank / name).resolve(), link)
    return {"out": str(out), "classes": len(kept["classes"]), "recordings": len(kept["recordings"]),
            "excluded": sorted(drop)}


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def esc50(bank_dir: Path, out: Path, classes: list[str], per_class: int, seconds: float, seed: int) -> dict:
    import soundfile as sf

    from audiomamba.soundscapes.bank import NOISE_S, open_bank
    from audiomamba.soundscapes.mixer import NOISE_COLOURS

    bank = open_bank(bank_dir)
    _check_classes({"classes": bank.classes}, classes)
    if per_class < FOLDS:
        raise SystemExit(f"error: --per-class must be at least {FOLDS} (one clip per fold)")
    sr = bank.sample_rate
    n = int(round(seconds * sr))
    max_take = min(n, int(round(bank.mix.max_event_s * sr)))
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    rows, per_fold = [], defaultdict(int)
    for target, label in enumerate(classes):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(bank.recordings):
            if r.label == label:
                groups[r.group].append(i)
        order = sorted(groups, key=lambda g: _stable(f"{seed}:{label}:{g}"))
        if len(order) < FOLDS:
            raise SystemExit(f"error: class {label!r} has {len(order)} source groups; {FOLDS} folds need {FOLDS}")
        fold_groups = {k: [order[j] for j in range(len(order)) if j % FOLDS == k - 1] for k in range(1, FOLDS + 1)}
        rng = np.random.default_rng([seed, _stable(label) % 2**32])
        for c in range(per_class):
            fold = c % FOLDS + 1
            gs = fold_groups[fold]
            group = gs[(c // FOLDS) % len(gs)]
            rec = groups[group][int(rng.integers(len(groups[group])))]
            length = bank.recordings[rec].length
            take = min(length, max_take)
            first = int(rng.integers(length - take + 1))
            onset = int(rng.integers(n - take + 1))
            snr = float(rng.uniform(10.0, 30.0))
            kind = int(rng.integers(len(NOISE_COLOURS)))
            offset = int(rng.integers(max(int(NOISE_S * sr), n) - n + 1))
            bg_db = float(rng.uniform(*bank.mix.background_db))
            clip = bank.render((n, kind, offset, round(bg_db, 3), ((rec, first, take, onset, round(snr, 3)),)))
            src = _stable(bank.recordings[rec].key) % 100000
            name = f"{fold}-{src}-{chr(ord('A') + c // FOLDS)}-{target}.wav"
            sf.write(str(out / "audio" / name), clip, sr, subtype="PCM_16")
            rows.append([name, fold, target, label, "False", src, chr(ord("A") + c // FOLDS)])
            per_fold[fold] += 1
    with open(out / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(sorted(rows, key=lambda r: (r[1], r[0])))
    return {"out": str(out), "classes": len(classes), "clips": len(rows), "per_fold": dict(sorted(per_fold.items())),
            "seconds": seconds, "sample_rate": sr}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("exclude", "esc50"):
        p = sub.add_parser(name)
        p.add_argument("--bank", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--classes", default=None, help='";"-separated class names (default: HELD_OUT)')
        if name == "esc50":
            p.add_argument("--per-class", type=int, default=10)
            p.add_argument("--seconds", type=float, default=5.0)
            p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    classes = _names(a.classes)
    if a.cmd == "exclude":
        summary = exclude(Path(a.bank), Path(a.out), classes)
    else:
        summary = esc50(Path(a.bank), Path(a.out), classes, a.per_class, a.seconds, a.seed)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
