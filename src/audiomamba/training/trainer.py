"""The training loop: ``train(config)``, run by a :class:`Trainer`.

The loss is the clip loss (BCE, or cross-entropy for single-label data), plus with ``train.frame_loss_weight``
``w > 0`` ``w`` times the frame loss: BCE of the head's per-step logits against the strong labels rasterised onto
its steps (:func:`~audiomamba.training.step.frame_targets`), over the clips that are strongly labelled.

One optimiser step = ``optim.accumulate`` micro-batches of ``train.batch_size`` examples (global, split over the
ranks).  Every ``train.checkpoint_every`` steps (and at each epoch's end) ``last.pt`` is written atomically with
the full state (:mod:`audiomamba.training.state`); ``--resume`` restores it and continues exactly.  The best
validation mAP gives ``best.safetensors``, the end of training ``final.safetensors`` (both loadable with
:func:`audiomamba.checkpoint.load`); ``metrics.jsonl`` gets one line per validation and ``summary.json`` the
:class:`TrainResult`.

Bad data never stops a run: a training or validation clip that cannot be used (undecodable, truncated, NaN or
infinite samples anywhere in it) is skipped, with one warning line naming the file, and counted (the epoch log,
``metrics.jsonl``, ``summary.json``).  Crash leftovers: a run removes the temporary files of writes that an
earlier, killed process left in its output folder, and a resumed run drops the ``metrics.jsonl`` rows written
after the step it resumes from.  An output that cannot be written is a :class:`~audiomamba.errors.WriteError`
naming the file and the cause; the previous ``last.pt`` stays intact.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import logging
import time
from pathlib import Path

import torch
from torch import nn

from audiomamba.checkpoint import CheckpointError, read_meta, save_model
from audiomamba.datasets import ClipDataset, DatasetError, collate, open_split
from audiomamba.datasets.loader import MAX_EVENTS, batch_events
from audiomamba.datasets.sampler import BatchSampler
from audiomamba.errors import ConfigError, WriteError
from audiomamba.evaluation.predict import evaluate_scores, predict
from audiomamba.inference.pieces import default_min_input_s
from audiomamba.soundscapes.bank import SourceAugment
from audiomamba.training.config import Config, config_to_dict
from audiomamba.training.optim import EMA, lr_factor, param_groups
from audiomamba.training.state import (Progress, Resumable, load_state, restore_state, rng_state, save_state,
                                       set_rng_state)
from audiomamba.training.step import (AudioMambaLogits, LossLog, batch_generator, check_graphable, frame_loss,
                                      frame_targets, mix_batch, tagging_loss)
from audiomamba.utils import distributed as D
from audiomamba.utils.cuda_graphs import GraphedTraining
from audiomamba.utils.device import PRECISION_DTYPES, autocast
from audiomamba.utils.interrupt import DeferredInterrupt, ignore_interrupt
from audiomamba.utils.io import atomic_write, json_safe, remove_stale_temps, write_error

log = logging.getLogger("audiomamba.train")

__all__ = ["train", "Trainer", "TrainResult", "build_model", "init_from_checkpoint", "load_state", "LossLog"]

VALIDATION_SCALARS = ("mAP", "mAUC", "d_prime", "micro_f1", "macro_f1", "top1_accuracy")  # to TensorBoard


# ----------------------------------------------------------------------------- model
def build_model(cfg: Config, num_classes: int) -> nn.Module:
    """The model of ``cfg.model`` with ``num_classes`` outputs: optionally on an ImageNet VMamba backbone
    (``model.pretrained_backbone``) or initialised from a tagging checkpoint (``model.init_checkpoint``)."""
    from audiomamba import create_model

    m = cfg.model
    args = dict(num_classes=num_classes, head=m.head, layout=m.layout, extra_transformer_blocks=m.extra_transformer_blocks,
                sample_rate=m.sample_rate, spec_augment=m.spec_augment)
    if m.step_frames != 32:  # only models with finer steps name it, so other checkpoints' configs stay as they were
        args["step_frames"] = m.step_frames
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
    differs (new classes).  A model with finer steps (``model.step_frames``) may start from a checkpoint without
    them: their correction starts at zero.  A checkpoint of another architecture is an error.  Returns the
    dropped keys."""
    from safetensors.torch import load_file

    meta = read_meta(path)
    if meta["model"]["name"] != model.config["name"]:
        raise CheckpointError(f"{path}: a {meta['model']['name']!r} checkpoint cannot initialise a {model.config['name']!r} model")
    state = load_file(str(path))
    own = model.state_dict()
    # the class outputs (the head's and the finer steps' last convolution) are dropped when the classes differ
    dropped = [k for k, v in state.items() if k.startswith(("head.", "fine_steps.")) and k in own
               and own[k].shape != v.shape] + [k for k in state if k.startswith("head.") and k not in own]
    for k in dropped:
        del state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    fresh = [k for k in missing if k.startswith("fine_steps.") and k not in dropped]
    bad = [k for k in missing if not (k.startswith("head.") and dropped) and k not in fresh + dropped] + list(unexpected)
    if bad:
        hint = ""
        if any(k.startswith("fine_steps.") for k in unexpected):
            frames = meta["model"].get("args", {}).get("step_frames")
            hint = f" (the checkpoint has finer time steps: set model.step_frames={frames})"
        raise CheckpointError(f"{path}: weights do not fit {model.config['name']} with these settings: {bad[:6]}{hint}")
    if fresh:
        log.info("fine-tuning from %s: finer steps (%d frames) start from the coarse steps", path, model.step_frames)
    if dropped:
        log.info("fine-tuning from %s: head dropped (%d tensors), %d classes now", path, len(dropped), model.num_classes)
    return dropped


