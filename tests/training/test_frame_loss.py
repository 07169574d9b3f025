"""The frame loss (train.frame_loss_weight): strong labels rasterised onto the model's time steps, mixed with
mixup, masked for clips without them, refused where it cannot work, and better localisation than the clip loss."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiomamba import create_model
from audiomamba.checkpoint import load
from audiomamba.models import steps_to_frames
from audiomamba.datasets import ClipDataset, collate, open_split
from audiomamba.soundscapes.toy import TOY_CLASSES, make_toy_dataset
from audiomamba.training import build_model, train
from audiomamba.training.config import AugmentConfig, ConfigError, load_config
from audiomamba.training.step import batch_generator, frame_loss, frame_targets, mix_batch
from conftest import toy_train_raw

SR = 16000


def _reference(events: np.ndarray, num_classes: int, steps: int, span: float) -> np.ndarray:
    """Per clip, class and step: the fraction of the step's part inside the clip ([0, 1]) that the union of the
    class's events covers."""
    out = np.zeros((len(events), num_classes, steps))
    for b, rows in enumerate(events):
        for c in range(num_classes):
            union: list[list[float]] = []
            for on, off in sorted((max(on, 0.0), min(off, 1.0)) for k, on, off in rows if k == c):
                if off <= on:
                    continue
                if union and on <= union[-1][1]:
                    union[-1][1] = max(union[-1][1], off)
                else:
                    union.append([on, off])
            for j in range(steps):
                lo, hi = min(j * span / steps, 1.0), min((j + 1) * span / steps, 1.0)
                covered = sum(max(0.0, min(off, hi) - max(on, lo)) for on, off in union)
                out[b, c, j] = covered / (hi - lo)
    return out


def _random_events(rng: np.random.Generator, clips: int, num_classes: int, rows: int) -> np.ndarray:
    """(clips, rows, 3): per class disjoint events from sorted random cut points in [-0.2, 1.2] (so some run past
    the clip's edges), in random row order, then padding rows (class -1, random times that must be ignored)."""
    out = np.zeros((clips, rows, 3))
    for b in range(clips):
        evs = []
        for c in range(num_classes):
            cuts = np.sort(rng.uniform(-0.2, 1.2, size=2 * int(rng.integers(0, 3))))
            evs += [(c, cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2)]
        rng.shuffle(evs)
        pad = [(-1, *rng.uniform(0, 1, 2)) for _ in range(rows - len(evs))]
        out[b] = np.array(evs + pad).reshape(rows, 3)
    return out


@pytest.mark.parametrize("steps,span", [(1, 1.0), (2, 1.05), (7, 1.0), (7, 7 * 32 / 201), (32, 1.024), (32, 0.9997)])
def test_frame_targets_match_a_numpy_reference(steps, span):
    rng = np.random.default_rng(steps)
    events = _random_events(rng, clips=12, num_classes=5, rows=10)
    got = frame_targets(torch.tensor(events, dtype=torch.float32), 5, steps, span)
    assert got.shape == (12, 5, steps)
    np.testing.assert_allclose(got.numpy(), _reference(events, 5, steps, span), atol=2e-5)
    assert got.min() >= 0 and got.max() <= 1 and (got == 1).any() and (got == 0).any()


def test_frame_targets_of_padding_only_are_zero():
    events = torch.zeros(2, 16, 3)
    events[..., 0] = -1
    assert not frame_targets(events, 3, 4).any()


@pytest.mark.parametrize("layout,seconds", [("native", 0.3), ("native", 1.0), ("native", 2.04), ("fold", 0.5),
                                            ("fold", 2.0), ("fold", 10.23)])
def test_step_grid_matches_the_framewise_mapping(layout, seconds):
    """step_grid's equal shares put each frame in the step whose logits the model spreads onto it (fold: repeated
    over the step's frames; native: interpolated between step centres, so the nearest centre is the frame's own
    step)."""
    torch.manual_seed(0)
    model = create_model("audiomamba_nano", num_classes=2, layout=layout, sample_rate=SR)
    samples = int(seconds * SR)
    steps, span = model.step_grid(samples)
    frames = model.frontend.num_frames(samples)
    assert steps == (32 if layout == "fold" else math.ceil(frames / 32))
    spread = steps_to_frames(torch.arange(steps, dtype=torch.float64).view(1, 1, -1), frames, layout)[0, :, 0]
    k = torch.arange(frames, dtype=torch.float64)
    own = torch.floor(k / frames * steps / span + 1e-9)  # the step the grid puts frame k's start in
    assert torch.equal(torch.floor(spread + (0.5 if layout == "native" else 1e-9)), own)


