"""The source bank and the soundscapes mixed from it on the fly, on synthetic recordings written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiomamba.cli import main as cli_main
from audiomamba.datasets import ClipDataset, DatasetError, collate, load_clip, open_split
from audiomamba.soundscapes.bank import SourceBank, build_bank, open_bank
from audiomamba.soundscapes.mixer import MixConfig
from audiomamba.soundscapes.sources import active_region, user_items
from conftest import event_mask, load_script, locate

SR_SRC = 16000
SR = 16000
CLASSES = {"Dog": 440.0, "Piano": 880.0, "Snare drum": 1320.0, "Violin, fiddle": 660.0}
FILES = 6  # one group each: enough for every class in every split


def _burst(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR_SRC)) / SR_SRC
    tone = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))
    pad = np.zeros(int(0.3 * SR_SRC))
    return np.concatenate([pad, tone, pad]).astype(np.float32) * rng.uniform(0.3, 1.0)


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bank_sources")
    rng = np.random.default_rng(1)
    for label, freq in CLASSES.items():
        (root / label).mkdir()
        for i in range(FILES):
            sf.write(root / label / f"{i}.wav", _burst(freq * (1 + 0.03 * i), rng.uniform(0.4, 1.5), rng), SR_SRC)
    return root


MIX = MixConfig(duration=3.0, sample_rate=SR, max_events=3, max_event_s=1.0)
CLIPS = {"train": 40, "validation": 12, "test": 12}


@pytest.fixture(scope="module")
def bank_dir(source_dir, tmp_path_factory) -> Path:
    items, skipped = user_items(source_dir)
    assert skipped == 0 and len(items) == len(CLASSES) * FILES
    out = tmp_path_factory.mktemp("bank")
    summary = build_bank(items, out, sample_rate=SR, max_seconds=1.2, mix=MIX, clips=CLIPS, seed=3, jobs=1)
    assert sorted(summary.classes) == sorted(CLASSES) and not summary.dropped_classes and summary.failed_reads == 0
    return out


def _meta(bank_dir: Path) -> dict:
    return json.loads((bank_dir / "bank.json").read_text())


def test_splits_are_disjoint_by_group_and_cover_every_class(bank_dir):
    meta = _meta(bank_dir)
    rows = [dict(zip(meta["fields"], r)) for r in meta["recordings"]]
    split_of_group: dict[str, set] = {}
    for r in rows:
        split_of_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    for c in CLASSES:
        assert {r["split"] for r in rows if r["label"] == c} == {"train", "validation", "test"}
    assert all(r["licence"] and r["origin"] == "user" for r in rows)


def test_recordings_decode_close_to_their_trimmed_sources(bank_dir, source_dir):
    """Each recording in the bank is its source trimmed to the active part, cut to max_seconds and normalised:
    compared with that computed independently here, the lossy codec (Vorbis at the default quality, 0.3) keeps it
    above 15 dB SNR, and the median recording above 20 dB."""
    bank = open_bank(bank_dir)
    assert bank.audio.dtype == np.int16
    snrs = []
    for r in bank.recordings:
        src, sr = sf.read(source_dir / r.key.removeprefix("user:"), dtype="float32")
        a, b = active_region(src, sr, -40.0)
        want = src[a: min(b, a + int(1.2 * sr))]
        want = want / np.abs(want).max()
        got = bank.audio[r.start: r.start + r.length].astype(np.float64)
        got = got / np.abs(got).max()
        assert r.length == len(want)
        snr = 10 * np.log10(np.sum(want**2) / np.sum((got - want) ** 2))
        snrs.append(snr)
    assert min(snrs) > 15 and np.median(snrs) > 20, sorted(snrs)[:3]


def test_training_recordings_added_later_leave_every_held_out_stream_as_it_was(source_dir, tmp_path):
    """Each split is its own stream, so a bank rebuilt with one more training recording (a new group pinned to
    train) decodes its validation and test streams to the same samples, bit for bit, and plans and renders the
    same held-out clips."""
    items, _ = user_items(source_dir)
    extra_dir = tmp_path / "extra" / "Dog"
    extra_dir.mkdir(parents=True)
    sf.write(extra_dir / "new.wav", _burst(470.0, 1.0, np.random.default_rng(5)), SR_SRC)
    extra, _ = user_items(tmp_path / "extra")
    kw = dict(sample_rate=SR, max_seconds=1.2, mix=MIX, clips=CLIPS, seed=3, jobs=1)
    build_bank(items, tmp_path / "a", **kw)
    pins = {row[2]: row[3] for row in _meta(tmp_path / "a")["recordings"]}  # group -> split
    build_bank(items + extra, tmp_path / "b", pinned={**pins, extra[0].group: "train"}, **kw)
    a, b = open_bank(tmp_path / "a"), open_bank(tmp_path / "b")
    assert len(b.recordings) == len(a.recordings) + 1
    for split in ("validation", "test"):  # the same samples (the files differ only in their random stream serial)
        x, _ = sf.read(tmp_path / "a" / f"{split}.ogg", dtype="int16")
        y, _ = sf.read(tmp_path / "b" / f"{split}.ogg", dtype="int16")
        assert np.array_equal(x, y)
        ca, cb = open_split(tmp_path / "a", split), open_split(tmp_path / "b", split)
        assert len(ca) == len(cb) == CLIPS[split]
        for x, y in zip(ca.clips, cb.clips):
            assert (x.targets, x.events) == (y.targets, y.events)
            assert np.array_equal(load_clip(x, SR), load_clip(y, SR))
    assert sf.info(tmp_path / "b" / "train.ogg").frames > sf.info(tmp_path / "a" / "train.ogg").frames


def test_clipset_labels_events_and_rendered_audio_agree(bank_dir):
    cs = open_split(bank_dir, "train")
    assert cs.name.endswith(":train") and len(cs) == CLIPS["train"] and cs.label_names == open_bank(bank_dir).classes
    bank = open_bank(bank_dir)
    for clip in cs.clips[:20]:
        assert clip.duration == pytest.approx(MIX.duration)
        assert 1 <= len(clip.events) <= MIX.max_events
        assert set(clip.targets) == {e[0] for e in clip.events}
        assert all(0 <= on < off <= MIX.duration for _, on, off in clip.events)
        x = load_clip(clip, SR)
        assert x.shape == (int(MIX.duration * SR),) and x.dtype == np.float32 and np.isfinite(x).all()
        assert np.abs(x).max() <= 0.9 + 1e-6
        # inside every event the level is at least the lowest SNR above the background alone
        _, _, _, bg_db, events = clip.plan
        bg = 10 ** (bg_db / 20)
        for (_, on, off), (_, _, take, onset, snr) in zip(clip.events, events):
            seg = x[onset: onset + take]
            assert 20 * np.log10(np.sqrt(np.mean(seg.astype(np.float64) ** 2)) / bg) > MIX.snr_db[0] - 1.5
    # the events' labels are the recordings' labels
    assert all(bank.recordings[e[0]].label == cs.label_names[t] for c in cs.clips for (t, _, _), e in
               zip(c.events, c.plan[4]))


def test_plans_depend_only_on_seed_split_and_index(bank_dir):
    a = open_split(bank_dir, "train")
    b = open_split(bank_dir, "train:7")
    assert [c.plan for c in b.clips] == [c.plan for c in a.clips[:7]]
    assert np.array_equal(load_clip(a.clips[3], SR), load_clip(b.clips[3], SR))
    val = open_split(bank_dir, "validation")
    assert [c.plan for c in val.clips] == [c.plan for c in open_split(bank_dir, "validation").clips]
    assert {c.plan for c in val.clips}.isdisjoint({c.plan for c in a.clips})
    # a validation clip only uses validation recordings
    bank = open_bank(bank_dir)
    assert all(bank.recordings[e[0]].split == "validation" for c in val.clips for e in c.plan[4])


def test_every_class_is_dealt_about_equally_often(bank_dir):
    cs = open_split(bank_dir, "train:400")
    counts = np.bincount([e[0] for c in cs.clips for e in c.events], minlength=len(CLASSES))
    assert counts.max() - counts.min() <= 1


def test_training_loader_with_workers_matches_in_process(bank_dir):
    cs = open_split(bank_dir, "train")
    ds = ClipDataset(cs, SR, train=True, clip_seconds=2.0)
    batches = [[(i, 100 + i) for i in range(8)], [(i, 200 + i) for i in range(8, 16)]]
    ref = [collate([ds[i] for i in b]) for b in batches]
    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=2)
    for want, got in zip(ref, loader):
        assert torch.equal(want["wave"], got["wave"]) and torch.equal(want["target"], got["target"])
        assert got["wave"].shape == (8, 2 * SR)


def _copy_bank(src: Path, dst: Path) -> None:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())


def test_bad_banks_are_refused_naming_the_file(bank_dir, tmp_path):
    for name, mutate in {
        "bad_json": lambda d: (d / "bank.json").write_text("{not json"),
        "wrong_format": lambda d: (d / "bank.json").write_text(json.dumps({"format": "something-else"})),
        "missing_key": lambda d: (d / "bank.json").write_text(json.dumps({**_meta(bank_dir), "classes": None})),
        "no_streams": lambda d: (d / "bank.json").write_text(json.dumps({**_meta(bank_dir), "streams": None})),
        "new_version": lambda d: (d / "bank.json").write_text(json.dumps({**_meta(bank_dir), "version": 9})),
    }.items():
        _copy_bank(bank_dir, tmp_path / name)
        mutate(tmp_path / name)
        with pytest.raises(DatasetError, match="bank.json"):
            SourceBank(tmp_path / name)
    short = tmp_path / "short"
    _copy_bank(bank_dir, short)
    sf.write(short / "validation.ogg", np.zeros(SR, np.float32), SR, format="OGG", subtype="VORBIS")
    with pytest.raises(DatasetError, match="validation.ogg.*damaged"):
        SourceBank(short)
    (short / "validation.ogg").write_bytes(b"not ogg")
    with pytest.raises(DatasetError, match="validation.ogg: cannot decode"):
        SourceBank(short)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "bank.json").write_text((bank_dir / "bank.json").read_text())
    with pytest.raises(DatasetError, match="none of the bank's audio streams is there"):
        SourceBank(empty)
    partial = tmp_path / "partial"  # an index that names no test stream: the other splits still open
    _copy_bank(bank_dir, partial)
    meta = _meta(bank_dir)
    (partial / "bank.json").write_text(json.dumps({**meta, "streams": {k: v for k, v in meta["streams"].items()
                                                                       if k != "test"}}))
    assert len(open_split(partial, "validation")) == CLIPS["validation"]
    with pytest.raises(DatasetError, match=r"test\.ogg: missing; this copy of the bank holds only train, validation"):
        open_split(partial, "test")
    with pytest.raises(DatasetError, match="splits"):
        open_split(bank_dir, "holdout")
    with pytest.raises(DatasetError, match="integer"):
        open_split(bank_dir, "train:many")


def test_a_version_1_bank_with_one_stream_reads_as_its_splits_streams(bank_dir, tmp_path):
    """Banks written before the streams were split (version 1: every split in bank.ogg, starts counted in it)
    still open, and give the same clips, bit for bit, when their stream holds the same samples."""
    meta, old = _meta(bank_dir), tmp_path / "v1"
    old.mkdir()
    new = SourceBank(bank_dir)
    # one stream of all splits, in the streams' order; each recording's start moved by the streams before its own
    splits = list(meta["streams"])
    start = {s: sum(meta["streams"][t]["samples"] for t in splits[: splits.index(s)]) for s in splits}
    rows = [row[:6] + [row[6] + start[row[3]], row[7]] for row in meta["recordings"]]
    v1 = {k: v for k, v in meta.items() if k != "streams"} | {"version": 1, "recordings": rows}
    (old / "bank.json").write_text(json.dumps(v1))
    sf.write(old / "bank.wav", new.audio, SR, subtype="PCM_16")  # lossless, so the samples are the same
    (old / "bank.wav").rename(old / "bank.ogg")  # libsndfile reads by content, not by name
    legacy = SourceBank(old)
    assert np.array_equal(legacy.audio, new.audio)
    for split in ("validation", "test"):
        a, b = open_split(bank_dir, split), open_split(old, split)
        for x, y in zip(a.clips, b.clips):
            assert (x.targets, x.events) == (y.targets, y.events)
            assert np.array_equal(load_clip(x, SR), load_clip(y, SR))


def test_cli_builds_a_bank_from_a_source_folder(source_dir, tmp_path, capsys):
    out = tmp_path / "bank"
    code = cli_main(["data", "bank", "--out", str(out), "--source-dir", str(source_dir), "--no-builtin",
                     "--sample-rate", "16000", "--duration", "2", "--events", "1,2", "--max-seconds", "1",
                     "--clips", "train=9,validation=3,test=3", "--jobs", "1", "-q"])
    assert code == 0, capsys.readouterr()
    meta = _meta(out)
    assert meta["clips"] == {"train": 9, "validation": 3, "test": 3} and meta["mix"]["max_events"] == 2
    assert len(open_split(out, "test")) == 3
    assert cli_main(["data", "bank", "--out", str(tmp_path / "b2"), "--source-dir", str(source_dir), "--no-builtin",
                     "--clips", "train=0", "-q"]) == 2
    assert "clips per split" in capsys.readouterr().err


def test_collated_strong_labels_of_random_crops(bank_dir):
    """A batch of random 2 s crops of the bank's 3 s soundscapes carries each crop's events (clip events cut to
    the crop, as fractions of it): the crop is found in the rendered clip, and the events marked there agree."""
    cs = open_split(bank_dir, "train")
    ds = ClipDataset(cs, SR, train=True, clip_seconds=2.0)
    keys = [(i, 300 + i) for i in range(12)]
    items = [ds[k] for k in keys]
    batch = collate(items)
    n = 2 * SR
    assert batch["has_events"].all() and batch["events"].shape == (12, 16, 3)
    for row, (i, _), item in zip(range(12), keys, items):
        clip = cs.clips[i]
        full = load_clip(clip, SR)
        a = locate(item["wave"], full)
        counted = [e for e in clip.events
                   if min(e[2], a / SR + 2.0) - max(e[1], a / SR) >= min(ds.min_event_overlap, (e[2] - e[1]) / 2)]
        want = event_mask(counted, cs.num_classes, len(full), SR)[:, a: a + n]
        got = event_mask(batch["events"][row].tolist(), cs.num_classes, n, n)
        assert (want != got).sum() <= 4 * len(clip.events), i
        classes = batch["events"][row, :, 0]
        assert set(classes[classes >= 0].long().tolist()) == set(np.flatnonzero(item["target"]).tolist())


@pytest.mark.parametrize("step_frames", [32, 8])
def test_step_scores_read_back_the_models_framewise_output(bank_dir, tmp_path, step_frames):
    """scripts/compare_eval.py keeps the head's step logits (float16) in steps.npz; its step_scores maps them back
    onto the frames as the model does (finer steps too): the framewise scores that predict gives, to the float16
    rounding, with the clip names, events with label names and durations of the split."""
    import audiomamba
    from audiomamba.checkpoint import load
    from audiomamba.evaluation import predict

    compare_eval = load_script("compare_eval")
    cs = open_split(bank_dir, "test")
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=cs.num_classes, layout="native", sample_rate=SR,
                                    step_frames=step_frames)
    with torch.no_grad():  # sizeable step logits, so that the framewise output varies within each step
        model.head.tscam_conv.weight.mul_(30.0)
        if step_frames != 32:  # and a correction from the finer steps
            model.fine_steps.out.weight.normal_(0.0, 0.3)
    ckpt = tmp_path / "m.safetensors"
    audiomamba.save_model(model, ckpt, labels=cs.label_names, provenance={"note": "tests"})
    assert compare_eval.main(["--checkpoint", str(ckpt), "--data", str(bank_dir), "--split", "test", "--out",
                              str(tmp_path / "ev"), "--workers", "0", "--device", "cpu"]) == 0
    fw, hop, gt, dur, names = compare_eval.step_scores(tmp_path / "ev" / "steps.npz", str(bank_dir), "test", "bank")
    pred = predict(load(ckpt, torch.device("cpu")), cs, 128, torch.device("cpu"), True, framewise=True)  # as main
    assert hop == pytest.approx(0.01) and names == cs.label_names and len(fw) == len(cs.clips)
    spread = 0.0
    for i, clip in enumerate(cs.clips):
        want = pred["framewise"][i]
        assert fw[clip.name].shape == want.shape
        np.testing.assert_allclose(fw[clip.name], want, atol=2e-3)
        spread = max(spread, float(np.ptp(want[:32], axis=0).max()))
        assert gt[clip.name] == [(on, off, names[t]) for t, on, off in clip.events]
        assert dur[clip.name] == pytest.approx(max(want.shape[0] * 0.01, max(off for _, _, off in clip.events)))
    assert spread > 0.05  # the scores do move within a step: the comparison is not of constants
    arrays = dict(np.load(tmp_path / "ev" / "steps.npz"))
    # the clip scores and targets kept beside the steps, for scripts/clip_pooling.py
    np.testing.assert_allclose(arrays["clip_scores"], np.asarray(pred["scores"])[arrays["index"]], atol=1e-5)
    np.testing.assert_array_equal(arrays["targets"], np.asarray(pred["targets"])[arrays["index"]])
    arrays["logits"] = arrays["logits"][:, :, :2]
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="classes"):
        compare_eval.step_scores(tmp_path / "bad.npz", str(bank_dir), "test", "bank")
    old = {k: v for k, v in arrays.items() if k != "logits"}
    np.savez_compressed(tmp_path / "old.npz", scores=np.zeros((1, 1, 4), np.uint8), **old)
    with pytest.raises(ValueError, match="older compare_eval"):
        compare_eval.step_scores(tmp_path / "old.npz", str(bank_dir), "test", "bank")


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(spec)])


def test_peaking_filter_has_its_gain_at_its_frequency_and_unity_far_away():
    from scipy.signal import sosfreqz

    from audiomamba.soundscapes.bank import peaking_sos

    for freq, gain, q in [(1000.0, 9.0, 1.0), (250.0, -6.0, 3.0), (5000.0, 3.5, 0.7)]:
        w, h = sosfreqz(peaking_sos(freq, gain, q, SR), worN=[0.0, freq, SR / 2 * 0.999], fs=SR)
        db = 20 * np.log10(np.abs(h))
        assert db[1] == pytest.approx(gain, abs=1e-6)
        assert abs(db[0]) < 1e-6 and abs(db[2]) < 0.5


def test_source_augment_changes_pitch_within_range_and_keeps_events_and_levels(bank_dir):
    """Speed: each event's tone moves by a factor within [1/(1+s), 1+s] (its peak frequency against the
    unchanged render), factors vary between seeds, and the event stays where the plan puts it.  Off
    (SourceAugment()), the render is the plain one sample for sample."""
    from audiomamba.soundscapes.bank import SourceAugment

    bank = open_bank(bank_dir)
    cs = open_split(bank_dir, "train")
    s = 0.3
    assert np.array_equal(bank.render(cs.clips[0].plan, np.random.default_rng(0), SourceAugment()),
                          bank.render(cs.clips[0].plan))
    ratios = []
    for clip in cs.clips[:10]:
        _, _, _, bg_db, events = clip.plan
        plain = bank.render(clip.plan)
        for seed in (1, 2):
            x = bank.render(clip.plan, np.random.default_rng(seed), SourceAugment(speed=s))
            assert x.shape == plain.shape and np.isfinite(x).all() and np.abs(x).max() <= 0.9 + 1e-6
            if len(events) != 1:
                continue
            _, _, take, onset, snr = events[0]
            if take < SR // 4:
                continue
            ratios.append(_peak_hz(x[onset: onset + take]) / _peak_hz(plain[onset: onset + take]))
            # the event is where the plan says: outside it, only the background (the same in both renders, up to
            # the clip's common peak scaling)
            outside = np.r_[x[:onset], x[onset + take:]]
            ref = np.r_[plain[:onset], plain[onset + take:]]
            if len(outside) > SR // 10:
                scale = np.dot(outside, ref) / np.dot(ref, ref)
                assert np.allclose(outside, scale * ref, atol=1e-4)
            bg = 10 ** (bg_db / 20)
            seg = x[onset: onset + take].astype(np.float64)
            assert 20 * np.log10(np.sqrt(np.mean(seg ** 2)) / bg) > MIX.snr_db[0] - 1.5
    assert len(ratios) >= 4
    assert all(1 / (1 + s) - 0.02 <= r <= 1 + s + 0.02 for r in ratios), ratios
    assert np.std(ratios) > 0.02, ratios


def test_source_augment_eq_and_the_training_loader(bank_dir):
    """The equaliser changes the spectrum, not the event's level; a training item with source augmentation is
    reproducible from its seed (in worker processes too), differs between seeds, and leaves crop and gain draws
    as they were (same labels and event rows as without it)."""
    from audiomamba.soundscapes.bank import SourceAugment

    bank = open_bank(bank_dir)
    clip = open_split(bank_dir, "train").clips[0]
    plain = bank.render(clip.plan)
    eq = bank.render(clip.plan, np.random.default_rng(5), SourceAugment(eq_db=12.0))
    assert not np.allclose(eq, plain, atol=1e-3)
    for _, _, take, onset, _ in clip.plan[4]:
        a, b = plain[onset: onset + take], eq[onset: onset + take]
        assert abs(20 * np.log10(np.std(b) / np.std(a))) < 3.0  # the level is set after the equaliser
    with pytest.raises(ValueError, match="speed"):
        SourceAugment(speed=-0.1)

    cs = open_split(bank_dir, "train")
    aug = SourceAugment(speed=0.2, eq_db=6.0)
    ds = ClipDataset(cs, SR, train=True, clip_seconds=2.0, gain_db=3.0, source_augment=aug)
    base = ClipDataset(cs, SR, train=True, clip_seconds=2.0, gain_db=3.0)
    a, b, c, d = ds[(3, 7)], ds[(3, 7)], ds[(3, 8)], base[(3, 7)]
    assert np.array_equal(a["wave"], b["wave"]) and not np.array_equal(a["wave"], c["wave"])
    assert not np.array_equal(a["wave"], d["wave"])
    assert np.array_equal(a["target"], d["target"]) and np.array_equal(a["events"], d["events"])
    batches = [[(i, 300 + i) for i in range(6)]]
    want = collate([ds[i] for i in batches[0]])
    got = next(iter(torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=2)))
    assert torch.equal(want["wave"], got["wave"])


@pytest.mark.parametrize("rt60, drr_db", [(0.3, 6.0), (0.8, -3.0), (1.5, 12.0)])
def test_room_impulse_decays_by_60_db_in_its_rt60_with_its_direct_to_reverberant_ratio(rt60, drr_db):
    """The impulse response's direct sound is ``drr_db`` above its tail's energy, and the tail's Schroeder energy
    decay curve (backward-integrated squared response, computed here) falls at 60 dB per RT60: the slope fitted
    from -5 to -25 dB (T20) gives the RT60 within 10%."""
    from audiomamba.soundscapes.bank import room_impulse

    sr = 16000
    h = room_impulse(rt60, drr_db, sr, np.random.default_rng(0)).astype(np.float64)
    assert h[0] == 1.0 and len(h) == pytest.approx(rt60 * sr, abs=0.01 * sr)
    assert 10 * np.log10(1.0 / np.sum(h[1:] ** 2)) == pytest.approx(drr_db, abs=1e-3)
    tail = h[1:]
    edc = np.cumsum(tail[::-1] ** 2)[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    sel = (edc_db <= -5) & (edc_db >= -25)
    slope = np.polyfit(np.flatnonzero(sel) / sr, edc_db[sel], 1)[0]  # dB per second
    assert -60 / slope == pytest.approx(rt60, rel=0.1)
    with pytest.raises(ValueError, match="rt60"):
        room_impulse(0.0, 6.0, sr, np.random.default_rng(0))


def test_source_reverb_puts_about_half_the_events_in_a_room_and_keeps_them_in_place(bank_dir):
    """With only ``reverb`` on, an event is either dry (its samples those of the plain render, up to the clip's
    common peak scaling) or reverberant (smeared: correlated with the dry event, but not equal); about
    REVERB_PROB of them are reverberant, the tail stops at the event's planned end (outside the events only the
    background), its level is the plan's, and the render is reproducible from its seed."""
    from audiomamba.soundscapes.bank import REVERB_PROB, SourceAugment

    bank = open_bank(bank_dir)
    aug = SourceAugment(reverb=1.0)
    wet = dry = 0
    for i, clip in enumerate(open_split(bank_dir, "train").clips[:30]):
        _, _, _, bg_db, events = clip.plan
        if len(events) != 1:
            continue
        _, _, take, onset, _ = events[0]
        plain = bank.render(clip.plan).astype(np.float64)
        x = bank.render(clip.plan, np.random.default_rng(i), aug).astype(np.float64)
        assert np.array_equal(x, bank.render(clip.plan, np.random.default_rng(i), aug))
        outside, ref = np.r_[x[:onset], x[onset + take:]], np.r_[plain[:onset], plain[onset + take:]]
        scale = np.dot(outside, ref) / np.dot(ref, ref) if len(ref) > SR // 10 else 1.0
        if len(ref) > SR // 10:
            assert np.allclose(outside, scale * ref, atol=1e-4)
        a, b = x[onset: onset + take], scale * plain[onset: onset + take]
        if np.allclose(a, b, atol=1e-4):
            dry += 1
        else:
            wet += 1
            assert abs(20 * np.log10(np.std(a) / np.std(b))) < 3.0  # the level is set after the room
    assert wet + dry >= 8
    assert 0.15 <= wet / (wet + dry) <= 0.85, (wet, dry, REVERB_PROB)


