"""Ship a GPU training stage whose bank travelled without its test stream: the steps that follow
``scripts/soup_gpu.sh``, run here, where the whole bank is.

    python scripts/ship_stage.py --parts DIR --trained-on "NVIDIA H100" --out runs/stage17 \\
        -- soup:ab train.seed=21,22 model.step_frames=8 train.ema_decay=0.998 ...

1. join the chosen checkpoint's parts (``DIR/best.safetensors.part*``, as the device call brought them back) into
   ``OUT/best.safetensors``;
2. score it on the validation split (``audiomamba evaluate``), to compare with the GPU machine's figure;
3. choose its event threshold on the first 400 validation clips: the best global event F1 over ``--grid``
   (``scripts/compare_eval.py``, then ``scripts/event_thresholds.py``);
4. score it on the test split, once, at that threshold;
5. write the float16 file (``scripts/ship_pretrained.py``) with the threshold and the file the stage started from
   in its provenance.  ``--no-ship`` stops after step 4.

The file the stage started from (``--init``, by default the shipped file) is copied to ``OUT/init.safetensors``
first, since the shipped file is what gets replaced.  Each step's output stays under ``OUT`` (``val/``,
``val400/``, ``thresholds.json``, ``test/``); ``OUT/summary.json`` gathers the figures.  A step that fails stops
the script with its own exit code and one line naming the step.  Missing parts: exit code 5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src/audiomamba/resources/pretrained/audiomamba_micro_v2-bank53.safetensors"
FIGURES = ("mAP", "mAUC", "d_prime", "micro_f1", "macro_f1", "event_f1_micro", "psds1")


def _step(name: str, args: list[str]) -> None:
    """Run one step (a Python module or script with this interpreter); on failure, name it and exit with its code."""
    done = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        print(f"ship_stage: {name} failed (exit {done.returncode}): {tail}", file=sys.stderr)
        raise SystemExit(done.returncode)


def _figures(summary: Path) -> dict:
    s = json.loads(summary.read_text())
    return {k: round(s[k], 4) for k in FIGURES if s.get(k) is not None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", required=True, help="folder with best.safetensors.part* from the device call")
    ap.add_argument("--bank", default=".bank", help="the whole bank (with its test stream)")
    ap.add_argument("--out", required=True, help="folder for the checkpoint and every step's figures")
    ap.add_argument("--init", default=str(SHIPPED), help="the file the stage started from (default: the shipped one)")
    ap.add_argument("--ship", default=str(SHIPPED), help="the float16 file to write (default: the shipped one)")
    ap.add_argument("--config", default="configs/pretrain_micro_v2_augment.yaml", help="the stage's config")
    ap.add_argument("--trained-on", required=True, help="the GPU the stage trained on, for the provenance")
    ap.add_argument("--threshold-split", default="validation:400", help="clips the event threshold is chosen on")
    ap.add_argument("--grid", default="0.3,0.4,0.5,0.6,0.7", help="event thresholds to try")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-ship", action="store_true", help="stop after scoring the test split")
    ap.add_argument("overrides", nargs="*", help="the stage's recipe, as recorded in the provenance")
    a = ap.parse_args(argv)

    parts = sorted(Path(a.parts).glob("best.safetensors.part*"))
    if not parts:
        print(f"ship_stage: {a.parts}: no best.safetensors.part* (the device call's files)", file=sys.stderr)
        return 5
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, init = out / "best.safetensors", out / "init.safetensors"
    with open(ckpt, "wb") as f:
        for p in parts:
            f.write(p.read_bytes())
    if not init.exists():  # a rerun keeps the copy made before the shipped file was replaced
        shutil.copyfile(a.init, init)

    evaluate = ["-m", "audiomamba", "evaluate", "--checkpoint", str(ckpt), "--data", a.bank, "--device", a.device]
    _step("validation", [*evaluate, "--split", "validation", "--out", str(out / "val")])
    _step("event threshold scores", [str(ROOT / "scripts/compare_eval.py"), "--checkpoint", str(ckpt), "--data",
                                     a.bank, "--split", a.threshold_split, "--out", str(out / "val400"), "--device",
                                     a.device])
    _step("event threshold", [str(ROOT / "scripts/event_thresholds.py"), "--steps", str(out / "val400/steps.npz"),
                              "--data", a.bank, "--split", a.threshold_split, "--grid", a.grid, "--out",
                              str(out / "thresholds.json")])
    thr = json.loads((out / "thresholds.json").read_text())
    best = float(thr["best_global"])
    grid_f1 = ", ".join(f"{float(t):g}: {f:.3f}" for t, f in thr["global"].items())
    _step("test", [*evaluate, "--split", "test", "--event-threshold", str(best), "--out", str(out / "test")])
    summary = {"checkpoint": str(ckpt), "validation": _figures(out / "val/summary.json"),
               "event_threshold": best, "event_f1_by_threshold": {t: round(f, 4) for t, f in thr["global"].items()},
               "test": _figures(out / "test/summary.json")}
    if not a.no_ship:
        chosen = (f"best global event F1 (micro, collar 0.2 s) on the clips {a.threshold_split}: "
                  f"{thr['global'][str(thr['best_global'])]:.3f} at {best:g} ({grid_f1}; scripts/event_thresholds.py)")
        _step("ship", [str(ROOT / "scripts/ship_pretrained.py"), "--checkpoint", str(ckpt), "--eval",
                       str(out / "test/summary.json"), "--bank", a.bank, "--config", a.config, "--out", a.ship,
                       "--trained-on", a.trained_on, "--event-threshold", f"{best:g}", "--event-threshold-from",
                       chosen, "--init-from", str(init), "--", *a.overrides])
        summary["shipped"] = a.ship
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
