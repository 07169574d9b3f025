"""Event F1 and PSDS1 of a model on a split with test-time shifts: for each setting, the framewise scores averaged
over that many circular shifts (each moved back into place; ``audiomamba.evaluation.predict``), then collar-based
event F1 (micro, collar 0.2 s) over a grid of thresholds and PSDS1.  Run it on validation data to choose the
shifts and the threshold; then score the test split once with ``audiomamba evaluate --tta-shifts N --tta-spacing S
--event-threshold T``.

    python scripts/event_shifts.py --checkpoint MODEL --data .bank --split validation:400 \
        --settings 1x1,2x16,4x8 [--grid 0.85,0.9,0.93,0.95] [--psds-at 0.93] [--out FILE.json]

A setting ``NxS`` is N shifts, S frames apart (``1x1``: none).  Prints one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--format", default="auto")
    ap.add_argument("--settings", default="1x1,2x16,4x8", help="comma-separated NxS: N shifts, S frames apart")
    ap.add_argument("--grid", default="0.85,0.9,0.93,0.95")
    ap.add_argument("--psds-at", type=float, default=None, help="the grid value whose run also computes PSDS1 "
                    "(it does not depend on the threshold; default: the first)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from audiomamba.checkpoint import load
    from audiomamba.datasets import open_split
    from audiomamba.evaluation import event_metrics, predict
    from audiomamba.utils.device import resolve_device

    dev = resolve_device(a.device)
    model = load(a.checkpoint, dev)
    cs = open_split(a.data, a.split, a.format)
    names, hop = cs.label_names, model.frontend.cfg.hop_length / model.sample_rate
    grid = [float(v) for v in a.grid.split(",")]
    psds_at = grid[0] if a.psds_at is None else a.psds_at
    gt = {c.name: [(on, off, names[t]) for t, on, off in c.events] for c in cs.clips}
    res = {"checkpoint": a.checkpoint, "split": a.split, "clips": len(cs), "settings": {}}
    for setting in a.settings.split(","):
        shifts, spacing = (int(v) for v in setting.lower().split("x"))
        t0 = time.time()
        with torch.inference_mode():
            pred = predict(model, cs, a.batch_size, dev, True, framewise=True, tta_shifts=shifts, tta_spacing=spacing)
        fw = {cs.clips[i].name: f.astype("float64") for i, f in pred["framewise"].items()}
        dur = {c: max(len(f) * hop, max((e[1] for e in gt[c]), default=0.0)) for c, f in fw.items()}
        row = {"seconds": round(time.time() - t0, 1), "event_f1": {}}
        for t in grid:
            m = event_metrics(fw, hop, {c: gt[c] for c in fw}, dur, names, threshold=t, psds=(t == psds_at))
            row["event_f1"][str(t)] = m["event_f1_micro"]
            if "psds1" in m:
                row["psds1"] = m["psds1"]
        row["best"] = max(grid, key=lambda t: row["event_f1"][str(t)])
        res["settings"][setting] = row
        print(setting, json.dumps(row), flush=True)
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
