"""The training loop: ``train(config)``.

One optimiser step = ``optim.accumulate`` micro-batches of ``train.batch_size`` examples (global, split over the
ranks).  Every ``train.checkpoint_every`` steps (and at each epoch's end) ``last.pt`` is written atomically with
the full state (model, optimizer, AMP scaler, EMA, sampler position, RNG states of every rank, best score);
``--resume`` restores it and continues exactly.  The best validation mAP gives ``best.safetensors``, the end of
training ``final.safetensors`` (both loadable with :func:`audiomamba.checkpoint.load`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiomamba.checkpoint import CheckpointError, read_meta, save_model
from audiomamba.utils.io import atomic_write
from audiomamba.datasets import ClipDataset, ClipSet, DatasetError, collate, open_split
from audiomamba.datasets.augment import cutmix, mix_targets, mix_waves, sample_lambda
from audiomamba.datasets.sampler import BatchSampler
from audiomamba.evaluation.metrics import tagging_metrics
from audiomamba.models.heads import logits_to_scores
from audiomamba.utils import distributed as D
from audiomamba.training.config import Config, config_to_dict
from audiomamba.training.step import AudioMambaLogits, check_graphable
from audiomamba.utils.cuda_graphs import GraphedTraining
from audiomamba.training.optim import EMA, lr_factor, param_groups

log = logging.getLogger("audiomamba.train")

STATE_FORMAT = "audiomamba-train-state"

__all__ = ["train", "build_model", "predict", "load_state", "TrainResult"]


# ----------------------------------------------------------------------------- model
def build_model(cfg: Config, num_classes: int) -> nn.Module:
    from audiomamba import create_model

    m = cfg.model
    args = dict(num_classes=num_classes, head=m.head, layout=m.layout, extra_transformer_blocks=m.extra_transformer_blocks,
                sample_rate=m.sample_rate, spec_augment=m.spec_augment)
    if m.drop_path_rate is not None:
        args["drop_path_rate"] = m.drop_path_rate
    if m.pretrained_backbone:
        if not Path(m.pretrained_backbone).is_file():
            raise FileNotFoundError(f"model.pretrained_backbone: file not found: {m.pretrained_backbone}")
        args.update(pretrained_backbone=m.pretrained_backbone, stem_adapt=m.stem_adapt)
    model = create_model(m.name, **args)
    if m.pretrained_backbone:  # keep the config rebuildable without the ImageNet file
        model.config["args"].pop("pretrained_backbone", None)
        model.config["args"].pop("stem_adapt", None)
    if m.init_checkpoint:
        init_from_checkpoint(model, m.init_checkpoint)
    return model


def init_from_checkpoint(model: nn.Module, path: str) -> list[str]:
    """Fine-tuning: load a tagging checkpoint's weights into ``model``; the head is dropped when its shape
    differs (new classes).  A checkpoint of another architecture is an error.  Returns the dropped keys."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    if meta["model"]["name"] != model.config["name"]:
        raise CheckpointError(f"{path}: a {meta['model']['name']!r} checkpoint cannot initialise a {model.config['name']!r} model")
    state = load_file(str(path))
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k.startswith("head.") and (k not in own or own[k].shape != v.shape)]
    for k in dropped:
        del state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not (k.startswith("head.") and dropped)] + list(unexpected)
    if bad:
        raise CheckpointError(f"{path}: weights do not fit {model.config['name']} with these settings: {bad[:6]}")
    if dropped:
        log.info("fine-tuning from %s: head dropped (%d tensors), %d classes now", path, len(dropped), model.num_classes)
    return dropped