def test_event_shifts_without_shifts_agree_with_the_step_logits_pipeline(bank_dir, tmp_path):
    """scripts/event_shifts.py (framewise scores from predict, optionally averaged over shifts) at one pass gives
    the event F1 that compare_eval's step logits give through event_thresholds, and a result for every setting
    (an untrained model finds no events here: this checks the script's plumbing; the averaging itself is
    checked in tests/evaluation/test_predict_shifts.py)."""
    pytest.importorskip("sed_scores_eval")
    import audiomamba

    cs = open_split(bank_dir, "test")
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=cs.num_classes, layout="native", sample_rate=SR)
    with torch.no_grad():
        model.head.tscam_conv.weight.mul_(30.0)
    ckpt = tmp_path / "m.safetensors"
    audiomamba.save_model(model, ckpt, labels=cs.label_names, provenance={"note": "tests"})
    grid = "0.02,0.1,0.5,0.9"
    assert load_script("compare_eval").main(["--checkpoint", str(ckpt), "--data", str(bank_dir), "--split", "test",
                                             "--out", str(tmp_path / "ev"), "--workers", "0", "--device", "cpu"]) == 0
    assert load_script("event_thresholds").main(["--steps", str(tmp_path / "ev" / "steps.npz"), "--data",
                                                 str(bank_dir), "--split", "test", "--grid", grid,
                                                 "--out", str(tmp_path / "thr.json")]) == 0
    want = json.loads((tmp_path / "thr.json").read_text())["global"]
    assert load_script("event_shifts").main(["--checkpoint", str(ckpt), "--data", str(bank_dir), "--split", "test",
                                             "--settings", "1x1,4x8", "--grid", grid,
                                             "--out", str(tmp_path / "sh.json")]) == 0
    got = json.loads((tmp_path / "sh.json").read_text())["settings"]
    for t in grid.split(","):
        assert got["1x1"]["event_f1"][t] == pytest.approx(want[t], abs=0.02)  # float16 step logits in steps.npz
    assert set(got) == {"1x1", "4x8"} and all(0 <= got[s]["psds1"] <= 1 for s in got)
    assert all(set(got[s]["event_f1"]) == set(grid.split(",")) for s in got)


