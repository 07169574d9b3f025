"""Scoring a model on a clip set: :func:`predict` (scores of every clip, shared over the ranks of a
``torchrun`` job) and :func:`evaluate_scores` (the tagging metrics of those scores).

Used by validation during training (:mod:`audiomamba.training.trainer`) and by ``audiomamba evaluate``.
Scores are the model's logits through :func:`audiomamba.models.heads.logits_to_scores`, the activation every
output of the package goes through.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from audiomamba.datasets import ClipDataset, ClipSet, DatasetError, collate
from audiomamba.errors import CheckpointError
from audiomamba.evaluation.metrics import tagging_metrics
from audiomamba.inference.pieces import model_centre_padding, model_min_input_s, own_frames, step_samples
from audiomamba.models import mean_over_shifts
from audiomamba.models.heads import logits_to_scores
from audiomamba.utils import distributed as D
from audiomamba.utils.interrupt import ignore_interrupt

__all__ = ["predict", "evaluate_scores"]


@torch.no_grad()
def predict(model: nn.Module, cs: ClipSet, batch_size: int, device: torch.device, multi_label: bool,
            eval_seconds: float | None = None, framewise: bool = False, tta_shifts: int = 1,
            tta_spacing: int = 1, num_workers: int = 0, progress: bool = False,
            on_error: Callable[[str], object] | None = None, min_input_s: float | None = None) -> dict:
    """Scores of every clip of ``cs``, each rank computing its share (clips ``rank, rank + world, ...``) and the
    results gathered on all ranks.

    ``eval_seconds`` caps each clip's length. Each clip is scored at its own length, as the
    :class:`~audiomamba.inference.Tagger` scores a file (the clips of a batch go through the model in groups of
    one length, never padded to the batch's longest); one shorter than ``min_input_s`` (default: 2.5 s for a
    native-layout model, at most its training clip length:
    :func:`~audiomamba.inference.pieces.model_min_input_s`) is centred in silence that long and its framewise
    output cut back to its own frames, so short clips of any length go through the model together.
    ``framewise`` also returns per-frame scores (models with a framewise head) and, where the model gives them
    (one pass over the clip), the head's per-step logits (the framewise output is mapped from them in logit
    space: :func:`audiomamba.models.steps_to_frames`);
    ``tta_shifts`` averages the logits over that many circular shifts of the waveform, ``tta_spacing`` frames
    apart (a frame is the front end's hop, 10 ms for the built-in models; each shifted framewise output is moved
    back into place before averaging, and step logits are only returned unshifted, ``tta_shifts == 1``); a model
    output that is not finite is a ``CheckpointError`` naming the clip (broken weights give no scores);
    ``on_error`` is called (on the rank that read it) with the message of each clip that cannot be used --
    undecodable, truncated, or holding NaN or infinite samples anywhere; the message names the file and the
    cause.  Such clips are skipped and marked invalid, and counted in ``errors``.  The model is left in eval mode.

    Returns ``{"scores": (N, C), "targets": (N, C), "valid": (N,) bool, "framewise": {i: (frames, C)} | None,
    "step_logits": {i: (steps, C)} | None, "errors": [...] (all ranks'), "name": the clip set's name,
    "min_input_s": the padding length used}`` on every rank.
    """
    model.eval()
    sr = model.sample_rate
    if min_input_s is None:
        min_input_s = model_min_input_s(model)
    min_samples = int(round(min_input_s * sr))
    step = step_samples(model)
    ds = ClipDataset(cs, sr, train=False, eval_seconds=eval_seconds,
                     min_seconds=model.frontend.min_samples / sr + 1e-3)
    mine = list(range(D.rank(), len(cs), D.world_size()))
    batches = [mine[i: i + batch_size] for i in range(0, len(mine), batch_size)]
    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
                                         worker_init_fn=ignore_interrupt)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluate", unit="batch", leave=False)
    results, errors = {}, []
    for batch in loader:
        errors += batch["errors"]
        if on_error:
            for e in batch["errors"]:
                on_error(e)
        if batch["wave"] is None:
            continue
        lengths = batch["lengths"].tolist()
        pads = {n: model_centre_padding(model, n, min_samples) for n in set(lengths)}
        padded = [n + sum(pads[n]) for n in lengths]  # short clips of any length are centred in one length
        for total in sorted(set(padded)):
            rows = [j for j, n in enumerate(padded) if n == total]
            own = {lengths[j] for j in rows}
            if len(own) == 1:  # one length: one slice of the batch
                n = own.pop()
                wave = torch.nn.functional.pad(batch["wave"][rows, :n], pads[n])
            else:
                wave = torch.stack([torch.nn.functional.pad(batch["wave"][j, : lengths[j]], pads[lengths[j]])
                                    for j in rows])
            logits, fw_logits, step_logits = _shifted_logits(model, wave.to(device), tta_shifts, framewise,
                                                             tta_spacing)
            bad = ~torch.isfinite(logits).all(dim=1)
            if bool(bad.any()):  # finite input (checked) but not finite output: broken weights, never a score
                clip = cs.clips[int(batch["index"][rows[int(bad.nonzero()[0, 0])]])]
                raise CheckpointError(f"{clip.path} ({clip.source}): the model's output is not finite (NaN or inf): "
                                      "its weights are broken (a diverged training run, or a damaged checkpoint)")
            scores = logits_to_scores(logits, multi_label)
            fw_scores = logits_to_scores(fw_logits, multi_label).cpu().numpy() if fw_logits is not None else None
            for r, j in enumerate(rows):
                length, left = lengths[j], pads[lengths[j]][0]
                idx = int(batch["index"][j])
                entry = {"s": scores[r].cpu().numpy(), "t": batch["target"][j].numpy()}
                if fw_scores is not None:
                    entry["f"] = fw_scores[r, own_frames(model, left, length)]
                if step_logits is not None:  # the clip's own steps: its first is left // step of the padded input
                    s0 = left // step
                    entry["k"] = step_logits[r, :, s0 : s0 + model.step_grid(length)[0]].T.cpu().numpy()
                results[idx] = entry
    allres, allerr = {}, []
    for r, e in D.gather_objects((results, errors)):
        allres.update(r)
        allerr += e
    n, c = len(cs), cs.num_classes
    scores, targets, valid = np.zeros((n, c), np.float32), np.zeros((n, c), np.float32), np.zeros(n, bool)
    fws = {} if framewise else None
    steps = {} if framewise else None
    for idx, e in allres.items():
        scores[idx], targets[idx], valid[idx] = e["s"], e["t"], True
        if framewise and "f" in e:
            fws[idx] = e["f"]
        if framewise and "k" in e:
            steps[idx] = e["k"]
    return {"scores": scores, "targets": targets, "valid": valid, "framewise": fws, "step_logits": steps or None,
            "errors": allerr, "name": cs.name, "min_input_s": min_input_s}


def _shifted_logits(model: nn.Module, wave: torch.Tensor, shifts: int, framewise: bool,
                    spacing: int = 1) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Clip logits (and framewise logits when asked and the model has them), float32, averaged over ``shifts``
    circular shifts of ``wave`` by multiples of ``spacing`` frames (:func:`audiomamba.models.mean_over_shifts`);
    the step logits (the head's steps, which a shift of a few frames cannot be moved back onto) are
    returned only for one unshifted pass."""
    steps = None

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        nonlocal steps
        out = model(x)
        if framewise and shifts == 1 and out.step_logits is not None:
            steps = out.step_logits.float()
        fw = out.framewise_logits if framewise else None
        return out.logits.float(), None if fw is None else fw.float()

    logits, fw = mean_over_shifts(run, wave, shifts, spacing, model.frontend.cfg.hop_length)
    return logits, fw, steps


def evaluate_scores(pred: dict, multi_label: bool, threshold: float = 0.5) -> dict:
    """:func:`~audiomamba.evaluation.metrics.tagging_metrics` of the valid clips of a :func:`predict` result;
    ``DatasetError`` when no clip could be decoded."""
    v = pred["valid"]
    if not v.any():
        where = f"{pred['name']}: " if pred.get("name") else ""
        n = len(pred["errors"])
        raise DatasetError(f"{where}none of the {len(v)} clips could be used ({n} undecodable, truncated or "
                           f"non-finite; the first: {pred['errors'][0] if n else 'none'})")
    return tagging_metrics(pred["scores"][v], pred["targets"][v], threshold, multi_label)
