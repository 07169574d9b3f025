"""Run the equal-budget comparison and the ablations of issue 17 concurrently on one GPU, within a wall-clock budget.

Called by scripts/compare_gpu.sh (which installs the wheels and packs the results); by hand:

    python scripts/compare_runs.py --runs runs/compare --budget 480 [--steps 240 --evals 3] [--workers 14]
        [--only NAME,...] [--cpu]

Jobs (each a process; a job starts when the jobs it needs have finished):

- ``train:NAME`` for every config of configs/compare/ and configs/ablate/ but the fine-tuning one: ``audiomamba
  train`` with ``--steps`` optimiser steps of the config's batch in ``--evals`` validation intervals (the
  checkpoint kept is the best on validation), a wall-clock cap (SIGINT at the cap, the best validated checkpoint
  so far is used; the steps done are recorded), its share of the loader workers.  A run that fails within its
  first 240 s with ``train.cuda_graph`` on is retried once without it.
- ``eval:NAME``: scripts/compare_eval.py on the test split of the run's data (once, after training).
- ``data:esc``: scripts/bank_tasks.py esc50 (the task of the held-out classes); the bank without them
  (scripts/bank_tasks.py exclude) is written before any job starts.
- Jobs start in order, slowest training first, the pretraining next; a GPU job waits while the running jobs'
  memory estimates (``MEM_GIB``) would pass ``--gpu-gib``.
- ``ft:pretrained``, ``ft:scratch``: the 5-fold fine-tuning (configs/ablate/finetune_heldout.yaml) from the
  ``pretrain_heldout`` run's checkpoint and from scratch; ``cv:...``: ``audiomamba evaluate --cv`` of their
  final checkpoints on the held-out folds.

``RUNS/jobs.json`` records each job's command, start, end, exit code, whether it hit its cap, and its GPU time:
``gpu_s`` is the job's share of the GPU, integrated over its life (1 / the number of GPU jobs running at each
moment; an estimate, the device does not account per process here), ``wall_s`` its wall time.  ``RUNS/gpu.csv``
samples nvidia-smi's utilisation and memory every 5 s.  ``--cpu`` (smoke test): device cpu, no CUDA graph, fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# expected training speed alone on an H200 (clips/s; the lead's and docs' measurements, rough for the peers):
# the loader-worker share follows it (a worker renders about 200 clips/s)
SPEED = {"audiomamba_nano": 347, "audiomamba_micro": 215, "audiomamba_tiny": 150, "audiomamba_tiny_v2": 1733,
         "audiomamba_micro_v2": 1280, "swin_t_htsat_like": 1549, "vit_b_ast_like": 413, "cnn14_panns_like": 1500}
# GPU memory a training run holds at batch 64 with CUDA graphs (GiB; docs/benchmarks.md's peaks where measured,
# estimates for tiny, micro_v2 and the CNN): a job starts only while the running jobs' sum stays under --gpu-gib
MEM_GIB = {"audiomamba_nano": 7.5, "audiomamba_micro": 13.0, "audiomamba_tiny": 22.0, "audiomamba_tiny_v2": 10.0,
           "audiomamba_micro_v2": 6.5, "swin_t_htsat_like": 9.0, "vit_b_ast_like": 29.0, "cnn14_panns_like": 10.0}
EVAL_GIB, FT_GIB = 4.0, 3.0


class Job:
    def __init__(self, name: str, cmd: list[str], log: Path, gpu: bool = True, needs: tuple[str, ...] = (),
                 cap_at: float | None = None, retry: list[str] | None = None, outputs: Path | None = None,
                 gib: float = 0.0) -> None:
        self.name, self.cmd, self.log, self.gpu, self.needs = name, cmd, log, gpu, needs
        self.gib = gib if gpu else 0.0
        self.held = False
        self.cap_at = cap_at  # seconds after the start of the budget at which the job is interrupted
        self.retry = retry  # extra arguments for one retry after an early failure
        self.outputs = outputs
        self.proc: subprocess.Popen | None = None
        self.start = self.end = None
        self.rc: int | None = None
        self.capped = False
        self.gpu_s = 0.0
        self.attempts = 0
        self.skipped = ""

    def launch(self, t0: float, env: dict) -> None:
        self.attempts += 1
        self.log.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.log, "a")
        f.write(f"$ {' '.join(self.cmd)}\n")
        f.flush()
        self.proc = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                     start_new_session=True)
        f.close()
        self.start = time.time() - t0 if self.start is None else self.start
        self.launched_at = time.time()
        self.interrupted_at = None

    def record(self) -> dict:
        return {"name": self.name, "cmd": self.cmd, "start_s": self.start, "end_s": self.end, "rc": self.rc,
                "capped": self.capped, "gpu_s": round(self.gpu_s, 1), "attempts": self.attempts,
                "wall_s": None if self.start is None or self.end is None else round(self.end - self.start, 1),
                "skipped": self.skipped, "log": str(self.log)}


def _config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def plan(a: argparse.Namespace) -> list[Job]:
    runs = Path(a.runs)
    data = runs / "data"
    only = set(a.only.split(",")) if a.only else None
    compare = sorted((ROOT / "configs/compare").glob("*.yaml"))
    ablate = [ROOT / "configs/ablate" / f"{n}.yaml" for n in ("micro_v2_extra_blocks", "micro_v2_cutmix",
                                                              "micro_v2_mixup", "pretrain_heldout")]
    trains = [p for p in compare + ablate if only is None or p.stem in only]
    # slowest first (they set the wall time), the pretraining next (the fine-tuning waits for it)
    trains.sort(key=lambda p: (SPEED.get(_config(p)["model"]["name"], 1000) if p.stem != "pretrain_heldout" else 1000,
                               p.stem.startswith("micro_v2_"), p.stem))
    budget = a.budget
    # the fine-tuning chain needs about ft_reserve s after its pretraining; evaluation eval_reserve s after training
    train_cap = budget - a.eval_reserve
    pre_cap = budget - a.ft_reserve
    speeds = {p.stem: SPEED.get(_config(p)["model"]["name"], 1000) for p in trains}
    total_speed = sum(speeds.values()) or 1
    jobs: list[Job] = []
    common = [] if not a.cpu else ["train.device=cpu", "train.cuda_graph=false", "train.precision=fp32"]
    for p in trains:
        cfg = _config(p)
        batch = cfg["train"]["batch_size"]
        for ov in a.override:  # a batch-size override changes the clips per validation interval
            if ov.startswith("train.batch_size="):
                batch = int(ov.split("=", 1)[1])
        per_eval = max(1, a.steps // a.evals)
        workers = max(1, round(a.workers * speeds[p.stem] / total_speed)) if not a.cpu else 0
        out = runs / p.stem
        cmd = [PY, "-m", "audiomamba", "train", "--config", str(p.relative_to(ROOT)), f"train.output_dir={out}",
               f"sampling.epoch_size={per_eval * batch}", f"train.epochs={a.evals}", f"data.num_workers={workers}",
               *common, *a.override]
        root = cfg["data"]["root"]
        if p.stem == "pretrain_heldout":
            needs, cap, root = (), pre_cap, str(data / "bank43")  # main() writes bank43 before the jobs start
            cmd.append(f"data.root={root}")
        else:
            needs, cap = (), train_cap
        if a.bank and root == ".bank":
            cmd.append(f"data.root={a.bank}")
            root = a.bank
        if a.val_split:
            cmd.append(f"data.validation={a.val_split}")
        gib = MEM_GIB.get(cfg["model"]["name"], 10.0) + (1.0 if cfg["model"].get("extra_transformer_blocks") else 0.0)
        jobs.append(Job(f"train:{p.stem}", cmd, runs / "logs" / f"train_{p.stem}.log", needs=needs, cap_at=cap,
                        retry=None if a.cpu else ["train.cuda_graph=false"], outputs=out, gib=gib))
        ev = [PY, "scripts/compare_eval.py", "--checkpoint", str(out / "best.safetensors"), "--data", root,
              "--split", a.test_split, "--out", str(out / "eval_test"), "--workers", str(max(workers, 1)),
              "--device", "cpu" if a.cpu else "auto"]
        jobs.append(Job(f"eval:{p.stem}", ev, runs / "logs" / f"eval_{p.stem}.log", needs=(f"train:{p.stem}",),
                        cap_at=budget - 5, gib=EVAL_GIB))
    bank = a.bank or ".bank"
    if only is None or "finetune" in only:
        jobs.append(Job("data:esc", [PY, "scripts/bank_tasks.py", "esc50", "--bank", bank, "--out", str(data / "esc_heldout"),
                                     "--per-class", str(a.per_class)], runs / "logs" / "data_esc.log", gpu=False))
        ft_cfg = "configs/ablate/finetune_heldout.yaml"
        folds = ",".join(str(k) for k in range(1, 6))
        ft_extra = [f"train.epochs={a.ft_epochs}"] + (["train.device=cpu", "train.cuda_graph=false",
                                                        "train.precision=fp32", "data.num_workers=0"] if a.cpu else [])
        for arm in ("pretrained", "scratch"):
            out = runs / f"finetune_{arm}"
            init = [f"model.init_checkpoint={runs / 'pretrain_heldout' / 'best.safetensors'}"] if arm == "pretrained" else []
            needs = ("data:esc", "train:pretrain_heldout") if arm == "pretrained" else ("data:esc",)
            cmd = [PY, "-m", "audiomamba", "train", "--config", ft_cfg, "--cv-folds", folds, f"train.output_dir={out}",
                   f"data.root={data / 'esc_heldout'}", *init, *ft_extra, *a.ft_override]
            jobs.append(Job(f"ft:{arm}", cmd, runs / "logs" / f"finetune_{arm}.log", needs=needs, cap_at=budget - 25,
                            retry=None if a.cpu else ["train.cuda_graph=false"], outputs=out, gib=FT_GIB))
            cv = [PY, "-m", "audiomamba", "evaluate", "--checkpoint", str(out / "fold{fold}" / "final.safetensors"),
                  "--data", str(data / "esc_heldout"), "--format", "esc50", "--cv", folds, "--no-events",
                  "--batch-size", "32", "--out", str(out / "eval_cv"), "--device", "cpu" if a.cpu else "auto"]
            jobs.append(Job(f"cv:{arm}", cv, runs / "logs" / f"cv_{arm}.log", needs=(f"ft:{arm}",), cap_at=budget - 3,
                            gib=EVAL_GIB))
    return jobs


def _signal(job: Job, sig: int) -> None:
    try:
        if sig == signal.SIGINT:
            os.kill(job.proc.pid, sig)  # the trainer stops; its loader workers follow it
        else:
            os.killpg(job.proc.pid, sig)
    except ProcessLookupError:
        pass


def _ready(job: Job, jobs: dict[str, Job]) -> str | None:
    """'go', 'wait', or the reason it cannot run (a job it needs failed)."""
    for n in job.needs:
        dep = jobs.get(n)
        if dep is None:
            continue
        if dep.end is None:
            return "wait"
        if dep.skipped or (dep.rc not in (0,) and not (dep.capped and dep.outputs and _has_checkpoint(dep))):
            return f"needs {n}, which did not finish"
    return "go"


def _has_checkpoint(job: Job) -> bool:
    o = job.outputs
    return o is not None and ((o / "best.safetensors").is_file() or any(o.glob("fold*/final.safetensors")))


def run(jobs: list[Job], budget: float, runs: Path, cpu: bool, gpu_gib: float = 1e9) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    by_name = {j.name: j for j in jobs}
    t0 = time.time()
    pending = list(jobs)
    running: list[Job] = []
    gpu_log = None if cpu else open(runs / "gpu.csv", "w")
    last_sample = -10.0
    last_tick = time.time()
    while pending or running:
        now = time.time()
        el = now - t0
        # GPU shares of the last tick
        gpu_jobs = [j for j in running if j.gpu]
        for j in gpu_jobs:
            j.gpu_s += (now - last_tick) / len(gpu_jobs)
        last_tick = now
        for j in list(pending):
            state = _ready(j, by_name)
            if state == "wait":
                continue
            held_gib = sum(r.gib for r in running)
            if state == "go" and j.gib and held_gib and held_gib + j.gib > gpu_gib:
                if not j.held:  # it keeps its place in the queue
                    print(f"[{el:6.1f}s] hold {j.name}: GPU memory ({held_gib:.0f} + {j.gib:.0f} GiB > {gpu_gib:.0f})",
                          flush=True)
                    j.held = True
                continue
            pending.remove(j)
            if state != "go":
                j.skipped, j.end = state, el
                print(f"[{el:6.1f}s] skip {j.name}: {state}", flush=True)
                continue
            if j.name.startswith("eval:") and not Path(j.cmd[j.cmd.index("--checkpoint") + 1]).is_file():
                ck = Path(j.cmd[j.cmd.index("--checkpoint") + 1])
                fin = ck.with_name("final.safetensors")
                if fin.is_file():
                    j.cmd[j.cmd.index("--checkpoint") + 1] = str(fin)
                else:
                    j.skipped, j.end = "no checkpoint (no validation finished)", el
                    print(f"[{el:6.1f}s] skip {j.name}: no checkpoint", flush=True)
                    continue
            if j.name.startswith("cv:"):
                tmpl = j.cmd[j.cmd.index("--checkpoint") + 1]
                folds = [k for k in j.cmd[j.cmd.index("--cv") + 1].split(",") if Path(tmpl.format(fold=k)).is_file()]
                if not folds:
                    j.skipped, j.end = "no fold finished", el
                    print(f"[{el:6.1f}s] skip {j.name}: no fold finished", flush=True)
                    continue
                j.cmd[j.cmd.index("--cv") + 1] = ",".join(folds)
            if j.cap_at is not None and el > j.cap_at - 5:
                j.skipped, j.end = "no time left", el
                print(f"[{el:6.1f}s] skip {j.name}: no time left", flush=True)
                continue
            j.launch(t0, env)
            running.append(j)
            print(f"[{el:6.1f}s] start {j.name}", flush=True)
        for j in list(running):
            rc = j.proc.poll()
            if rc is None:
                if j.cap_at is not None and el > j.cap_at and j.interrupted_at is None:
                    j.capped, j.interrupted_at = True, now
                    print(f"[{el:6.1f}s] cap {j.name}: interrupting", flush=True)
                    _signal(j, signal.SIGINT)
                elif j.interrupted_at is not None and now - j.interrupted_at > 20:
                    _signal(j, signal.SIGKILL)
                continue
            running.remove(j)
            if rc != 0 and not j.capped and j.retry and j.attempts == 1 and now - j.launched_at < 240 \
                    and (j.cap_at is None or el < j.cap_at - 60):
                print(f"[{el:6.1f}s] {j.name} failed (rc {rc}) after {now - j.launched_at:.0f} s: retrying with "
                      f"{' '.join(j.retry)}", flush=True)
                j.cmd = j.cmd + j.retry
                j.launch(t0, env)
                running.append(j)
                continue
            try:  # the trainer's loader workers, if any outlived it
                os.killpg(j.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            j.rc, j.end = rc, el
            print(f"[{el:6.1f}s] end {j.name}: rc {rc}{' (capped)' if j.capped else ''}, {j.end - j.start:.0f} s, "
                  f"GPU share {j.gpu_s:.0f} s", flush=True)
        if gpu_log is not None and el - last_sample >= 5:
            last_sample = el
            try:
                q = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
                gpu_log.write(f"{el:.0f},{len([r for r in running if r.gpu])},{q}\n")
                gpu_log.flush()
            except (OSError, subprocess.SubprocessError):
                pass
        (runs / "jobs.json").write_text(json.dumps({"budget_s": budget, "elapsed_s": round(time.time() - t0, 1),
                                                    "jobs": [x.record() for x in jobs]}, indent=1))
        time.sleep(0.5)
    if gpu_log is not None:
        gpu_log.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/compare", help="where the runs go (relative to the repository root)")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for everything, from now")
    ap.add_argument("--steps", type=int, default=200, help="optimiser steps of every training run")
    ap.add_argument("--evals", type=int, default=4, help="validations per run (the steps are split into as many epochs)")
    ap.add_argument("--workers", type=int, default=14, help="loader workers shared by the concurrent runs")
    ap.add_argument("--eval-reserve", type=float, default=70.0, help="seconds kept after the training cap for testing")
    ap.add_argument("--ft-reserve", type=float, default=170.0, help="seconds kept after the pretraining cap for fine-tuning")
    ap.add_argument("--ft-epochs", type=int, default=5, help="fine-tuning epochs of 20 steps per fold")
    ap.add_argument("--per-class", type=int, default=10, help="clips per held-out class in the fine-tuning task")
    ap.add_argument("--bank", default=None, help="the bank (default: the configs' .bank)")
    ap.add_argument("--val-split", default=None, help="validation split override, e.g. validation:64")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--only", default=None, help="comma-separated run names (config stems; 'finetune' for the fine-tuning)")
    ap.add_argument("--gpu-gib", type=float, default=None,
                    help="GPU memory the concurrent jobs may hold by their estimates (MEM_GIB; default 118 of ~139; "
                         "none with --cpu)")
    ap.add_argument("--cpu", action="store_true", help="smoke test on the CPU")
    ap.add_argument("--override", nargs="*", default=[], help="config overrides for every training run but the fine-tuning")
    ap.add_argument("--ft-override", nargs="*", default=[], help="config overrides for the fine-tuning runs")
    a = ap.parse_args(argv)
    os.chdir(ROOT)  # the configs' paths are relative to the repository root
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    # the bank without the held-out classes: a second's work, done before the jobs so that the pretraining
    # starts with the first ones
    bank43 = runs / "data" / "bank43"
    subprocess.run([PY, "scripts/bank_tasks.py", "exclude", "--bank", a.bank or ".bank", "--out", str(bank43)],
                   check=True, stdout=subprocess.DEVNULL)
    jobs = plan(a)
    print(f"{len(jobs)} jobs, budget {a.budget:.0f} s, {a.steps} steps per run in {a.evals} validation intervals",
          flush=True)
    run(jobs, a.budget, runs, a.cpu, a.gpu_gib if a.gpu_gib is not None else (1e9 if a.cpu else 118.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