class TrainResult(dict):
    """``{"output_dir", "steps", "epochs_done", "best_mAP", "best_step", "best", "final_metrics",
    "skipped_clips", "skipped_distinct_clips", "seconds", "stopped_early", "losses"}`` (``losses``: one mean per
    optimiser step; ``skipped_clips``: training examples skipped, ``skipped_distinct_clips``: the clips they came
    from)."""


def _json(obj, indent: int | None = None) -> str:
    """Strict JSON: a NaN or infinite number (a diverged loss, an undefined metric) is written as null."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def _write_text(path: Path, text: str) -> None:
    """Write a small text output atomically; ``WriteError`` naming it when that fails."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ----------------------------------------------------------------------------- training
def train(cfg: Config, resume: str | None = None) -> TrainResult:
    """Train as ``cfg`` says (continuing from the ``last.pt`` at ``resume``), in this process or as one rank of
    a ``torchrun`` job."""
    with D.process_group(cfg.train.device) as device:
        return Trainer(cfg, device, resume).fit()


class Trainer:
    """One training run on this process's share of each batch.

    The constructor builds everything: :meth:`_build_data`, :meth:`_build_model`, :meth:`_build_optimiser`,
    :meth:`_start` (the resumed or fresh state), :meth:`_capture_graph`.  :meth:`fit` runs the epochs
    (:meth:`run_epoch`).  :meth:`train_step` takes one micro-batch and makes the optimiser update after
    ``optim.accumulate`` of them; at an epoch's end :meth:`validate` scores the validation split and keeps the
    best model, and :meth:`save_last` writes ``last.pt``; :meth:`save_final` writes the trained model.
    """

    def __init__(self, cfg: Config, device: torch.device, resume_from: str | None = None) -> None:
        self.t_start = time.time()
        self.cfg, self.device = cfg, device
        self.rank, self.world = D.rank(), D.world_size()
        self.is_main = self.rank == 0
        self.out_dir = Path(cfg.train.output_dir)
        self._setup_process()
        self._build_data()
        self._build_model()
        self._build_optimiser()
        self.progress = self._start(resume_from)
        self.loss_log = LossLog()
        self.last_map: float | None = None  # the latest validation mAP
        self.stopped = False  # train.stop_after_steps reached
        self._interrupt = DeferredInterrupt("training", enabled=False)  # fit()'s handler while it runs
        self.eager_batches = 0  # batches of another shape than the CUDA graph's
        self._eval_model: nn.Module | None = None  # holds the EMA weights for validation
        self._loader_gen = torch.Generator()  # the data loader's own: it leaves the global RNG alone
        self._pbar = self._writer = self._metrics_file = None
        self._val_warned: set[str] = set()  # validation clips already named in a warning
        self._skips_reported = 0  # training skips already in an epoch log line
        self._used_in_epoch = 0  # training examples of this rank used in the current epoch
        self.events_overflow = 0  # training examples left out of the frame loss: more than MAX_EVENTS event rows
        if self.is_main:
            _write_text(self.out_dir / "config.json", json.dumps(config_to_dict(cfg), indent=2))
            val = f"{len(self.val_cs)} clips" if self.val_cs else "none"
            log.info("train: %d clips (%s), %d classes, %s loss; validation: %s; %d process(es), %d steps/epoch, %d steps",
                     len(self.train_cs), self.train_cs.name, self.train_cs.num_classes, self.loss_kind, val,
                     self.world, self.steps_per_epoch, self.total_steps)
        self.model.train()
        self.graphed = self._capture_graph() if self.use_graph else None

    # ------------------------------------------------------------------------- build
    def _setup_process(self) -> None:
        """Threads, the output folder, the compute dtype and this rank's share of the batch."""
        tc = self.cfg.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        if self.is_main:
            if self.out_dir.exists() and not self.out_dir.is_dir():
                raise WriteError(f"cannot write to {self.out_dir}: it is a file, not a folder (train.output_dir)",
                                 errno.ENOTDIR, str(self.out_dir))
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise write_error(self.out_dir, e) from e
            remove_stale_temps(self.out_dir)  # of writes an earlier, killed run left half done
        if tc.precision != "fp32" and self.device.type != "cuda":
            log.warning("train.precision=%s needs CUDA; training in fp32 on %s", tc.precision, self.device)
        # autocast's dtype (float32: none)
        self.compute_dtype = PRECISION_DTYPES[tc.precision] if self.device.type == "cuda" else torch.float32
        if tc.batch_size % self.world:
            raise ConfigError(f"train.batch_size={tc.batch_size} must be divisible by the number of processes ({self.world})")
        self.per_rank = tc.batch_size // self.world

    def _build_data(self) -> None:
        """The training and validation splits and the loss they call for."""
        dc = self.cfg.data
        self.train_cs = open_split(dc.root, dc.train, dc.format, dc.labels, dc.fold, dc.val_fraction, dc.check_files)
        self.val_cs = None
        if dc.validation:
            self.val_cs = open_split(dc.root, dc.validation, dc.format, dc.labels, dc.fold, dc.val_fraction,
                                     dc.check_files)
            if self.val_cs.label_names != self.train_cs.label_names:
                raise DatasetError(f"{self.val_cs.name}: its label set differs from the training split's "
                                   f"({self.train_cs.name})")
        loss = self.cfg.train.loss
        self.loss_kind = loss if loss != "auto" else ("bce" if self.train_cs.multi_label else "ce")
        self.multi_label = self.loss_kind == "bce"
        self.frame_weight = self.cfg.train.frame_loss_weight
        if self.frame_weight:
            self._check_strong_labels()

    def _check_strong_labels(self) -> None:
        """The frame loss needs a multi-label task and strong labels; clips with a label without events (weak
        ones) are left out of it, which is logged."""
        cs = self.train_cs
        if not self.multi_label:
            raise ConfigError(f"train.frame_loss_weight > 0 needs a multi-label model; {cs.name} is single-label "
                              "(set train.loss: bce, or train.frame_loss_weight: 0)")
        strong = sum(c.strongly_labelled and bool(c.events) for c in cs.clips)
        if not strong:
            raise ConfigError(f"train.frame_loss_weight > 0 needs strong labels (events with onsets and offsets); "
                              f"no clip of {cs.name} has them")
        weak = sum(not c.strongly_labelled for c in cs.clips)
        if weak and self.is_main:
            log.info("frame loss: %d of %d training clips have a label without events; they are left out of it",
                     weak, len(cs))

    def _build_model(self) -> None:
        """The model (identical initial weights on every rank), the batch sampler and the training dataset."""
        cfg, dc, tc = self.cfg, self.cfg.data, self.cfg.train
        torch.manual_seed(tc.seed)
        model = build_model(cfg, self.train_cs.num_classes).to(self.device)
        # SyncBatchNorm's collectives are not captured into train.cuda_graph's graphs: there each rank
        # normalises with its own batch statistics, and rank 0's running statistics are broadcast each step
        graphed = tc.cuda_graph and self.device.type == "cuda"
        if self.world > 1 and tc.sync_bn and not graphed:
            model = D.convert_sync_batchnorm(model, self.device)
        self.raw_model = model  # never wrapped: what is saved, evaluated and averaged
        sr = model.sample_rate
        min_clip = model.frontend.min_samples / sr
        if dc.clip_seconds < min_clip:
            raise ConfigError(f"data.clip_seconds={dc.clip_seconds} is shorter than the model's minimum input ({min_clip:.3f} s)")
        self.clip_samples = int(round(dc.clip_seconds * sr))
        self.sampler = BatchSampler(self.train_cs, self.per_rank, cfg.sampling.mode, cfg.sampling.epoch_size, tc.seed,
                                    self.rank, self.world)
        accumulate = cfg.optim.accumulate
        self.steps_per_epoch = self.sampler.steps_per_epoch // accumulate
        if self.steps_per_epoch < 1:
            raise ConfigError(f"an epoch has {self.sampler.steps_per_epoch} batches, fewer than optim.accumulate={accumulate}")
        self.total_steps = self.steps_per_epoch * tc.epochs
        ac = cfg.augment
        source_augment = SourceAugment(ac.source_speed, ac.source_eq_db, ac.source_reverb)
        if source_augment and self.train_cs.clips[0].plan is None:
            raise ConfigError("augment.source_speed / source_eq_db / source_reverb change the events of a source bank as "
                              f"they are rendered; the training data ({dc.root}) is not a source bank (data.format bank)")
        self.dataset = ClipDataset(self.train_cs, sr, train=True, clip_seconds=dc.clip_seconds,
                                   random_crop=ac.random_crop, gain_db=ac.gain_db, time_shift=ac.time_shift,
                                   source_augment=source_augment)

    def _build_optimiser(self) -> None:
        """AdamW, the AMP scaler, the EMA, the DDP wrapper, the compiled forward; the CUDA-graph checks."""
        oc, tc, raw = self.cfg.optim, self.cfg.train, self.raw_model
        cuda = self.device.type == "cuda"
        # fused: one kernel for the whole update on CUDA instead of a dozen multi-tensor launches (host time)
        self.optimizer = torch.optim.AdamW(param_groups(raw, oc.weight_decay), lr=oc.lr, betas=tuple(oc.betas),
                                           eps=oc.eps, fused=cuda)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and tc.precision == "fp16")
        self.ema = EMA(raw, tc.ema_decay) if tc.ema_decay else None
        self.parts = Resumable(raw, self.optimizer, self.scaler, self.ema)
        self.model = raw
        # Gradients of a torchrun job: DDP all-reduces them in buckets while the backward runs; a CUDA graph
        # replays the backward as one launch, with no hooks for DDP to fire, so with train.cuda_graph the
        # gradients are all-reduced after the backward instead, in one flat buffer (utils/distributed.py).  A
        # cuda_graph run on a CPU keeps that synchronisation (it is what the CPU tests check).
        self.sync_after_backward = D.is_distributed() and tc.cuda_graph
        if self.sync_after_backward and self.is_main:
            log.info("train.cuda_graph with %d process(es): gradients all-reduced after the backward", self.world)
        if D.is_distributed() and not self.sync_after_backward:
            self.model = nn.parallel.DistributedDataParallel(raw, device_ids=[self.device.index] if cuda else None)
        # torch.compile of the training forward (evaluation stays eager: its clip lengths vary); the Triton scan is
        # a custom op, so the graph has no breaks around it (figures: docs/benchmarks.md)
        self.train_forward = self.model if tc.compile == "off" else torch.compile(self.model, backend=tc.compile)
        self.use_graph = tc.cuda_graph
        if self.use_graph and not cuda:
            log.warning("train.cuda_graph needs CUDA; training eagerly on %s", self.device)
            self.use_graph = False
        if self.use_graph:
            check_graphable(raw, self.clip_samples)
        if self.frame_weight:
            try:
                steps, span = raw.step_grid(self.clip_samples)
            except ValueError as e:
                raise ConfigError(f"train.frame_loss_weight: {e}; use data.clip_seconds <= 10.24 (at 32 kHz) or "
                                  "model.layout: native") from None
            if self.is_main:
                log.info("frame loss: weight %g, %d time steps of %.0f ms per clip", self.frame_weight, steps,
                         1000 * self.cfg.data.clip_seconds * span / steps)

    def _start(self, resume_from: str | None) -> Progress:
        """The counters, weights, optimiser and RNG states of a resumed run, or a fresh start's per-rank seed."""
        self.resumed = bool(resume_from)
        if not resume_from:
            torch.manual_seed(self.cfg.train.seed * 1000 + self.rank)  # per-rank streams for SpecAugment / drop-path
            return Progress()
        progress = restore_state(resume_from, self.parts, self.cfg, self.train_cs.num_classes, self.device)
        if self.is_main:
            log.info("resumed from %s at step %d (epoch %d)", resume_from, progress.step, progress.epoch)
        return progress

    def _capture_graph(self) -> GraphedTraining:
        """The forward and backward captured on example inputs of the batches' shape.  Called before any data
        loader exists: a capture fails when another thread calls CUDA meanwhile, as the loader's memory-pinning
        thread does.  The capture's warm-up runs draw random numbers (SpecAugment, drop path); the generators are
        rewound afterwards, so that a resumed run, which captures again, draws what the uninterrupted run drew."""
        n = self.per_rank
        wave = torch.randn(n, self.clip_samples, generator=torch.Generator().manual_seed(0)).mul_(0.1).to(self.device)
        example = (wave,)
        if self.cfg.augment.mixup == "spec" and n > 1:
            example += (torch.full((n,), 0.5, device=self.device),)
        rng = rng_state(self.device)
        graphed = GraphedTraining(AudioMambaLogits(self.raw_model, steps=bool(self.frame_weight)), example,
                                  self.compute_dtype)
        set_rng_state(rng, self.device)
        self.graph_batch_shape = tuple(wave.shape)
        if self.is_main:
            log.info("train.cuda_graph: forward and backward captured for batches of %s", self.graph_batch_shape)
        return graphed

    # ------------------------------------------------------------------------- step
    def train_step(self, batch: dict) -> bool:
        """One micro-batch of the loader: frame targets (with the frame loss), mixup / CutMix, forward (replayed
        from the CUDA graph when it has the graph's shape, else eager under autocast), loss, backward (DDP's
        gradient all-reduce only on the last micro-batch of an optimiser step); after every
        ``optim.accumulate``-th one, the optimiser update.  Returns True when an update was made."""
        p, accumulate = self.progress, self.cfg.optim.accumulate
        p.micro += 1
        for i, e in zip(batch.get("error_indices") or [None] * len(batch["errors"]), batch["errors"]):
            p.skipped += 1
            if i is None or i not in p.bad_clips:  # one warning per clip; its later skips are only counted
                log.warning("skipped training clip %s", e)
            if i is not None:
                p.bad_clips.add(i)
        if batch["wave"] is not None:
            self._used_in_epoch += int(batch["wave"].shape[0])
        weight = 1.0
        if batch["wave"] is None:  # every clip of this rank's batch failed: a zero-weight dummy keeps ranks in step
            events, has_events, _ = batch_events([None], self.clip_samples)
            batch = {"wave": torch.zeros(1, self.clip_samples), "target": torch.zeros(1, self.train_cs.num_classes),
                     "events": events, "has_events": has_events, "events_overflow": 0}
            weight = 0.0
        wave = batch["wave"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        frame_target = frame_mask = None
        if self.frame_weight:
            self._count_overflow(batch["events_overflow"])
            steps, span = self.raw_model.step_grid(wave.shape[-1])
            frame_target = frame_targets(batch["events"].to(self.device, non_blocking=True),
                                         self.train_cs.num_classes, steps, span)
            frame_mask = batch["has_events"].to(self.device, non_blocking=True)
        gen = batch_generator(self.cfg.train.seed, p.step, p.micro, self.rank)
        mixed = mix_batch(wave, target, self.cfg.augment, gen, frame_target, frame_mask)
        last_micro = p.micro % accumulate == 0
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        sync = self.model.no_sync() if (ddp and not last_micro) else contextlib.nullcontext()
        with sync:
            logits, step_logits = self._forward(mixed.wave, mixed.mixup_lambda)
            loss = tagging_loss(logits, mixed.target, self.multi_label)
            if self.frame_weight:
                loss = loss + self.frame_weight * frame_loss(step_logits, mixed.frame_target, mixed.frame_mask)
            loss = loss * weight
            self.scaler.scale(loss / accumulate).backward()
        self.loss_log.add(loss)
        if last_micro:
            self._update()
        return last_micro

    def _count_overflow(self, count: int) -> None:
        """Count the examples with more than ``MAX_EVENTS`` event rows (left out of the frame loss); the first
        is logged."""
        if count and not self.events_overflow:
            log.warning("frame loss: a training clip has more than %d separate events in its crop; such clips are "
                        "left out of the frame loss (a count follows at the end)", MAX_EVENTS)
        self.events_overflow += count

    def _forward(self, wave: torch.Tensor,
                 mixup_lambda: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float32 clip logits of a training batch, and with the frame loss its float32 step logits
        ``(B, classes, steps)`` (the valid steps; else None)."""
        inputs = (wave,) if mixup_lambda is None else (wave, mixup_lambda)
        if self.graphed is not None:
            if self.graphed.accepts(*inputs):
                out = self.graphed(*inputs)
                return (out[0].float(), out[1].float()) if self.frame_weight else (out.float(), None)
            # a batch of another shape runs eagerly; the loader has checked every clip's samples
            if not self.eager_batches:
                log.info("train.cuda_graph: a batch of shape %s runs eagerly (the graph takes %s)",
                         tuple(wave.shape), self.graph_batch_shape)
            self.eager_batches += 1
        with autocast(self.device, self.compute_dtype):
            out = self.train_forward(wave, mixup_lambda=mixup_lambda, check_finite=False)
        return out.logits.float(), (out.step_logits.float() if self.frame_weight else None)

    def _update(self) -> None:
        """The optimiser update of the accumulated gradients: learning rate, clipping, AdamW (through the AMP
        scaler), EMA; then the step's loss is recorded."""
        p, oc = self.progress, self.cfg.optim
        if self.sync_after_backward:
            D.all_reduce_gradients(self.raw_model)
        for g in self.optimizer.param_groups:
            g["lr"] = oc.lr * lr_factor(oc, p.step, self.steps_per_epoch, self.total_steps)
        if oc.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), oc.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=self.graphed is None)  # a graph needs gradients of the parameters' own
        if self.sync_after_backward:  # as DDP does: every rank runs with rank 0's BatchNorm statistics
            D.broadcast_buffers(self.raw_model)
        if self.ema is not None:
            self.ema.update(self.raw_model)
        p.step += 1
        self.loss_log.end_step()
        if self._log_due():
            self.loss_log.flush()

    def _log_due(self) -> bool:
        """Whether this step gets a log line (every ``train.log_every`` steps; never when it is 0)."""
        every = self.cfg.train.log_every
        return bool(every) and self.progress.step % every == 0

    def _report_step(self) -> None:
        """Progress bar, TensorBoard scalars and the log line of a finished optimiser step (rank 0)."""
        if not self.is_main:
            return
        p, lr = self.progress, self.optimizer.param_groups[0]["lr"]
        avg = self.loss_log.average
        if self._pbar is not None:
            self._pbar.update(1)
            # the loss is read one step late: none to show after the first step (not "nan", which reads as a
            # diverged run)
            post = {"loss": "-" if avg is None else f"{avg:.4f}", "lr": f"{lr:.2e}", "ep": p.epoch}
            if self.last_map is not None:
                post["mAP"] = f"{self.last_map:.3f}"
            self._pbar.set_postfix(post)
        if not self._log_due():
            return
        if self._writer is not None:
            self._writer.add_scalar("train/loss", self.loss_log.losses[-1], p.step)
            self._writer.add_scalar("train/lr", lr, p.step)
        if self._pbar is None:
            log.info("step %d/%d epoch %d loss %.4f lr %.2e", p.step, self.total_steps, p.epoch, avg, lr)

    # ------------------------------------------------------------------------- validate
    def validate(self) -> None:
        """Score the validation split (with the EMA weights when ``train.eval_with_ema``) on all ranks; on rank 0,
        one ``metrics.jsonl`` line, TensorBoard scalars, a log line, and ``best.safetensors`` when the mAP is the
        best so far."""
        tc, dc = self.cfg.train, self.cfg.data
        model = self._validation_model()
        pred = predict(model, self.val_cs, tc.eval_batch_size or self.per_rank, self.device, self.multi_label,
                       dc.eval_seconds, num_workers=dc.num_workers,
                       min_input_s=default_min_input_s(self.cfg.model.layout, dc.clip_seconds))
        self.model.train()
        train_skipped, _ = self._skip_totals()
        val_skipped = len(pred["errors"])
        if self.is_main:
            for e in pred["errors"]:
                if e not in self._val_warned:
                    self._val_warned.add(e)
                    log.warning("skipped validation clip %s", e)
        m = evaluate_scores(pred, self.multi_label)
        m.pop("_per_class")
        self.last_map = m["mAP"]
        if not self.is_main:
            return
        p = self.progress
        row = {"epoch": p.epoch, "step": p.step, "train_loss": self.loss_log.average, **m,
               "skipped_val_clips": val_skipped, "skipped_train_clips": train_skipped}
        path = self.out_dir / "metrics.jsonl"
        try:
            self._metrics_file.write(_json(row) + "\n")
            self._metrics_file.flush()
        except OSError as e:
            raise write_error(path, e) from e
        if self._writer is not None:
            for k in VALIDATION_SCALARS:
                if k in m:
                    self._writer.add_scalar(f"val/{k}", m[k], p.step)
        msg = f"epoch {p.epoch} step {p.step}: val mAP {m['mAP']:.4f} mAUC {m['mAUC']:.4f}"
        if "top1_accuracy" in m:
            msg += f" acc {m['top1_accuracy']:.4f}"
        if val_skipped:
            msg += f" ({val_skipped} of {len(self.val_cs)} validation clips skipped)"
        (self._pbar.write if self._pbar is not None else log.info)(msg)
        if m["mAP"] > p.best["mAP"]:
            p.best = {"mAP": m["mAP"], "step": p.step, "epoch": p.epoch,
                      **{k: m[k] for k in ("mAUC", "top1_accuracy") if k in m}}
            self._save_model(model, "best.safetensors", {"validation": m})

    def _validation_model(self) -> nn.Module:
        if self.ema is None or not self.cfg.train.eval_with_ema:
            return self.raw_model
        if self._eval_model is None:
            self._eval_model = copy.deepcopy(self.raw_model)
        self.ema.copy_to(self._eval_model)
        return self._eval_model

    # ------------------------------------------------------------------------- save
    def save_last(self) -> None:
        """``last.pt`` (all ranks call this; rank 0 writes)."""
        save_state(self.out_dir / "last.pt", self.progress, self.parts, self.cfg, self.train_cs.num_classes,
                   self.device)

    def save_final(self) -> None:
        """``final.safetensors``: the trained weights, or their EMA (rank 0)."""
        model = self.raw_model
        if self.ema is not None:
            model = copy.deepcopy(self.raw_model)
            self.ema.copy_to(model)
        self._save_model(model, "final.safetensors", {"best": self.progress.best})

    def _save_model(self, model: nn.Module, name: str, extra: dict) -> None:
        cfg, p = self.cfg, self.progress
        provenance = {"data": str(cfg.data.root), "train_split": cfg.data.train, "config": config_to_dict(cfg),
                      "step": p.step, "epoch": p.epoch, "date": time.strftime("%Y-%m-%d"), **extra}
        save_model(model, self.out_dir / name, labels=self.train_cs.labels, multi_label=self.multi_label,
                   provenance=provenance)

    # ------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train to ``train.epochs`` (or ``train.stop_after_steps``); write ``final.safetensors`` and
        ``summary.json``; return the result on every rank."""
        tc, p = self.cfg.train, self.progress
        with contextlib.ExitStack() as outputs:
            # one process: Ctrl-C stops after the step with last.pt written (ranks of a job could not agree on it)
            self._interrupt = outputs.enter_context(DeferredInterrupt("training", enabled=self.world == 1))
            if self.is_main:
                self._open_outputs(outputs)
            while p.epoch < tc.epochs and not self.stopped:
                self.run_epoch()
                if self.stopped:
                    break
                p.epoch, p.micro = p.epoch + 1, 0
                self.loss_log.flush()
                self._report_skips()
                if self.val_cs is not None and (p.epoch % tc.eval_every_epochs == 0 or p.epoch == tc.epochs):
                    self.validate()
                self.save_last()
                self._stop_if_interrupted(saved=True)
            if self._pbar is not None:
                self._pbar.close()
            if not self.stopped and self.is_main:
                self.save_final()
            result = self._result()
            if self.eager_batches:
                log.info("train.cuda_graph: %d batch(es) of another shape ran eagerly", self.eager_batches)
            if self.events_overflow:
                log.info("frame loss: %d training example(s) with more than %d events were left out of it",
                         self.events_overflow, MAX_EVENTS)
            if self.is_main and result["skipped_clips"]:
                log.warning("%d training example(s) skipped: %d clip(s) could not be used (undecodable, truncated "
                            "or non-finite audio; see the warnings above)", result["skipped_clips"],
                            result["skipped_distinct_clips"])
        if self.is_main:
            _write_text(self.out_dir / "summary.json", _json(dict(result), indent=2))
            log.info("done: %s", json.dumps(dict(result), default=float))
        return result

    def run_epoch(self) -> None:
        """The optimiser steps of the current epoch from where it stands (``progress.micro``), saving
        ``last.pt`` every ``train.checkpoint_every`` steps; stops the run at ``train.stop_after_steps``."""
        tc, p = self.cfg.train, self.progress
        self.sampler.set_position(p.epoch, p.micro)
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self.sampler, collate_fn=collate,
                                             num_workers=self.cfg.data.num_workers, generator=self._loader_gen,
                                             pin_memory=self.device.type == "cuda", worker_init_fn=ignore_interrupt)
        for batch in loader:
            if not self.train_step(batch):
                continue
            self._report_step()
            if p.step % tc.checkpoint_every == 0:
                self.loss_log.flush()
                self.save_last()
            self._stop_if_interrupted(saved=p.step % tc.checkpoint_every == 0)
            if tc.stop_after_steps and p.step >= tc.stop_after_steps:
                self.loss_log.flush()
                if p.step % tc.checkpoint_every:
                    self.save_last()
                self.stopped = True
                return
            if p.micro + self.cfg.optim.accumulate > self.sampler.steps_per_epoch:
                return  # leftover micro-batches that cannot fill an optimiser step

    def _stop_if_interrupted(self, saved: bool) -> None:
        """After a Ctrl-C (:class:`~audiomamba.utils.interrupt.DeferredInterrupt`): write ``last.pt`` unless
        ``saved``, say how to continue, and raise ``KeyboardInterrupt`` (the CLI's exit 130)."""
        if not self._interrupt.requested:
            return
        if not saved:
            self.loss_log.flush()
            self.save_last()
        log.warning("interrupted at step %d: %s is written; `audiomamba train --config ... --resume auto` continues "
                    "from it", self.progress.step, self.out_dir / "last.pt")
        raise KeyboardInterrupt

    def _open_outputs(self, stack: contextlib.ExitStack) -> None:
        """Rank 0's progress bar, ``metrics.jsonl`` and TensorBoard writer, closed by ``stack``."""
        tc = self.cfg.train
        if tc.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tb"))
                stack.callback(self._writer.close)
            except ImportError:
                log.info("tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)")
        path = self.out_dir / "metrics.jsonl"
        self._trim_metrics(path)
        try:
            self._metrics_file = stack.enter_context(open(path, "a"))
        except OSError as e:
            raise write_error(path, e) from e
        if tc.progress:
            from tqdm import tqdm

            self._pbar = tqdm(total=self.total_steps, initial=self.progress.step, desc="train", unit="step",
                              dynamic_ncols=True)
            stack.callback(self._pbar.close)

    def _trim_metrics(self, path: Path) -> None:
        """Keep the ``metrics.jsonl`` rows a resumed run has already written (rows up to the (epoch, step) it
        resumes from), so that nothing is written twice; a fresh run starts the file anew.  Rows written after
        the checkpoint by a killed run, and a line cut short by the kill, are dropped."""
        if not path.exists():
            return
        p = self.progress
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as e:
            raise write_error(path, e) from e
        keep = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # cut short by a kill
            if not isinstance(row, dict):
                continue
            at = (row.get("epoch"), row.get("step"))
            if self.resumed and all(isinstance(v, int) for v in at) and at <= (p.epoch, p.step):
                keep.append(line)
        if len(keep) == len(lines):
            return
        if self.resumed:
            log.info("%s: %d row(s) after epoch %d step %d dropped (written after the checkpoint resumed from)",
                     path, len(lines) - len(keep), p.epoch, p.step)
        else:
            log.info("%s: a fresh run replaces the %d row(s) of an earlier run", path, len(lines))
        _write_text(path, "".join(line + "\n" for line in keep))

    def _skip_totals(self) -> tuple[int, int]:
        """(training examples skipped, distinct training clips skipped), all ranks together (every rank calls
        this)."""
        p = self.progress
        if self.world == 1:
            return p.skipped, len(p.bad_clips)
        counts = D.gather_objects((p.skipped, sorted(p.bad_clips)))
        return sum(c[0] for c in counts), len({i for c in counts for i in c[1]})

    def _report_skips(self) -> None:
        """At an epoch's end: one log line when training clips were skipped in it; a ``DatasetError`` when no
        clip of the epoch could be used (every rank calls this)."""
        total, distinct = self._skip_totals()
        used = self._used_in_epoch if self.world == 1 else sum(D.gather_objects(self._used_in_epoch))
        skipped, self._skips_reported, self._used_in_epoch = total - self._skips_reported, total, 0
        if skipped and not used:
            raise DatasetError(f"{self.train_cs.name}: none of the {skipped} training examples of epoch "
                               f"{self.progress.epoch} could be used ({distinct} clip(s) undecodable, truncated or "
                               "non-finite; see the warnings above)")
        if self.is_main and skipped:
            log.warning("epoch %d: %d training example(s) skipped (%d so far, from %d clip(s) that cannot be used)",
                        self.progress.epoch, skipped, total, distinct)

    def _result(self) -> TrainResult:
        p = self.progress
        skipped, distinct = self._skip_totals()
        final_metrics = {"mAP": self.last_map} if self.val_cs is not None and self.last_map is not None else None
        return TrainResult(output_dir=str(self.out_dir), steps=p.step, epochs_done=p.epoch, best_mAP=p.best["mAP"],
                           best_step=p.best["step"], best=p.best, final_metrics=final_metrics, skipped_clips=skipped,
                           skipped_distinct_clips=distinct,
                           seconds=round(time.time() - self.t_start, 1), stopped_early=self.stopped,
                           losses=self.loss_log.losses)
