"""The tables and the plot of issue 17's comparison and ablations, from the runs of scripts/compare_gpu.sh.

    python scripts/collect_results.py --runs runs/compare --out runs/compare_out [--events --bank .bank]
    python scripts/collect_results.py --tar OUT/runs.tar.gz OUT/steps_*.tar --out results/ --events --bank .bank

Reads each run's trainer outputs (``config.json``, ``metrics.jsonl``, ``summary.json``, the log), its test scores
(``eval_test/summary.json`` of scripts/compare_eval.py), the fine-tuning folds (``finetune_*/eval_cv/cv_summary.json``)
and ``jobs.json`` (wall and GPU-share seconds), and writes to ``--out``:

- ``results.md``: the comparison table (test mAP, mAUC, d', micro F1, event F1, PSDS1, params, steps done, GPU
  minutes), the ablation deltas against the base recipe (audiomamba_micro_v2), and pretraining vs scratch
  (accuracy mean and std over the 5 folds);
- ``results.json``: the same numbers;
- ``map_vs_params.png``: test mAP against parameters.

``--plot-also FILE``: the comparison rows of results collected before (a ``results.json`` of this script, or
``bench/results/compare_h200.json``) join this run's in the plot, where their run names are not in this run.

``--events``: event F1 and PSDS1 from the step logits (``eval_test/steps.npz``) for runs whose test summary
lacks them (``sed_scores_eval`` was missing where they ran); needs ``sed_scores_eval`` here and the bank
(``--bank``) for the reference events.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tarfile
import tempfile
from pathlib import Path

BASE = "audiomamba_micro_v2"
COMPARE = ["audiomamba_nano", "audiomamba_micro", "audiomamba_tiny", "audiomamba_tiny_v2", "audiomamba_micro_v2",
           "swin_t_htsat_like", "vit_b_ast_like", "cnn14_panns_like"]
ABLATIONS = {"micro_v2_extra_blocks": "+ 2 transformer blocks", "micro_v2_cutmix": "+ CutMix (p 0.5)",
             "micro_v2_mixup": "+ mixup (spectrogram, alpha 0.5)"}
METRICS = ("mAP", "mAUC", "d_prime", "micro_f1", "event_f1_micro", "psds1")


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def _last_logged_step(log: Path) -> int | None:
    try:
        steps = re.findall(r"step (\d+)/(\d+)", log.read_text(errors="replace"))
    except OSError:
        return None
    return int(steps[-1][0]) if steps else None


def run_record(runs: Path, name: str, jobs: dict) -> dict | None:
    d = runs / name
    cfg = _json(d / "config.json")
    if cfg is None:
        return None
    train_job, eval_job = jobs.get(f"train:{name}", {}), jobs.get(f"eval:{name}", {})
    curve = _jsonl(d / "metrics.jsonl")
    summary = _json(d / "summary.json") or {}
    test = _json(d / "eval_test" / "summary.json") or {}
    tc, sc = cfg["train"], cfg["sampling"]
    planned = tc["epochs"] * ((sc.get("epoch_size") or 0) // tc["batch_size"]) or None
    steps = summary.get("steps") or _last_logged_step(runs / "logs" / f"train_{name}.log") or \
        (curve[-1]["step"] if curve else None)
    best = max(curve, key=lambda r: r["mAP"]) if curve else None
    gpu_s = (train_job.get("gpu_s") or 0) + (eval_job.get("gpu_s") or 0)
    rec = {"run": name, "model": cfg["model"]["name"], "layout": cfg["model"]["layout"], "head": cfg["model"]["head"],
           "params": test.get("params"), "steps_planned": planned, "steps_done": steps, "batch": tc["batch_size"],
           "best_val_mAP": best["mAP"] if best else None, "best_val_step": best["step"] if best else None,
           "val_curve": [(r["step"], round(r["mAP"], 4)) for r in curve],
           "train_wall_s": train_job.get("wall_s"), "train_capped": train_job.get("capped"),
           "gpu_min": round(gpu_s / 60, 2) if gpu_s else None, "train_rc": train_job.get("rc"),
           "test_split": test.get("split"), "test_clips": test.get("clips")}
    rec.update({k: test.get(k) for k in METRICS})
    rec["events_from"] = test.get("events_from")
    return rec


def add_events(rec: dict, runs: Path, bank: str | None) -> None:
    """Event F1 and PSDS1 from the step logits (``steps.npz``), where the test summary lacks them."""
    if rec.get("event_f1_micro") is not None or rec.get("test_split") is None or rec["run"] == "pretrain_heldout":
        return
    npz = runs / rec["run"] / "eval_test" / "steps.npz"
    if not npz.is_file() or not bank:
        return
    from audiomamba.evaluation import event_metrics

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_eval import step_scores

    try:
        fw, hop, gt, dur, names = step_scores(npz, bank, rec["test_split"], "bank")
    except ValueError:
        return
    try:
        m = event_metrics(fw, hop, gt, dur, names)
    except ImportError:
        return
    rec["event_f1_micro"], rec["psds1"] = m["event_f1_micro"], m.get("psds1")
    rec["events_from"] = "step logits mapped onto the frames, computed by collect_results.py"


def finetune(runs: Path, jobs: dict) -> dict:
    out = {}
    for arm in ("pretrained", "scratch"):
        cv = _json(runs / f"finetune_{arm}" / "eval_cv" / "cv_summary.json")
        job = jobs.get(f"ft:{arm}", {})
        if cv is None:
            out[arm] = {"status": job.get("skipped") or f"no result (rc {job.get('rc')})"}
            continue
        acc = cv.get("top1_accuracy", {})
        out[arm] = {"accuracy_mean": acc.get("mean"), "accuracy_std": acc.get("std"),
                    "folds": {k: v.get("top1_accuracy") for k, v in cv.get("folds", {}).items()},
                    "mAP_mean": cv.get("mAP", {}).get("mean"), "gpu_min": round((job.get("gpu_s") or 0) / 60, 2),
                    "capped": job.get("capped")}
    return out


def _f(v, nd=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(comp: list[dict], abl: list[dict], ft: dict, pre: dict | None, meta: dict) -> str:
    first = (comp + abl + [pre or {}])[0]
    lines = ["# Equal-budget comparison and ablations (issue 17)", "",
             f"Budget: {meta.get('budget_s')} s for everything, {meta.get('elapsed_s')} s used; every run "
             f"{first.get('steps_planned', '?')} steps of {first.get('batch', '?')} clips, "
             "trained concurrently on one GPU; checkpoint selected on validation, test split scored once. "
             "GPU min: the run's share of the GPU (1/N while N jobs ran), training + testing.", "",
             "| model | layout | params (M) | test mAP | mAUC | d' | micro F1 | event F1 | PSDS1 | steps done | "
             "best val mAP (step) | GPU min |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in comp:
        params = _f(r["params"] / 1e6, 1) if r.get("params") else "-"
        steps = f"{_f(r['steps_done'])}/{_f(r['steps_planned'])}" + (" (cap)" if r.get("train_capped") else "")
        lines.append(f"| {r['run']} | {r['layout']} | {params} | {_f(r['mAP'])} | {_f(r['mAUC'])} | {_f(r['d_prime'], 2)} | "
                     f"{_f(r['micro_f1'])} | {_f(r['event_f1_micro'])} | {_f(r['psds1'])} | {steps} | "
                     f"{_f(r['best_val_mAP'])} ({_f(r['best_val_step'])}) | {_f(r['gpu_min'], 2)} |")
    base = next((r for r in comp if r["run"] == BASE), None)
    lines += ["", f"## Ablations: deltas against the base recipe ({BASE})", "",
              "| change | test mAP | delta mAP | delta mAUC | delta event F1 | steps done |", "|---|---|---|---|---|---|"]
    for r in abl:
        def delta(k):
            if base is None or r.get(k) is None or base.get(k) is None:
                return "-"
            return f"{r[k] - base[k]:+.3f}"
        lines.append(f"| {ABLATIONS.get(r['run'], r['run'])} | {_f(r['mAP'])} | {delta('mAP')} | {delta('mAUC')} | "
                     f"{delta('event_f1_micro')} | {_f(r['steps_done'])}/{_f(r['steps_planned'])} |")
    lines += ["", "## Pretraining vs scratch on 10 held-out classes (ESC-50-shaped, 5 folds, accuracy)", ""]
    if pre:
        lines.append(f"Pretraining: {BASE} on the bank without the held-out classes, {_f(pre.get('steps_done'))} steps, "
                     f"test mAP {_f(pre.get('mAP'))} on its 43 classes.")
        lines.append("")
    lines += ["| start | accuracy mean | std over folds | per fold |", "|---|---|---|---|"]
    for arm, v in ft.items():
        if "status" in v:
            lines.append(f"| {arm} | - | - | {v['status']} |")
        else:
            folds = ", ".join(_f(x) for x in v["folds"].values())
            lines.append(f"| {arm} | {_f(v['accuracy_mean'])} | {_f(v['accuracy_std'])} | {folds} |")
    lines += ["", "ImageNet initialisation (model.pretrained_backbone) stays implemented and parity-tested; its benefit "
              "cannot be measured here without the ImageNet weights."]
    return "\n".join(lines) + "\n"


def plot(comp: list[dict], path: Path) -> list[str]:
    """Test mAP against parameters for the rows of ``comp`` that have both; returns the runs plotted (none
    without matplotlib)."""
    pts = [r for r in comp if r.get("params") and r.get("mAP") is not None]
    if not pts:
        return []
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot (run collect_results.py again where it is)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    placed: list[tuple[float, float]] = []
    for r in sorted(pts, key=lambda r: r["params"]):
        peer = not r["model"].startswith("audiomamba")
        x, y = r["params"] / 1e6, r["mAP"]
        ax.scatter(x, y, marker="s" if peer else "o", color="tab:gray" if peer else "tab:blue")
        # a label near an earlier point (within 25% in params and 0.02 in mAP) goes below it instead of above
        near = sum(abs(math.log(x / px)) < 0.22 and abs(y - py) < 0.02 for px, py in placed)
        ax.annotate(r["run"].replace("audiomamba_", "AuM "), (x, y), fontsize=8,
                    xytext=(4, 3 - 11 * near), textcoords="offset points")
        placed.append((x, y))
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions, log scale)")
    ax.set_ylabel("test mAP")
    ax.set_title("Equal budget: test mAP vs parameters (circles: Audio Mamba, squares: peers)", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return [r["run"] for r in pts]


def earlier_rows(files: list[Path], skip: set[str]) -> list[dict]:
    """The comparison rows of results collected before (their ``comparison`` lists), except runs named in
    ``skip``; the first file naming a run wins."""
    rows: list[dict] = []
    seen = set(skip)
    for f in files:
        data = _json(f)
        if data is None:
            raise SystemExit(f"error: --plot-also {f}: not a readable results JSON")
        for r in data.get("comparison", []):
            if r.get("run") not in seen:
                rows.append(r)
                seen.add(r.get("run"))
    return rows


def collect(runs: Path, out: Path, events: bool = False, bank: str | None = None,
            plot_also: list[Path] | None = None) -> dict:
    meta = _json(runs / "jobs.json") or {}
    jobs = {j["name"]: j for j in meta.get("jobs", [])}
    comp = [r for r in (run_record(runs, n, jobs) for n in COMPARE) if r]
    abl = [r for r in (run_record(runs, n, jobs) for n in ABLATIONS) if r]
    pre = run_record(runs, "pretrain_heldout", jobs)
    if events:
        for r in comp + abl:
            add_events(r, runs, bank)
    ft = finetune(runs, jobs)
    out.mkdir(parents=True, exist_ok=True)
    result = {"budget_s": meta.get("budget_s"), "elapsed_s": meta.get("elapsed_s"), "comparison": comp,
              "ablations": abl, "pretrain_heldout": pre, "finetune": ft,
              "jobs": [{k: j.get(k) for k in ("name", "rc", "capped", "wall_s", "gpu_s", "skipped")} for j in jobs.values()]}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    md = markdown(comp, abl, ft, pre, meta)
    (out / "results.md").write_text(md)
    extra = earlier_rows(plot_also or [], {r["run"] for r in comp})
    result["plot"] = plot(comp + extra, out / "map_vs_params.png")
    print(md)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=None, help="the runs folder of scripts/compare_runs.py")
    ap.add_argument("--tar", nargs="+", default=None,
                    help="or the runs.tar.gz (and steps_*.tar) that scripts/compare_gpu.sh wrote")
    ap.add_argument("--out", required=True)
    ap.add_argument("--events", action="store_true", help="event metrics from the step logits where missing")
    ap.add_argument("--bank", default=None, help="the bank (reference events for --events)")
    ap.add_argument("--plot-also", nargs="+", type=Path, default=[],
                    help="results JSON files whose comparison rows join this run's in the plot")
    a = ap.parse_args(argv)
    if not a.runs and not a.tar:
        ap.error("give --runs or --tar")
    if a.tar:
        tmp = tempfile.mkdtemp(prefix="compare_")
        for path in a.tar:
            with tarfile.open(path) as t:
                t.extractall(tmp, filter="data")
        found = [p.parent for p in Path(tmp).rglob("jobs.json")]
        if not found:
            raise SystemExit(f"error: no jobs.json in {a.tar}")
        runs = found[0]
    else:
        runs = Path(a.runs)
    collect(runs, Path(a.out), a.events, a.bank, a.plot_also)
    return 0


if __name__ == "__main__":
    sys.exit(main())
