"""Dataset readers: each format loads a fixture written here; bad input gives clear errors."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from audiomamba.datasets import ClipDataset, DatasetError, collate, detect_format, open_split
from audiomamba.datasets.sampler import BatchSampler
from audiomamba.soundscapes.toy import make_toy_dataset
from conftest import event_mask, locate

SR = 16000


def _wav(path, seconds=0.5, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(int(seconds * sr))).astype(np.float32), sr)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), {"train": 6, "validation": 4}, seconds=1.0)


def test_jsonl_manifest(toy):
    cs = open_split(toy, "train")
    assert detect_format(toy) == "manifest" and len(cs) == 6 and cs.num_classes == 4 and cs.multi_label
    assert all(c.events for c in cs.clips) and cs.has_events
    item = ClipDataset(cs, SR, train=False)[0]
    assert item["wave"].dtype == np.float32 and item["target"].sum() >= 1


def test_csv_manifest_weak_and_strong(tmp_path):
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.wav")
    (tmp_path / "weak.csv").write_text("path,labels\na.wav,Dog;Cat\nb.wav,Cat\n")
    cs = open_split(tmp_path / "weak.csv", "x")
    assert cs.label_names == ["Cat", "Dog"] and cs.clips[0].targets == (0, 1)
    (tmp_path / "strong.csv").write_text("path,label,onset,offset\na.wav,Dog,0.1,0.3\na.wav,Cat,0.2,0.4\nb.wav,Cat,0,0.5\n")
    cs = open_split(tmp_path / "strong.csv", "x")
    assert len(cs) == 2 and len(cs.clips[0].events) == 2


def test_manifest_errors(tmp_path):
    _wav(tmp_path / "a.wav")
    (tmp_path / "class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/1,Dog\n")
    (tmp_path / "train.jsonl").write_text(json.dumps({"path": "a.wav", "labels": ["Dog"]}) + "\n"
                                          + json.dumps({"path": "a.wav", "labels": ["Unicorn"]}) + "\n")
    with pytest.raises(DatasetError, match=r"train.jsonl:2: label 'Unicorn' is not in the label set"):
        open_split(tmp_path, "train")
    (tmp_path / "validation.jsonl").write_text(json.dumps({"path": "missing.wav", "labels": ["Dog"]}) + "\n")
    with pytest.raises(DatasetError, match=r"validation.jsonl:1: audio file not found: .*missing.wav"):
        open_split(tmp_path, "validation")
    (tmp_path / "test.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="empty"):
        open_split(tmp_path, "test")
    with pytest.raises(DatasetError, match="no manifest for split 'nope'"):
        open_split(tmp_path, "nope")


def test_audioset_layout(tmp_path):
    (tmp_path / "class_labels_indices.csv").write_text('index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/0bt9lr,"Dog"\n2,/m/01yrx,Cat\n')
    (tmp_path / "balanced_train_segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/0bt9lr"\n'
        'abcdefghijk, 0.000, 10.000, "/m/01yrx"\n'
        'zzzzzzzzzzz, 0.000, 10.000, "/m/01yrx"\n')
    _wav(tmp_path / "audio" / "Y--PJHxphWEs.wav")
    _wav(tmp_path / "audio" / "sub" / "abcdefghijk_0.000.flac")
    assert detect_format(tmp_path) == "audioset"
    cs = open_split(tmp_path, "train")
    assert len(cs) == 2 and cs.info["missing"] == 1
    assert cs.clips[0].targets == (0, 1) and cs.clips[1].targets == (2,)
    (tmp_path / "eval_segments.csv").write_text('abcdefghijk, 0.000, 10.000, "/m/nope"\n')
    with pytest.raises(DatasetError, match=r"eval_segments.csv:1: label '/m/nope'"):
        open_split(tmp_path, "validation")


def test_esc50_layout_folds(tmp_path):
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for i in range(10):
        name = f"{i % 5 + 1}-{i}-A-{i % 2}.wav"
        rows.append(f"{name},{i % 5 + 1},{i % 2},{'dog' if i % 2 == 0 else 'rain'},False,{i},A")
        _wav(tmp_path / "audio" / name)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    assert detect_format(tmp_path) == "esc50"
    tr = open_split(tmp_path, "train", fold=1)
    va = open_split(tmp_path, "validation", fold=1)
    assert len(tr) == 8 and len(va) == 2 and not tr.multi_label and tr.label_names == ["dog", "rain"]
    assert len(open_split(tmp_path, "fold3")) == 2
    with pytest.raises(DatasetError, match="needs data.fold"):
        open_split(tmp_path, "train")


def test_class_folders(tmp_path):
    for c in ("cat", "dog"):
        for i in range(10):
            _wav(tmp_path / c / f"{i}.wav")
    assert detect_format(tmp_path) == "folder"
    everything = open_split(tmp_path, "all")
    tr, va = open_split(tmp_path, "train", val_fraction=0.3), open_split(tmp_path, "validation", val_fraction=0.3)
    assert len(everything) == 20 == len(tr) + len(va) and len(va) > 0
    assert not {c.path for c in tr.clips} & {c.path for c in va.clips}


def test_shards_roundtrip(toy, tmp_path):
    from audiomamba.datasets.pack import pack

    cs = open_split(toy, "train")
    pack(cs, tmp_path / "packed", "train", SR, shard_size=4, progress=False)
    assert detect_format(tmp_path / "packed") == "shards"
    ps = open_split(tmp_path / "packed", "train")
    assert len(ps) == len(cs) and [c.targets for c in ps.clips] == [c.targets for c in cs.clips]
    a = ClipDataset(cs, SR)[3]["wave"]
    b = ClipDataset(ps, SR)[3]["wave"]
    assert len(a) == len(b) and np.abs(a - b).max() < 1e-3  # 16-bit FLAC


def test_corrupt_clip_is_skipped_and_reported(toy, tmp_path):
    import shutil

    d = tmp_path / "c"
    shutil.copytree(toy, d)
    (d / "audio" / "train" / "000002.wav").write_bytes(b"not audio at all")
    cs = open_split(d, "train")
    batch = collate([ClipDataset(cs, SR, train=True, clip_seconds=0.5)[(i, i)] for i in range(4)])
    assert batch["wave"].shape == (3, 8000) and len(batch["errors"]) == 1 and "000002.wav" in batch["errors"][0]


def test_training_crops_are_reproducible_and_event_aware(toy):
    cs = open_split(toy, "train")
    ds = ClipDataset(cs, SR, train=True, clip_seconds=0.3, gain_db=3.0)
    a, b = ds[(1, 1234)], ds[(1, 1234)]
    assert np.array_equal(a["wave"], b["wave"]) and len(a["wave"]) == int(0.3 * SR)
    assert a["target"].sum() <= len(cs.clips[1].targets)


def _expected_mask(ds, clip, full_len, crop_at, kept, pad_at, shift, n):
    """Where the clip's events must lie in a training item, sample by sample: each event that counts for the crop
    (overlap >= min(min_event_overlap, half its length)), marked on the whole clip, cut, padded and rolled."""
    lo = crop_at / SR
    hi = lo + ds.clip_seconds
    counted = [e for e in clip.events if min(e[2], hi) - max(e[1], lo) >= min(ds.min_event_overlap, (e[2] - e[1]) / 2)]
    whole = event_mask(counted, ds.cs.num_classes, full_len, SR)
    item = np.zeros((ds.cs.num_classes, n), dtype=bool)
    item[:, pad_at: pad_at + kept] = whole[:, crop_at: crop_at + kept]
    return np.roll(item, shift, axis=1)


@pytest.mark.parametrize("clip_seconds,time_shift", [(0.4, 0.0), (0.4, 0.5), (1.5, 0.0), (1.5, 0.5)],
                         ids=["crop", "crop+shift", "pad", "pad+shift"])
def test_collated_events_follow_the_crop(toy, clip_seconds, time_shift):
    """The batch's strong labels (class, onset, offset as fractions of the crop) lie where the clip's events are
    in the cropped (or padded) and rolled waveform: the crop, padding and roll are recovered from the audio."""
    cs = open_split(toy, "train")
    plain = ClipDataset(cs, SR, train=True, clip_seconds=clip_seconds)
    ds = ClipDataset(cs, SR, train=True, clip_seconds=clip_seconds, time_shift=time_shift)
    keys = [(i, 100 + 7 * i + s) for s in range(3) for i in range(len(cs))]
    items = [ds[k] for k in keys]
    batch = collate(items)
    n = int(round(clip_seconds * SR))
    assert batch["events"].shape == (len(keys), 16, 3) and batch["has_events"].all() and batch["events_overflow"] == 0
    for row, (i, seed), item in zip(range(len(keys)), keys, items):
        clip, wave = cs.clips[i], plain[(i, seed)]["wave"]  # the same crop and padding, not rolled
        full = ClipDataset(cs, SR)[i]["wave"]
        if len(full) > n:
            crop_at, kept, pad_at = locate(wave, full), n, 0
        else:
            crop_at, kept, pad_at = 0, len(full), locate(full, wave)
        shift = (-locate(item["wave"], np.concatenate([wave, wave[:-1]]))) % n
        want = _expected_mask(ds, clip, len(full), crop_at, kept, pad_at, shift, n)
        got = event_mask(batch["events"][row].tolist(), cs.num_classes, n, n)
        assert (want != got).sum() <= 4 * len(clip.events), (i, seed)
        rows = batch["events"][row]
        assert set(rows[rows[:, 0] >= 0, 0].long().tolist()) == set(np.flatnonzero(item["target"]).tolist())
        assert ((rows[:, 0] == -1) == (rows[:, 2] == 0)).all() and (rows[:, 1:] >= 0).all() and (rows[:, 1:] <= 1).all()


def test_weak_clips_and_crowded_clips_have_no_frame_targets(toy):
    """A clip with a label that has no events gets no events (has_events false); so does one with more event
    rows than a batch holds, counted; same-class events that overlap are merged into one row."""
    from dataclasses import replace

    from audiomamba.datasets.loader import MAX_EVENTS, batch_events

    cs = open_split(toy, "train")
    clip = cs.clips[0]
    other = next(t for t in range(cs.num_classes) if t not in clip.targets)
    weak = replace(cs, clips=[replace(clip, targets=clip.targets + (other,))])
    item = ClipDataset(weak, SR, train=True, clip_seconds=0.4)[(0, 1)]
    assert item["events"] is None and item["target"][other] == 1
    crowded = [(0, 0.01 * k, 0.01 * k + 0.005) for k in range(MAX_EVENTS + 1)]
    overlapping = [(1, 0.1, 0.3), (1, 0.2, 0.5), (1, 0.6, 0.7), (2, 0.25, 0.4)]
    sets = [replace(cs, clips=[replace(clip, targets=tuple(sorted({e[0] for e in evs})), events=tuple(evs))])
            for evs in (crowded, overlapping)]
    items = [ClipDataset(c, SR)[0] for c in sets] + [item]
    batch = collate(items)
    assert batch["has_events"].tolist() == [False, True, False] and batch["events_overflow"] == 1
    n = batch["wave"].shape[1]
    rows = batch["events"][1]
    want = torch.tensor([[1, 0.1, 0.5], [1, 0.6, 0.7], [2, 0.25, 0.4]]) * torch.tensor([1, SR / n, SR / n])
    torch.testing.assert_close(rows[:3], want)
    assert (rows[3:, 0] == -1).all() and (batch["events"][0, :, 0] == -1).all()
    events, has, overflow = batch_events([None], 100)
    assert events.shape == (1, MAX_EVENTS, 3) and not has.any() and overflow == 0


def test_sampler_ranks_partition_global_batches(toy):
    cs = open_split(toy, "train")
    single = list(BatchSampler(cs, 4, "balanced", epoch_size=8, seed=3))
    r0 = list(BatchSampler(cs, 2, "balanced", epoch_size=8, seed=3, rank=0, world_size=2))
    r1 = list(BatchSampler(cs, 2, "balanced", epoch_size=8, seed=3, rank=1, world_size=2))
    assert [a + b for a, b in zip(r0, r1)] == single
    whole = list(BatchSampler(cs, 4, "shuffle", seed=3))
    s = BatchSampler(cs, 4, "shuffle", seed=3)
    s.set_position(0, 1)
    assert list(s) == whole[1:] and len(whole) == 1 + len(whole[1:])
