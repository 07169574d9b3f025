"""End to end: event timestamps from a real model forward are within one output step of the truth.

No trained weights exist yet, so the test makes a detector honestly: a randomly initialised audiomamba_nano
whose token-semantic head gets, for class "loud", a linear probe fitted on two generated clips (mean loud
feature minus mean quiet feature, the nearest-class-mean rule).  It is then run through ``Tagger.detect``
on a *third* clip with other onsets, and the detected onsets/offsets must be within one output step
(32 frames = 0.32 s, the tscam head's time resolution) of the truth.
"""

import numpy as np
import torch

import audiomamba
from audiomamba import Tagger

SR = 32000
STEP_S = 0.32
DUR = 5.11  # 512 frames = 16 whole output steps (no padded step at the end)


def clip(segments, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(DUR * SR)).astype(np.float32) * 0.001
    for a, b in segments:
        n = int(b * SR) - int(a * SR)
        x[int(a * SR) : int(b * SR)] += rng.standard_normal(n).astype(np.float32) * 0.3
    return x


def step_targets(segments, steps):
    y = np.zeros(steps, bool)
    for i in range(steps):
        overlap = sum(max(0.0, min((i + 1) * STEP_S, b) - max(i * STEP_S, a)) for a, b in segments)
        y[i] = overlap > STEP_S / 2
    return y


def test_event_onsets_within_one_output_step():
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=2, layout="native").eval()
    tagger = Tagger(model, labels=["loud", "other"])
    feats, targets = [], []
    for seed, segs in enumerate([[(0.8, 1.9), (3.0, 4.2)], [(0.3, 1.0), (2.2, 3.9)]]):
        spec = tagger.spectrogram(clip(segs, seed))[None]
        with torch.inference_mode():
            f, valid = model.forward_features(spec)
            f = model.head.norm(f)[0, :, :valid].mean(0)  # (steps, C), both frequency rows averaged
        feats.append(f.numpy())
        targets.append(step_targets(segs, valid))
    f, y = np.concatenate(feats), np.concatenate(targets)
    mu1, mu0 = f[y].mean(0), f[~y].mean(0)
    w = mu1 - mu0
    scale = 16.0 / float(w @ w)
    with torch.no_grad():
        conv = model.head.tscam_conv
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, :, :, 1] = torch.from_numpy(w * scale / 2)[:, None]  # centre tap, mean of the 2 rows
        conv.bias[0] = -float(w @ (mu1 + mu0) / 2) * scale

    truth = [(1.15, 2.4), (3.5, 4.6)]
    result = tagger.detect(clip(truth, 99), sample_rate=SR, threshold=0.5)
    found = [(e.onset, e.offset) for e in result.events if e.label == "loud"]
    assert len(found) == len(truth), found
    for (on, off), (t_on, t_off) in zip(found, truth):
        assert abs(on - t_on) <= STEP_S + 1e-6 and abs(off - t_off) <= STEP_S + 1e-6, (found, truth)