def test_short_inputs_script_tags_each_recording_alone(bank_dir):
    """scripts/short_inputs.py: a split's recordings are the bank's own samples with their labels, and each is
    scored by the tagger alone, with a one-hot target in the tagger's class order."""
    import audiomamba
    from audiomamba import Tagger

    script = load_script("short_inputs")
    bank = open_bank(bank_dir)
    items = script.recordings(bank, "validation")
    rows = [r for r in bank.recordings if r.split == "validation"]
    assert len(items) == len(rows) > 0
    for (wave, label), r in zip(items, rows):
        assert label == r.label and wave.dtype == np.float32
        np.testing.assert_array_equal(wave * 32768.0, bank.audio[r.start : r.start + r.length].astype(np.float32))
    torch.manual_seed(0)
    labels = sorted(CLASSES)
    model = audiomamba.create_model("audiomamba_nano", num_classes=len(labels), layout="native", sample_rate=SR)
    tagger = Tagger(model, labels=labels)
    scores, targets = script.score(tagger, items[:3], bank.sample_rate)
    assert scores.shape == targets.shape == (3, len(labels))
    assert (targets.sum(1) == 1).all() and [labels[k] for k in targets.argmax(1)] == [lab for _, lab in items[:3]]
    for k, (wave, _) in enumerate(items[:3]):
        np.testing.assert_allclose(scores[k], tagger.tag(wave, sample_rate=bank.sample_rate).scores, atol=1e-6)