# ----------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict(model: nn.Module, cs: ClipSet, batch_size: int, device: torch.device, multi_label: bool,
            eval_seconds: float | None = None, framewise: bool = False, tta_shifts: int = 1,
            num_workers: int = 0, progress: bool = False, on_error=None) -> dict:
    """Scores of every clip of ``cs``, computed on this rank's share and gathered from all ranks.

    Returns ``{"scores": (N, C), "targets": (N, C), "valid": (N,) bool, "framewise": {i: (frames, C)} | None,
    "errors": [...]}`` on every rank.
    """
    model.eval()
    sr = model.sample_rate
    ds = ClipDataset(cs, sr, train=False, eval_seconds=eval_seconds,
                     min_seconds=model.frontend.min_samples / sr + 1e-3)
    mine = list(range(D.rank(), len(cs), D.world_size()))
    batches = [mine[i: i + batch_size] for i in range(0, len(mine), batch_size)]
    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    results, errors = {}, []
    it = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc="evaluate", unit="batch", leave=False)
    for batch in it:
        errors += batch["errors"]
        if on_error:
            for e in batch["errors"]:
                on_error(e)
        if batch["wave"] is None:
            continue
        wave = batch["wave"].to(device)
        logits, fw = 0.0, 0.0
        for s in range(tta_shifts):
            w = wave if s == 0 else torch.roll(wave, s * (sr // 100), dims=1)
            out = model(w)
            logits = logits + out.logits.float()
            if framewise and out.framewise_logits is not None:
                fw = fw + out.framewise_logits.float()
        logits = logits / tta_shifts
        scores = logits_to_scores(logits, multi_label)
        fwp = logits_to_scores(fw / tta_shifts, multi_label).cpu().numpy() if framewise and not isinstance(fw, float) else None
        for j, idx in enumerate(batch["index"].tolist()):
            entry = {"s": scores[j].cpu().numpy(), "t": batch["target"][j].numpy()}
            if fwp is not None:
                frames = model.frontend.num_frames(int(batch["lengths"][j]))
                entry["f"] = fwp[j, :frames]
            results[idx] = entry
    gathered = D.gather_objects((results, errors))
    allres, allerr = {}, []
    for r, e in gathered:
        allres.update(r)
        allerr += e
    n, c = len(cs), cs.num_classes
    scores, targets, valid = np.zeros((n, c), np.float32), np.zeros((n, c), np.float32), np.zeros(n, bool)
    fws = {} if framewise else None
    for idx, e in allres.items():
        scores[idx], targets[idx], valid[idx] = e["s"], e["t"], True
        if framewise and "f" in e:
            fws[idx] = e["f"]
    return {"scores": scores, "targets": targets, "valid": valid, "framewise": fws, "errors": allerr}


def evaluate_scores(pred: dict, multi_label: bool, threshold: float = 0.5) -> dict:
    v = pred["valid"]
    if not v.any():
        raise DatasetError("no clip of the evaluation set could be decoded")
    return tagging_metrics(pred["scores"][v], pred["targets"][v], threshold, multi_label)


# ----------------------------------------------------------------------------- state
def load_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an audiomamba training checkpoint")
    return state


def _rng_state(device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


class LossLog:
    """Training losses per optimiser step, read from the device one step late: reading a loss waits for the
    kernels that computed it, and reading it at once would leave the GPU idle while the host prepares the next
    step.  :meth:`flush` reads everything (before a checkpoint, a log line that must be exact, or the end)."""

    def __init__(self) -> None:
        self._micro: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None
        self.losses: list[float] = []  # one mean per completed optimiser step
        self.average: float | None = None  # exponential moving average of ``losses``

    def add(self, loss: torch.Tensor) -> None:
        """One micro-batch's loss (a 0-d tensor)."""
        self._micro.append(loss.detach().float())

    def end_step(self) -> None:
        """Close an optimiser step: its mean becomes pending; the previous step's is read."""
        mean = self._micro[0] if len(self._micro) == 1 else torch.stack(self._micro).mean()
        self._micro = []
        self.flush()
        self._pending = mean

    def flush(self) -> None:
        if self._pending is not None:
            v = float(self._pending)
            self._pending = None
            self.losses.append(v)
            self.average = v if self.average is None else 0.9 * self.average + 0.1 * v


class TrainResult(dict):
    """``{"output_dir", "steps", "best_mAP", "best_step", "final_metrics", "skipped_clips", "seconds"}``."""


def _autocast(device: torch.device, precision: str):
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# ----------------------------------------------------------------------------- training
def train(cfg: Config, resume: str | None = None) -> TrainResult:
    device, started = D.setup(cfg.train.device)
    try:
        return _train(cfg, resume, device)
    finally:
        if started:
            torch.distributed.destroy_process_group()


def _train(cfg: Config, resume: str | None, device: torch.device) -> TrainResult:
    t_start = time.time()
    rank, world = D.rank(), D.world_size()
    is_main = rank == 0
    tc, oc, ac, dc = cfg.train, cfg.optim, cfg.augment, cfg.data
    if tc.threads:
        torch.set_num_threads(tc.threads)
    out_dir = Path(tc.output_dir)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if tc.precision != "fp32" and device.type != "cuda":
        log.warning("train.precision=%s needs CUDA; training in fp32 on %s", tc.precision, device)
    if tc.batch_size % world:
        raise ValueError(f"train.batch_size={tc.batch_size} must be divisible by the number of processes ({world})")

    # data
    train_cs = open_split(dc.root, dc.train, dc.format, dc.labels, dc.fold, dc.val_fraction, dc.check_files)
    val_cs = None
    if dc.validation:
        val_cs = open_split(dc.root, dc.validation, dc.format, dc.labels, dc.fold, dc.val_fraction, dc.check_files)
        if val_cs.label_names != train_cs.label_names:
            raise DatasetError(f"{val_cs.name}: its label set differs from the training split's ({train_cs.name})")
    loss_kind = tc.loss if tc.loss != "auto" else ("bce" if train_cs.multi_label else "ce")
    multi_label = loss_kind == "bce"
    labels = train_cs.labels

    # model (identical initial weights on every rank)
    torch.manual_seed(tc.seed)
    model = build_model(cfg, train_cs.num_classes).to(device)
    if world > 1 and tc.sync_bn:
        model = D.convert_sync_batchnorm(model, device)
    raw_model = model
    sr = raw_model.sample_rate
    min_clip = raw_model.frontend.min_samples / sr
    if dc.clip_seconds < min_clip:
        raise ValueError(f"data.clip_seconds={dc.clip_seconds} is shorter than the model's minimum input ({min_clip:.3f} s)")
    per_rank = tc.batch_size // world
    sampler = BatchSampler(train_cs, per_rank, cfg.sampling.mode, cfg.sampling.epoch_size, tc.seed, rank, world)
    steps_per_epoch = sampler.steps_per_epoch // oc.accumulate
    if steps_per_epoch < 1:
        raise ValueError(f"an epoch has {sampler.steps_per_epoch} batches, fewer than optim.accumulate={oc.accumulate}")
    total_steps = steps_per_epoch * tc.epochs
    dataset = ClipDataset(train_cs, sr, train=True, clip_seconds=dc.clip_seconds, random_crop=ac.random_crop,
                          gain_db=ac.gain_db, time_shift=ac.time_shift)

    # fused: one kernel for the whole update on CUDA instead of a dozen multi-tensor launches (host time)
    optimizer = torch.optim.AdamW(param_groups(raw_model, oc.weight_decay), lr=oc.lr, betas=tuple(oc.betas), eps=oc.eps,
                                  fused=device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and tc.precision == "fp16")
    ema = EMA(raw_model, tc.ema_decay) if tc.ema_decay else None
    if world > 1:
        model = nn.parallel.DistributedDataParallel(raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    # torch.compile of the training forward (evaluation stays eager: its clip lengths vary); the Triton scan is a
    # custom op, so the graph has no breaks around it.  On an H100 it takes tiny_v2's step from 107 to 95 ms.
    train_forward = model if tc.compile == "off" else torch.compile(model, backend=tc.compile)
    use_graph = tc.cuda_graph
    if use_graph and device.type != "cuda":
        log.warning("train.cuda_graph needs CUDA; training eagerly on %s", device)
        use_graph = False
    if use_graph:
        if world > 1:
            raise ValueError("train.cuda_graph: CUDA-graph training runs in one process only; set it false with torchrun")
        check_graphable(raw_model, int(round(dc.clip_seconds * sr)))
    graphed = None  # GraphedTraining, captured below before any data loader thread exists

    step, epoch, micro = 0, 0, 0
    best = {"mAP": -1.0, "step": -1}
    skipped = 0
    if resume:
        state = load_state(resume)
        if state["num_classes"] != train_cs.num_classes or state["model_name"] != cfg.model.name:
            raise CheckpointError(f"{resume}: a {state['model_name']} checkpoint with {state['num_classes']} classes "
                                  f"cannot resume this run ({cfg.model.name}, {train_cs.num_classes} classes)")
        if state["world_size"] != world:
            log.warning("resuming a %d-process run with %d processes: data order continues, RNG streams differ",
                        state["world_size"], world)
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        step, epoch, micro = state["step"], state["epoch"], state["micro"]
        best, skipped = dict(state["best"]), state["skipped"]
        rngs = state["rng"]
        _set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0], device)
        if is_main:
            log.info("resumed from %s at step %d (epoch %d)", resume, step, epoch)
    else:
        torch.manual_seed(tc.seed * 1000 + rank)  # per-rank streams for SpecAugment / drop-path

    writer = None
    if is_main and tc.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"))
        except ImportError:
            log.info("tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)")
    if is_main:
        (out_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
        log.info("train: %d clips (%s), %d classes, %s loss; validation: %s; %d process(es), %d steps/epoch, %d steps",
                 len(train_cs), train_cs.name, train_cs.num_classes, loss_kind,
                 f"{len(val_cs)} clips" if val_cs else "none", world, steps_per_epoch, total_steps)

    def provenance(extra: dict) -> dict:
        return {"data": str(dc.root), "train_split": dc.train, "config": config_to_dict(cfg), "step": step,
                "epoch": epoch, "date": time.strftime("%Y-%m-%d"), **extra}

    def save_state() -> None:
        rngs = D.gather_objects(_rng_state(device))
        if not is_main:
            return
        sampler_state = {"epoch": epoch, "step": micro, "seed": tc.seed, "mode": cfg.sampling.mode}
        state = {"format": STATE_FORMAT, "version": 1, "step": step, "epoch": epoch, "micro": micro,
                 "model_name": cfg.model.name, "num_classes": train_cs.num_classes, "world_size": world,
                 "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                 "ema": ema.state_dict() if ema else {}, "sampler": sampler_state, "rng": rngs, "best": best,
                 "skipped": skipped, "config": json.dumps(config_to_dict(cfg))}
        atomic_write(out_dir / "last.pt", lambda tmp: torch.save(state, tmp))

    eval_model = None

    def run_validation() -> dict | None:
        nonlocal eval_model
        if val_cs is None:
            return None
        m = raw_model
        if ema is not None and tc.eval_with_ema:
            if eval_model is None:
                import copy

                eval_model = copy.deepcopy(raw_model)
            ema.copy_to(eval_model)
            m = eval_model
        pred = predict(m, val_cs, tc.eval_batch_size or per_rank, device, multi_label, dc.eval_seconds,
                       num_workers=dc.num_workers)
        model.train()
        metrics = evaluate_scores(pred, multi_label)
        metrics.pop("_per_class")
        return {"metrics": metrics, "model": m}

    pbar = None
    if is_main and tc.progress:
        from tqdm import tqdm

        pbar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    model.train()
    last_map = None
    metrics_log = open(out_dir / "metrics.jsonl", "a") if is_main else None
    stopped = False
    loader_gen = torch.Generator()
    loss_log = LossLog()
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision) if device.type == "cuda" else None
    if use_graph:
        # Captured here, on example inputs of the batches' shape, because a capture fails when another thread
        # calls CUDA meanwhile, as the data loader's memory-pinning thread does.
        n = int(round(dc.clip_seconds * sr))
        example = (torch.randn(per_rank, n, generator=torch.Generator().manual_seed(0)).mul_(0.1).to(device),)
        if ac.mixup == "spec" and per_rank > 1:
            example += (torch.full((per_rank,), 0.5, device=device),)
        graphed = GraphedTraining(AudioMambaLogits(raw_model), example, autocast_dtype)
        if is_main:
            log.info("train.cuda_graph: forward and backward captured for batches of %s", tuple(example[0].shape))
    eager_batches = 0
    while epoch < tc.epochs and not stopped:
        sampler.set_position(epoch, micro)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                             num_workers=dc.num_workers, generator=loader_gen,
                                             pin_memory=device.type == "cuda")
        for batch in loader:
            micro += 1
            for e in batch["errors"]:
                skipped += 1
                log.warning("skipped clip %s", e)
            if batch["wave"] is None:  # every clip of this rank's batch failed: a zero-weight dummy keeps ranks in step
                n = int(round(dc.clip_seconds * sr))
                batch = {"wave": torch.zeros(1, n), "target": torch.zeros(1, train_cs.num_classes), "weight": 0.0}
            wave, target = batch["wave"].to(device, non_blocking=True), batch["target"].to(device, non_blocking=True)
            gen = torch.Generator().manual_seed(int(np.random.default_rng([tc.seed, step, micro, rank]).integers(0, 2**62)))
            mix_lam = None
            if ac.cutmix_prob > 0:
                wave, lam = cutmix(wave, ac.cutmix_alpha, ac.cutmix_prob, gen)
                target = mix_targets(target, lam.to(device, non_blocking=True), "mix")
            # lam lives in pageable host memory: non_blocking keeps its copy from waiting for the queued GPU work
            if ac.mixup != "none" and wave.shape[0] > 1:
                lam = sample_lambda(wave.shape[0], ac.mixup_alpha, ac.mixup_prob, gen).to(device, non_blocking=True)
                target = mix_targets(target, lam, ac.mixup_targets)
                if ac.mixup == "wave":
                    wave = mix_waves(wave, lam)
                else:
                    mix_lam = lam
            last_micro = micro % oc.accumulate == 0
            sync = contextlib.nullcontext() if (last_micro or world == 1) else model.no_sync()
            inputs = (wave,) if mix_lam is None else (wave, mix_lam)
            with sync:
                if graphed is not None and graphed.accepts(*inputs):
                    logits = graphed(*inputs).float()
                else:  # eager: no graph, or a batch of another shape; the loader has checked every clip's samples
                    if graphed is not None and not eager_batches:
                        log.info("train.cuda_graph: a batch of shape %s runs eagerly (the graph takes %s)",
                                 tuple(wave.shape), tuple(example[0].shape))
                    eager_batches += graphed is not None
                    with _autocast(device, tc.precision):
                        out = train_forward(wave, mixup_lambda=mix_lam, check_finite=False)
                    logits = out.logits.float()
                if multi_label:
                    loss = F.binary_cross_entropy_with_logits(logits, target)
                else:
                    loss = F.cross_entropy(logits, target / target.sum(1, keepdim=True).clamp_min(1e-8))
                loss = loss * batch.get("weight", 1.0)
                scaler.scale(loss / oc.accumulate).backward()
            loss_log.add(loss)
            if not last_micro:
                continue
            for g in optimizer.param_groups:
                g["lr"] = oc.lr * lr_factor(oc, step, steps_per_epoch, total_steps)
            if oc.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), oc.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=graphed is None)  # a graph needs gradients of the parameters' own
            if ema is not None:
                ema.update(raw_model)
            step += 1
            loss_log.end_step()
            if tc.log_every and step % tc.log_every == 0:
                loss_log.flush()
            if is_main:
                if pbar is not None:
                    pbar.update(1)
                    # the loss is read one step late: none to show after the first step (not "nan", which reads as a
                    # diverged run)
                    avg = loss_log.average
                    post = {"loss": "-" if avg is None else f"{avg:.4f}", "lr": f"{optimizer.param_groups[0]['lr']:.2e}",
                            "ep": epoch}
                    if last_map is not None:
                        post["mAP"] = f"{last_map:.3f}"
                    pbar.set_postfix(post)
                if writer is not None and step % tc.log_every == 0:
                    writer.add_scalar("train/loss", loss_log.losses[-1], step)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
                if step % tc.log_every == 0 and pbar is None:
                    log.info("step %d/%d epoch %d loss %.4f lr %.2e", step, total_steps, epoch, loss_log.average,
                             optimizer.param_groups[0]["lr"])
            if step % tc.checkpoint_every == 0:
                loss_log.flush()
                save_state()
            if tc.stop_after_steps and step >= tc.stop_after_steps:
                loss_log.flush()
                if step % tc.checkpoint_every:
                    save_state()
                stopped = True
                break
            if micro + oc.accumulate > sampler.steps_per_epoch:
                break  # leftover micro-batches that cannot fill an optimiser step
        if stopped:
            break
        epoch, micro = epoch + 1, 0
        loss_log.flush()
        if val_cs is not None and (epoch % tc.eval_every_epochs == 0 or epoch == tc.epochs):
            res = run_validation()
            m = res["metrics"]
            last_map = m["mAP"]
            if is_main:
                rec = {"epoch": epoch, "step": step, "train_loss": loss_log.average, **m}
                metrics_log.write(json.dumps(rec) + "\n")
                metrics_log.flush()
                if writer is not None:
                    for k in ("mAP", "mAUC", "d_prime", "micro_f1", "macro_f1", "top1_accuracy"):
                        if k in m:
                            writer.add_scalar(f"val/{k}", m[k], step)
                msg = f"epoch {epoch} step {step}: val mAP {m['mAP']:.4f} mAUC {m['mAUC']:.4f}"
                if "top1_accuracy" in m:
                    msg += f" acc {m['top1_accuracy']:.4f}"
                (pbar.write if pbar is not None else log.info)(msg)
                if m["mAP"] > best["mAP"]:
                    best = {"mAP": m["mAP"], "step": step, "epoch": epoch, **{k: m[k] for k in ("mAUC", "top1_accuracy") if k in m}}
                    save_model(res["model"], out_dir / "best.safetensors", labels=labels, multi_label=multi_label,
                               provenance=provenance({"validation": m}))
        save_state()
    if pbar is not None:
        pbar.close()
    final_metrics = None
    if not stopped and is_main:
        final_model = raw_model
        if ema is not None:
            import copy

            final_model = copy.deepcopy(raw_model)
            ema.copy_to(final_model)
        save_model(final_model, out_dir / "final.safetensors", labels=labels, multi_label=multi_label,
                   provenance=provenance({"best": best}))
    if val_cs is not None and last_map is not None:
        final_metrics = {"mAP": last_map}
    skipped_total = skipped
    if world > 1:
        skipped_total = sum(D.gather_objects(skipped))
    result = TrainResult(output_dir=str(out_dir), steps=step, epochs_done=epoch, best_mAP=best["mAP"],
                         best_step=best["step"], best=best, final_metrics=final_metrics, skipped_clips=skipped_total,
                         seconds=round(time.time() - t_start, 1), stopped_early=stopped,
                         losses=loss_log.losses)
    if eager_batches:
        log.info("train.cuda_graph: %d batch(es) of another shape ran eagerly", eager_batches)
    if is_main:
        if skipped_total:
            log.warning("%d clip(s) could not be decoded and were skipped (see the warnings above)", skipped_total)
        metrics_log.close()
        if writer is not None:
            writer.close()
        (out_dir / "summary.json").write_text(json.dumps(dict(result), indent=2, default=float))
        log.info("done: %s", json.dumps(dict(result), default=float))
    return result