@pytest.mark.parametrize("layout", ["native", "fold"])
def test_interpolated_steps_place_onsets_between_step_edges(layout):
    """Steps scored with the fraction of them an event covers (what frame_targets trains them on): thresholding
    the native layout's interpolated framewise output at 0.5 finds every onset within 0.05 s, wherever it falls in
    a step; the fold layout repeats each step (the official HTS-AT mapping) and is off by up to half a step."""
    frames, hop = 1001, 0.01  # a 10-s clip: 32 steps of 32 frames
    errors = []
    for onset in np.linspace(3.0, 3.32, 17):
        events = torch.tensor([[[0.0, onset / 10.24, 8.0 / 10.24]]], dtype=torch.float64)  # fractions of the grid
        cover = frame_targets(events, 1, 32)  # (1, 1, 32)
        logits = torch.logit(cover.clamp(0.0025, 0.9975))
        fw = torch.sigmoid(steps_to_frames(logits, 1024 if layout == "fold" else frames, layout))[0, :, 0]
        first = int(torch.nonzero(fw >= 0.5)[0, 0])
        errors.append(abs(first * hop - onset))
    if layout == "native":
        assert max(errors) < 0.05, errors
    else:
        assert max(errors) > 0.12, errors


def test_step_grid_refuses_long_fold_inputs():
    model = create_model("audiomamba_nano", num_classes=2, layout="fold", sample_rate=SR)
    with pytest.raises(ValueError, match="more than 1024"):
        model.step_grid(11 * SR)
    assert model.step_grid(11 * SR, layout="native")[0] == math.ceil(model.frontend.num_frames(11 * SR) / 32)


def test_mixup_mixes_frame_targets_like_clip_targets():
    target, frames = torch.rand(4, 3), torch.rand(4, 3, 5)
    mask = torch.tensor([True, True, False, True])
    aug = AugmentConfig(mixup="spec", mixup_prob=0.5)
    out = mix_batch(torch.randn(4, 100), target, aug, batch_generator(0, 0, 2, 0), frames, mask)
    lam = out.mixup_lambda
    assert (lam < 1).any() and (lam == 1).any()
    w = lam.view(-1, 1, 1)
    torch.testing.assert_close(out.frame_target, w * frames + (1 - w) * frames.flip(0))
    torch.testing.assert_close(out.target, lam.view(-1, 1) * target + (1 - lam.view(-1, 1)) * target.flip(0))
    # an example mixed with a partner that has no frame targets has none either
    assert out.frame_mask.tolist() == [bool(m and (lam[i] == 1 or mask[3 - i])) for i, m in enumerate(mask.tolist())]
    union = mix_batch(torch.randn(4, 100), target, AugmentConfig(mixup="wave", mixup_targets="max"),
                      batch_generator(0, 0, 1, 0), frames, mask)
    torch.testing.assert_close(union.frame_target, torch.maximum(frames, frames.flip(0)))
    assert mix_batch(torch.randn(4, 100), target, AugmentConfig(), batch_generator(0, 0, 1, 0)).frame_target is None
    with pytest.raises(ValueError, match="cutmix_prob"):
        mix_batch(torch.randn(4, 100), target, AugmentConfig(cutmix_prob=0.5), batch_generator(0, 0, 1, 0),
                  frames, mask)


def test_frame_loss_averages_over_the_masked_clips():
    logits, target = torch.randn(3, 4, 6), torch.rand(3, 4, 6)
    mask = torch.tensor([True, False, True])
    want = F.binary_cross_entropy_with_logits(logits[mask], target[mask])
    torch.testing.assert_close(frame_loss(logits, target, mask), want)
    assert float(frame_loss(logits, target, torch.zeros(3, dtype=torch.bool))) == 0.0


# ------------------------------------------------------------------------------------------------ training
def _cfg(root, out, **over):
    return load_config(raw=toy_train_raw(root, out, sample_rate=SR, **{"train__threads": 2,
                                                                      "train__frame_loss_weight": 1.0, **over}))


def _one_line_error(match: str, fn, *args, **kw) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)