def test_head_refit_trains_only_the_top_on_maps_that_reproduce_the_model(bank_dir, tmp_path):
    """scripts/head_refit.py: the cached maps, through the last stage and the head, give the model's own clip
    logits; the validation mAP it reports before training is scikit-learn's on the model's predictions; the saved
    model differs from the original in the trained parts only (head, finer steps, and with --last-stage the
    backbone's last stage), and scores what the summary says."""
    from sklearn.metrics import average_precision_score

    import audiomamba
    from audiomamba.checkpoint import load
    from audiomamba.evaluation import predict

    refit = load_script("head_refit")
    cs = open_split(bank_dir, "validation")
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=cs.num_classes, layout="native", sample_rate=SR,
                                    step_frames=8)
    ckpt = tmp_path / "m.safetensors"
    audiomamba.save_model(model, ckpt, labels=cs.label_names, provenance={"note": "tests"})
    out = tmp_path / "out"
    argv = ["--checkpoint", str(ckpt), "--bank", str(bank_dir), "--cache", str(tmp_path / "cache"), "--clips", "48",
            "--epochs", "3", "--batch", "8", "--lr", "3e-3", "--clip-seconds", "3", "--workers", "0", "--out",
            str(out), "--save", "--last-stage"]
    assert refit.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    orig = load(ckpt, torch.device("cpu"))
    pred = predict(orig, cs, 16, torch.device("cpu"), True)
    scores, targets = np.asarray(pred["scores"]), np.asarray(pred["targets"])
    keep = targets.sum(0) > 0
    want = np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in np.flatnonzero(keep)])
    assert summary["shipped_val_mAP"] == pytest.approx(want, abs=1e-4)
    val = torch.load(next((tmp_path / "cache").glob("validation_*.pt")))
    assert val["pre"].shape[0] == len(cs.clips)
    with torch.no_grad():
        logits = refit._forward(orig.eval(), val, torch.arange(len(cs.clips))).logits
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), scores, atol=2e-3)  # float16 maps

    def changed(m):
        return {k for k, v in m.state_dict().items() if not torch.equal(v, orig.state_dict()[k])}

    new = load(out / "best.safetensors", torch.device("cpu"))
    last = f"backbone.layers.{len(orig.backbone.layers) - 1}."
    assert changed(new) and all(k.startswith(("head.", "fine_steps.", last)) for k in changed(new))
    assert any(k.startswith(last) for k in changed(new))
    assert summary["best"]["val_mAP"] == max(max(r["val_mAP"][1:]) for r in summary["runs"])
    assert refit.val_map(new.eval(), val) == pytest.approx(summary["best"]["val_mAP"], abs=1e-6)
    assert not list((tmp_path / "cache").glob("test*"))  # it never reads the test split
    assert set(summary["val_ap"]["shipped"]) == set(summary["val_ap"]["best"]) <= set(cs.label_names)
    assert np.mean(list(summary["val_ap"]["shipped"].values())) == pytest.approx(summary["shipped_val_mAP"], abs=1e-3)
    assert np.mean(list(summary["val_ap"]["best"].values())) == pytest.approx(summary["best"]["val_mAP"], abs=1e-3)
    # the cached maps belong to one model and one bank: another checkpoint gets maps of its own
    other = tmp_path / "other.safetensors"
    audiomamba.save_model(new, other, labels=cs.label_names, provenance={"note": "tests"})
    assert refit.cache_tag(str(other), str(bank_dir)) != refit.cache_tag(str(ckpt), str(bank_dir))
    assert refit.cache_tag(str(ckpt), str(bank_dir)) == refit.cache_tag(str(ckpt), str(bank_dir))
    # the head alone: the backbone stays as it was
    train = torch.load(next((tmp_path / "cache").glob("train_*.pt")))
    head_only = load(ckpt, torch.device("cpu"))
    history, _ = refit.refit(head_only, train, val, 1, 3e-3, 0.05, 8, 0)
    assert len(history) == 2 and changed(head_only)
    assert all(k.startswith(("head.", "fine_steps.")) for k in changed(head_only))


