"""Refit the top of a token-semantic tagger on a frozen backbone, on a CPU: what new source recordings teach it.

    python scripts/head_refit.py --checkpoint FILE --bank .bank --cache runs/refit/cache --clips 8000 --out runs/refit \
        [--last-stage] [--save]

The input maps of the backbone's last stage (and the map the finer steps read) for ``--clips`` training
soundscapes, mixed on the fly from the bank with the shipped recipe's source augmentation, and for the whole
validation split are computed once (eval mode, float16) and cached under ``--cache`` (one file per checkpoint,
bank and split, reused when present). Then the head and, for a model with finer steps, its correction (with
``--last-stage`` also the backbone's last stage) are trained on the cached maps with the training's own losses:
the clip BCE and the frame BCE on the model's steps against the strong labels. Every epoch is scored on
validation mAP; ``OUT/summary.json`` lists them, with the validation AP per class before and after. With
``--save``, the best epoch's whole model goes to ``OUT/best.safetensors``, with the checkpoint's labels. It never
reads the test split.

Why only the top: training the whole of ``audiomamba_micro_v2`` on 2 cores runs at about 2 clips/s, against 370
on an H200, so a CPU sitting cannot fine-tune it; the cached maps take a forward pass (about 20 clips/s), after
which a head epoch over 8000 clips takes 20 s and one with the last stage about 25 min. ``--bank`` decides which
recordings the training maps are mixed from, so two runs that differ only in the bank measure what its new
recordings add.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("head_refit")


def _trained_modules(model: torch.nn.Module, last_stage: bool = False) -> list[torch.nn.Module]:
    """The parts trained here: the token-semantic head, the finer steps' correction where the model has one, and
    with ``last_stage`` the backbone's last stage."""
    parts = [model.head]
    if getattr(model, "fine_steps", None) is not None:
        parts.append(model.fine_steps)
    if last_stage:
        parts.append(model.backbone.layers[-1])
    return parts


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _maps_before_last_stage(model, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """A native-layout spectrogram through the backbone up to its last stage: that stage's input map, the map the
    finer steps read (or None) and the number of valid coarse steps -- :meth:`AudioMamba.forward_features`
    stopped one stage early (the test checks that the two agree through :func:`_forward`)."""
    from audiomamba.models.audiomamba import PATCH_STRIDE, native_image

    if model.layout != "native" or model.extra_blocks is not None:
        raise SystemExit("head_refit.py: native-layout models without extra blocks only")
    backbone, keep = model.backbone, model._keep_stage
    x, fine = backbone.patch_embed(native_image(spec)), None
    for i, layer in enumerate(backbone.layers[:-1]):
        x = layer.blocks(x)
        if i == keep:
            fine = x
        x = layer.downsample(x)
    return x, fine, -(-spec.shape[1] // PATCH_STRIDE)


@torch.inference_mode()
def cache_maps(model, bank: str, split: str, clips: int, seed: int, path: Path, batch: int, workers: int,
               speed: float, eq_db: float, clip_seconds: float = 10.0) -> dict[str, torch.Tensor]:
    """Backbone maps, clip targets and strong labels of ``clips`` soundscapes of ``split`` (training ones mixed
    with source augmentation and a random crop; validation ones as evaluation reads them); cached at ``path``."""
    if path.exists():
        log.info("reading cached maps %s", path)
        return torch.load(path)
    from audiomamba.datasets import open_split
    from audiomamba.datasets.loader import ClipDataset, collate
    from audiomamba.soundscapes.bank import SourceAugment

    train = split == "train"
    cs = open_split(bank, "train:640000" if train else split)
    sr = model.sample_rate
    if train:
        rng = np.random.default_rng(seed)
        order = rng.choice(len(cs.clips), size=clips, replace=False)
        requests = [(int(i), int(s)) for i, s in zip(order, rng.integers(0, 2**31 - 1, size=clips))]
        ds = ClipDataset(cs, sr, train=True, clip_seconds=clip_seconds, gain_db=6.0,
                         source_augment=SourceAugment(speed, eq_db, 0.0))
    else:
        requests = list(range(min(clips, len(cs.clips)) if clips else len(cs.clips)))
        ds = ClipDataset(cs, sr, train=False)
    batches = [requests[i : i + batch] for i in range(0, len(requests), batch)]
    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=workers)
    out: dict[str, list] = {"pre": [], "fine": [], "target": [], "events": [], "has_events": []}
    t0, done = time.time(), 0
    for b in loader:
        if b["wave"] is None or b["errors"]:
            raise RuntimeError(f"unreadable clips: {b['errors']}")
        wave = b["wave"]
        if bool((b["lengths"] != wave.shape[-1]).any()) or (done and wave.shape[-1] != out_samples):
            raise SystemExit(f"head_refit.py: the {split} clips of {bank} differ in length; the cache needs one length")
        out_samples = wave.shape[-1]
        spec = model.spectrogram(wave)
        pre, fine, valid = _maps_before_last_stage(model, spec)
        out["pre"].append(pre.half())
        if fine is not None:
            out["fine"].append(fine.half())
        out["target"].append(b["target"])
        out["events"].append(b["events"])
        out["has_events"].append(b["has_events"])
        done += len(wave)
        if done % (batch * 20) == 0:
            log.info("%s: %d/%d clips, %.1f clips/s", split, done, len(requests), done / (time.time() - t0))
    maps = {k: torch.cat(v) for k, v in out.items() if v}
    maps["valid"] = torch.tensor(valid)
    maps["frames"] = torch.tensor(spec.shape[1])
    maps["samples"] = torch.tensor(out_samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(maps, path)
    log.info("%s: %d clips cached in %.0f s (%s)", split, done, time.time() - t0, path)
    return maps


def _forward(model, maps: dict, idx: torch.Tensor):
    last = model.backbone.layers[-1]
    feats = last.downsample(last.blocks(maps["pre"][idx].float()))
    if "fine" in maps:
        feats = (feats, maps["fine"][idx].float())
    return model.forward_head(feats, int(maps["valid"]), int(maps["frames"]))


@torch.no_grad()
def val_metrics(model, maps: dict, batch: int = 256) -> dict:
    """:func:`audiomamba.evaluation.tagging_metrics` of ``model`` on cached validation ``maps``."""
    from audiomamba.evaluation import tagging_metrics

    model.eval()
    scores = [torch.sigmoid(_forward(model, maps, torch.arange(i, min(i + batch, len(maps["target"])))).logits)
              for i in range(0, len(maps["target"]), batch)]
    return tagging_metrics(torch.cat(scores).numpy(), maps["target"].numpy())


def val_map(model, maps: dict, batch: int = 256) -> float:
    return float(val_metrics(model, maps, batch)["mAP"])


def cache_tag(checkpoint: str, bank: str) -> str:
    """The cached maps' name for ``checkpoint`` and ``bank``: the bank folder's name and a digest of the
    checkpoint's bytes, the bank's index and its streams' sizes, so that maps of another model, or of another
    build of a bank in the same folder, are never read back as these."""
    import hashlib

    h = hashlib.sha1(Path(checkpoint).read_bytes())
    h.update((Path(bank) / "bank.json").read_bytes())
    for stream in sorted(Path(bank).glob("*.ogg")):
        h.update(f"{stream.name}:{stream.stat().st_size}".encode())
    return f"{Path(bank).name.lstrip('.') or 'bank'}_{h.hexdigest()[:10]}"


def refit(model, train: dict, val: dict, epochs: int, lr: float, weight_decay: float, batch: int, seed: int,
          last_stage: bool = False, frame_weight: float = 1.0) -> tuple[list[float], dict]:
    """Train the head (and with ``last_stage`` the backbone's last stage) on cached maps, with the training's
    losses, AdamW, a cosine decay to zero and gradients clipped at norm 1.  Returns the validation mAP before
    training and after each epoch, and the model's state at the best epoch (the model is left in it)."""
    from audiomamba.training.step import frame_loss, frame_targets, tagging_loss

    params = [p for m in _trained_modules(model, last_stage) for p in m.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps, span = model.step_grid(int(train["samples"]))
    gen = torch.Generator().manual_seed(seed)
    n = len(train["target"])
    total = epochs * (n // batch)
    history, best_state, step = [val_map(model, val)], _state(model), 0
    for _ in range(epochs):
        model.train()  # drop path in the last stage, as in training
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            idx = order[i : i + batch]
            for g in opt.param_groups:  # cosine decay to zero over the run
                g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / total))
            out = _forward(model, train, idx)
            loss = tagging_loss(out.logits, train["target"][idx], True)
            if frame_weight:
                target = frame_targets(train["events"][idx], train["target"].shape[1], steps, span)
                loss = loss + frame_weight * frame_loss(out.step_logits, target, train["has_events"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
        history.append(val_map(model, val))
        log.info("lr %g, epoch %d: validation mAP %.4f", lr, len(history) - 1, history[-1])
        if len(history) == 2 or history[-1] > max(history[1:-1]):  # the best epoch, even if below the start
            best_state = _state(model)
    model.load_state_dict(best_state)
    return history, best_state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--bank", default=".bank", help="source bank the training maps are mixed from")
    ap.add_argument("--val-bank", default=None, help="bank the validation maps come from (default --bank)")
    ap.add_argument("--cache", required=True, help="folder of the cached maps")
    ap.add_argument("--clips", type=int, default=6000, help="training soundscapes")
    ap.add_argument("--val-clips", type=int, default=0, help="validation clips (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--clip-seconds", type=float, default=10.0, help="training crops (the bank's clip length)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--last-stage", action="store_true", help="train the backbone's last stage too")
    ap.add_argument("--cache-only", action="store_true", help="compute the cached maps and stop")
    ap.add_argument("--save", action="store_true", help="write the best run's model to OUT/best.safetensors")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    from audiomamba import checkpoint

    model = checkpoint.load(a.checkpoint).eval()
    cache = Path(a.cache)
    train = cache_maps(model, a.bank, "train", a.clips, a.seed,
                       cache / f"train_{cache_tag(a.checkpoint, a.bank)}_{a.clips}_{a.seed}.pt", 16, a.workers, 0.35,
                       15.0, a.clip_seconds)
    val_bank = a.val_bank or a.bank
    val = cache_maps(model, val_bank, "validation", a.val_clips, 0,
                     cache / f"validation_{cache_tag(a.checkpoint, val_bank)}_{a.val_clips or 'all'}.pt", 16,
                     a.workers, 0.0, 0.0)
    if a.cache_only:
        return 0
    shipped = _state(model)
    labels = [lab["display_name"] for lab in checkpoint.read_meta(a.checkpoint)["labels"]]

    def class_ap() -> dict[str, float]:
        ap = val_metrics(model, val)["_per_class"]["ap"]
        return {lab: round(float(v), 4) for lab, v in zip(labels, ap) if not np.isnan(v)}

    shipped_ap = class_ap()
    runs, best = [], (-1.0, None, None)
    for lr in a.lr:
        model.load_state_dict(shipped)
        t0 = time.time()
        history, state = refit(model, train, val, a.epochs, lr, a.weight_decay, a.batch, a.seed, a.last_stage)
        runs.append({"lr": lr, "val_mAP": history, "seconds": round(time.time() - t0, 1)})
        log.info("lr %g: validation mAP %s", lr, " ".join(f"{h:.4f}" for h in history))
        if max(history[1:]) > best[0]:
            best = (max(history[1:]), lr, state)
    best_ap = {}
    if best[2] is not None:
        model.load_state_dict(best[2])
        best_ap = class_ap()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": a.checkpoint, "bank": a.bank, "val_bank": val_bank, "clips": a.clips, "seed": a.seed,
               "trained": "head and last stage" if a.last_stage else "head",
               "epochs": a.epochs, "batch": a.batch, "weight_decay": a.weight_decay,
               "shipped_val_mAP": runs[0]["val_mAP"][0], "runs": runs, "best": {"val_mAP": best[0], "lr": best[1]},
               "val_ap": {"shipped": shipped_ap, "best": best_ap}}  # validation AP per class
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if a.save and best[2] is not None:
        meta = checkpoint.read_meta(a.checkpoint)
        provenance = {"trained_by": "audiomamba scripts/head_refit.py", "head_refit": summary,
                      "initialised_from": meta.get("provenance")}
        checkpoint.save_model(model, out / "best.safetensors", labels=meta["labels"], provenance=provenance)
    print(json.dumps(summary["best"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
