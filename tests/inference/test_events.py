import numpy as np
import pytest

from audiomamba.inference.events import Event, binarize, detect_events, frames_to_events, median_filter

FPS = 100.0


def test_frames_to_events_timestamps_and_scores():
    probs = np.zeros((100, 2), np.float32)
    probs[10:30, 0] = 0.9
    probs[20, 0] = 0.95
    probs[50:100, 1] = 0.7
    events, _ = detect_events(probs, ["a", "b"], FPS, threshold=0.5)
    assert events == [Event("a", 0.10, 0.30, pytest.approx(0.95)), Event("b", 0.50, 1.00, pytest.approx(0.7))]
    assert list(events[0]) == ["a", 0.10, 0.30, pytest.approx(0.95)]  # unpacks as (label, onset, offset, score)


def test_offset_clipped_to_duration():
    probs = np.ones((11, 1), np.float32)
    events, _ = detect_events(probs, ["a"], FPS, duration_s=0.105)
    assert events[0].offset == pytest.approx(0.105)


def test_min_gap_merges_and_min_duration_drops():
    active = np.zeros((100, 1), bool)
    active[10:20] = active[23:40] = True  # gap of 3 frames = 30 ms
    active[60:62] = True  # 20 ms
    probs = active.astype(np.float32)
    assert len(frames_to_events(active, probs, ["a"], FPS)) == 3
    merged = frames_to_events(active, probs, ["a"], FPS, min_gap=0.03)
    assert [(e.onset, e.offset) for e in merged][0] == pytest.approx((0.10, 0.40))
    kept = frames_to_events(active, probs, ["a"], FPS, min_gap=0.03, min_duration=0.05)
    assert len(kept) == 1


def test_median_filter_removes_spikes_and_keeps_edges():
    x = np.zeros((50, 2), np.float32)
    x[10, 0] = 1.0  # 1-frame spike
    x[20:40, 1] = 1.0
    y = median_filter(x, 5)
    assert y[:, 0].max() == 0.0
    np.testing.assert_array_equal(y[:, 1], x[:, 1])
    per_class = median_filter(x, [1, 5])
    assert per_class[10, 0] == 1.0


def test_per_class_threshold_and_bad_shapes():
    probs = np.full((10, 2), 0.4, np.float32)
    assert binarize(probs, [0.3, 0.5]).any(axis=0).tolist() == [True, False]
    with pytest.raises(ValueError, match="one per class"):
        binarize(probs, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="labels"):
        frames_to_events(probs > 0, probs, ["a"], FPS)