def test_family_probe_scores_each_recording_of_the_families_as_a_clip(source_dir, tmp_path, monkeypatch):
    """scripts/family_probe.py: every recording of the families becomes one clip of its class folder (a link to
    the recording), and the tagger is scored on all of them; a family that is not installed is exit code 5."""
    import audiomamba
    from audiomamba.soundscapes.sources import Catalogue

    script = load_script("family_probe")
    items, _ = user_items(source_dir)
    monkeypatch.setattr(script, "discover", lambda families: Catalogue(items=items))
    torch.manual_seed(0)
    labels = sorted(CLASSES)
    model = audiomamba.create_model("audiomamba_nano", num_classes=len(labels), layout="native", sample_rate=SR)
    ckpt = tmp_path / "m.safetensors"
    audiomamba.save_model(model, ckpt, labels=labels, provenance={"note": "tests"})
    out = tmp_path / "probe"
    assert script.main(["--families", "mine", "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu"]) == 0
    links = sorted((out / "data").rglob("*.wav"))
    assert len(links) == len(items) and all(p.is_symlink() for p in links)
    assert {p.parent.name for p in links} == set(CLASSES)
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert summary["clips"] == len(items) and summary["classes_evaluated"] == len(CLASSES)
    monkeypatch.setattr(script, "discover", lambda families: Catalogue(missing={"mine": "apt-get install mine"}))
    assert script.main(["--families", "mine", "--checkpoint", str(ckpt), "--out", str(out)]) == 5