def test_frame_loss_config_errors(tmp_path):
    root = make_toy_dataset(tmp_path / "toy", {"train": 4}, seconds=0.5, sample_rate=SR)
    out = tmp_path / "o"
    _one_line_error(r"train.frame_loss_weight must be >= 0", _cfg, root, out, train__frame_loss_weight=-1.0)
    _one_line_error(r"frame_loss_weight > 0 needs framewise outputs: model.head must be tscam, not 'linear'",
                    _cfg, root, out, model__head="linear")
    _one_line_error(r"train.loss must be bce or auto, not 'ce'", _cfg, root, out, train__loss="ce")
    _one_line_error(r"^augment.cutmix_prob > 0 and train.frame_loss_weight > 0 exclude each other",
                    _cfg, root, out, augment__cutmix_prob=0.5)
    _cfg(root, out, augment__cutmix_prob=0.5, train__frame_loss_weight=0.0)  # either alone is fine
    # found when training starts: single-label data, no strong labels, a step grid that moves with a crop
    single = make_toy_dataset(tmp_path / "single", {"train": 4}, seconds=0.5, sample_rate=SR, single_label=True)
    _one_line_error(r"needs a multi-label model; .* is single-label", train, _cfg(single, out))
    weak = tmp_path / "weak.jsonl"
    wavs = [str(root / "audio" / "train" / f"{i:06d}.wav") for i in range(4)]
    weak.write_text("".join(json.dumps({"path": w, "labels": ["Beep", "Hum"]}) + "\n" for w in wavs))
    _one_line_error(r"needs strong labels .* no clip of .*weak.jsonl has them", train, _cfg(weak, out))
    _one_line_error(r"fold layout: an input of \d+ frames .* use data.clip_seconds <= 10.24",
                    train, _cfg(root, out, model__layout="fold", data__clip_seconds=11.0))


def test_mixed_weak_and_strong_clips_train(tmp_path, caplog):
    """Clips with a label without events are left out of the frame loss (logged), the others train it."""
    root = make_toy_dataset(tmp_path / "toy", {"train": 4}, seconds=0.5, sample_rate=SR)
    lines = (root / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for r in rows[:2]:  # a label without events: weak
        r["labels"] = sorted(set(r["labels"]) | {next(n for n in TOY_CLASSES[:4] if n not in r["labels"])})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    caplog.set_level("INFO", logger="audiomamba.train")
    res = train(_cfg(root, tmp_path / "run", data__clip_seconds=0.3))
    assert res["steps"] == 1 and math.isfinite(res["losses"][0])
    assert "frame loss: 2 of 4 training clips have a label without events" in caplog.text


def _framewise(model, root):
    """Step logits and frame targets of the whole training clips, in eval mode."""
    cs = open_split(root, "train")
    ds = ClipDataset(cs, SR)
    batch = collate([ds[i] for i in range(len(cs))])
    model.eval()
    with torch.no_grad():
        logits = model(batch["wave"]).step_logits
    steps, span = model.step_grid(batch["wave"].shape[-1])
    return logits, frame_targets(batch["events"], cs.num_classes, steps, span)


def _localisation(logits, target) -> dict:
    """Frame BCE; within-clip AUC (for each clip and present class, steps mostly inside its events against steps
    outside them); frame F1 at probability 0.5 against targets >= 0.5."""
    wins = pairs = 0.0
    for b in range(len(logits)):
        for c in range(logits.shape[1]):
            pos, neg = logits[b, c][target[b, c] >= 0.5], logits[b, c][target[b, c] == 0]
            d = pos[:, None] - neg[None, :]
            wins += float((d > 0).sum() + 0.5 * (d == 0).sum())
            pairs += d.numel()
    p, t = torch.sigmoid(logits) >= 0.5, target >= 0.5
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    return {"bce": float(F.binary_cross_entropy_with_logits(logits, target)), "auc": wins / pairs,
            "f1": 2 * tp / (2 * tp + fp + fn), "pairs": pairs}


def test_frame_loss_localises_events_better_than_the_clip_loss(tmp_path):
    """Two runs of 8 steps on the same 4 strongly labelled clips of 2 s (7 time steps each), from the same
    initial weights, with and without the frame loss.  On the training clips the frame-loss run fits the frame
    targets (BCE well below the initial and the clip-only run's, which drives present classes' steps up
    everywhere) and localises better: inside-vs-outside-event AUC and frame F1 higher."""
    root = make_toy_dataset(tmp_path / "toy", {"train": 4}, seconds=2.0, sample_rate=SR)
    over = dict(data__clip_seconds=2.0, train__epochs=8)
    torch.manual_seed(0)  # the trainer's initial weights (train.seed 0)
    init = _localisation(*_framewise(build_model(_cfg(root, tmp_path / "x", **over), 4), root))
    runs = {}
    for w in (0.0, 1.0):
        res = train(_cfg(root, tmp_path / f"w{w}", train__frame_loss_weight=w, **over))
        assert res["steps"] == 8
        runs[w] = _localisation(*_framewise(load(tmp_path / f"w{w}" / "final.safetensors"), root))
    clip_only, framed = runs[0.0], runs[1.0]
    assert init["pairs"] >= 40, init
    assert framed["bce"] < 0.9 * init["bce"] and framed["bce"] < 0.5 * clip_only["bce"], runs
    assert framed["auc"] > clip_only["auc"] + 0.05, runs
    assert framed["f1"] > clip_only["f1"] + 0.1, runs
