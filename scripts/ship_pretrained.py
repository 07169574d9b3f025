"""Write a trained checkpoint as the float16 file that ships in the package, with its provenance.

    python scripts/ship_pretrained.py --checkpoint runs/x/best.safetensors --eval runs/x/eval_test/summary.json \
        --bank .bank --config configs/pretrain_micro_v2.yaml --out model_fp16.safetensors \
        [--event-threshold 0.5 --event-threshold-from TEXT] [--init-from FILE] [-- OVERRIDES]

Provenance: the data (bank: recordings, classes, licences by origin), the recipe (config file and overrides, the
training summary's steps), the test metrics (with the threshold its event metrics were computed at), the device,
the date, the event threshold chosen on validation, and the origin of the file the stage started from.  Also checks that the float16 file gives the
same scores as the float32 checkpoint within 1e-2 on a noise clip.

A shipped file's provenance is completed afterwards, where the event metrics are computed (``sed_scores_eval`` is
not on the GPU machine), without touching its weights:

    python scripts/ship_pretrained.py --restamp FILE --eval EVAL_SUMMARY.json --out FILE \
        [--event-threshold 0.7 --event-threshold-from TEXT] [--init-from STAGE1_FILE]

``--eval`` adds the event metrics of an ``audiomamba evaluate`` summary of the same split (event F1 at its
threshold, PSDS1; the clip metrics at 0.5 stay as they are); ``--init-from`` records the
provenance of the file a second training stage started from (its config, test metrics, device and date).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import torch

from audiomamba.checkpoint import load, save_model

EVENT_METRICS = ("event_f1_micro", "event_f1_macro", "psds1")
METRICS = ("mAP", "mAUC", "d_prime", "micro_f1", "macro_f1", *EVENT_METRICS)


def _complete(prov: dict, ev: dict, a: argparse.Namespace) -> None:
    """Add to a provenance the event metrics of the evaluation summary ``ev`` (and the threshold they were computed
    at), the event threshold chosen on validation, and the origin of the file the stage started from."""
    from audiomamba.checkpoint import read_meta

    prov["test_metrics"].update({k: ev[k] for k in EVENT_METRICS if k in ev})
    if "event_threshold" in ev:
        prov["test_metrics"]["event_metrics_threshold"] = ev["event_threshold"]
    if a.event_threshold is not None:
        prov["event_threshold"], prov["event_threshold_from"] = a.event_threshold, a.event_threshold_from
    if a.init_from:
        old = read_meta(a.init_from)["provenance"]
        prov["initialised_from"] = {k: old.get(k) for k in ("config", "overrides", "test_metrics", "device", "date",
                                                            "initialised_from") if k in old}


def restamp(a: argparse.Namespace) -> None:
    """Rewrite FILE's provenance (test metrics, event threshold, stage-1 origin); the tensors are copied as they are."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from audiomamba.checkpoint import META_KEY, read_meta
    from audiomamba.utils.io import atomic_write

    meta = read_meta(a.restamp)
    with safe_open(a.restamp, "pt") as f:
        metadata = dict(f.metadata())
    tensors = load_file(a.restamp)
    prov = meta["provenance"]
    _complete(prov, json.loads(Path(a.eval).read_text()), a)
    metadata[META_KEY] = json.dumps(meta)

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=metadata)
        load(tmp)  # the rewritten file must load and validate before it replaces anything

    atomic_write(a.out, write)
    print(json.dumps({"out": a.out, **prov["test_metrics"], "event_threshold": prov.get("event_threshold")}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--eval", required=True, help="summary.json of `audiomamba evaluate` on the test split")
    ap.add_argument("--bank")
    ap.add_argument("--config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--event-threshold", type=float, default=None, help="the event threshold chosen on validation "
                    "data: the tagger's default for this model (audiomamba tag --events)")
    ap.add_argument("--event-threshold-from", default=None, help="how it was chosen (recorded in the provenance)")
    ap.add_argument("--trained-on", default=None, help="the training device's name, when this script runs elsewhere "
                    "(default: this machine's GPU)")
    ap.add_argument("--restamp", default=None, help="a shipped file whose provenance to complete (see above)")
    ap.add_argument("--init-from", default=None, help="the file this stage started from (its origin is recorded)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    if a.restamp:
        return restamp(a)
    if not (a.checkpoint and a.bank and a.config):
        ap.error("--checkpoint, --bank and --config are required (unless --restamp)")
    model = load(a.checkpoint)
    meta = model.meta
    bank = json.loads((Path(a.bank) / "bank.json").read_text())
    rows = [dict(zip(bank["fields"], r)) for r in bank["recordings"]]
    licences = Counter((r["origin"], r["licence"]) for r in rows)
    ev = json.loads(Path(a.eval).read_text())
    metrics = {k: ev[k] for k in METRICS if k in ev}
    train_meta = meta.get("provenance", {})
    provenance = {
        "trained_by": "audiomamba scripts/pretrain_gpu.sh",
        "config": a.config, "overrides": a.overrides, "training": train_meta,
        "data": {"source_bank": {"recordings": len(rows), "classes": len(bank["classes"]), "seconds":
                                 round(sum(r["length"] for r in rows) / bank["sample_rate"]), "clips": bank["clips"],
                                 "mix": bank["mix"], "seed": bank["seed"]},
                 "licences": [{"origin": o, "licence": lic, "recordings": n} for (o, lic), n in sorted(licences.items())]},
        "test_metrics": metrics, "test_split": "bank test split (source groups disjoint from training)",
        "device": a.trained_on or (torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()),
        "date": time.strftime("%Y-%m-%d"), "dtype": "float16",
    }
    _complete(provenance, ev, a)
    save_model(model, a.out, labels=meta["labels"], multi_label=meta.get("multi_label", True), provenance=provenance,
               dtype=torch.float16)
    half = load(a.out)
    wave = 0.1 * torch.randn(1, model.sample_rate * 5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (torch.sigmoid(half(wave).logits) - torch.sigmoid(model(wave).logits)).abs().max().item()
    if diff > 1e-2:
        raise SystemExit(f"float16 copy differs from the checkpoint by {diff:.3g} in score")
    print(json.dumps({"out": a.out, "mb": round(Path(a.out).stat().st_size / 1e6, 1), "fp16_score_diff": diff,
                      **metrics}))


if __name__ == "__main__":
    main()