def test_ship_stage_joins_scores_chooses_the_threshold_on_validation_and_ships(bank_dir, tmp_path):
    """scripts/ship_stage.py: the checkpoint joined from its parts is the one that was split; its validation and test
    figures are `audiomamba evaluate`'s; the event threshold is the best of the grid on the validation clips, and
    the test split is scored at it; the shipped file is float16 with that threshold, the test figures and the file
    the stage started from in its provenance.  No parts: exit code 5; a failing step is named, with its code."""
    import audiomamba
    from audiomamba.checkpoint import load, read_meta

    script = load_script("ship_stage")
    cs = open_split(bank_dir, "validation")
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=cs.num_classes, layout="native", sample_rate=SR,
                                    step_frames=8)
    whole = audiomamba.save_model(model, tmp_path / "trained.safetensors", labels=cs.label_names,
                                  provenance={"note": "tests"})
    init = audiomamba.save_model(model, tmp_path / "init.safetensors", labels=cs.label_names,
                                 provenance={"config": "stage0.yaml", "test_metrics": {"mAP": 0.1}})
    data = Path(whole).read_bytes()
    parts = tmp_path / "device"
    parts.mkdir()
    for i in range(3):  # as `split -b -d` names them
        (parts / f"best.safetensors.part{i:02d}").write_bytes(data[i * len(data) // 3: (i + 1) * len(data) // 3])
    out, ship = tmp_path / "stage", tmp_path / "shipped.safetensors"
    argv = ["--parts", str(parts), "--bank", str(bank_dir), "--out", str(out), "--init", str(init), "--ship",
            str(ship), "--trained-on", "GPU X", "--threshold-split", "validation", "--grid", "0.3,0.5,0.7", "--",
            "soup:ab", "train.seed=1,2"]
    assert script.main(argv) == 0
    assert (out / "best.safetensors").read_bytes() == data
    summary = json.loads((out / "summary.json").read_text())
    val, test = (json.loads((out / s / "summary.json").read_text()) for s in ("val", "test"))
    assert val["split"] == "validation" and summary["validation"]["mAP"] == round(val["mAP"], 4)
    grid = summary["event_f1_by_threshold"]
    assert summary["event_threshold"] == float(max(grid, key=grid.get))
    assert test["split"] == "test" and test["event_threshold"] == summary["event_threshold"]
    prov = read_meta(ship)["provenance"]
    assert prov["event_threshold"] == summary["event_threshold"] and prov["test_metrics"]["mAP"] == test["mAP"]
    assert prov["overrides"] == ["soup:ab", "train.seed=1,2"] and prov["device"] == "GPU X"
    assert prov["initialised_from"]["config"] == "stage0.yaml"
    assert all(p.dtype == torch.float32 for p in load(ship).parameters())  # float16 on disk, float32 when loaded
    assert read_meta(ship)["provenance"]["dtype"] == "float16"
    assert script.main([*argv[:2], "--out", str(out), "--trained-on", "x", "--parts", str(tmp_path)]) == 5
    with pytest.raises(SystemExit) as e:
        script.main(["--parts", str(parts), "--bank", str(tmp_path / "nobank"), "--out", str(tmp_path / "o2"),
                     "--init", str(init), "--trained-on", "x"])
    assert e.value.code == 5  # the validation step's own code: a data set that cannot be used
