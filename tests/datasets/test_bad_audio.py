"""Bad audio in a dataset: each kind of broken clip is a named, counted skip in training and evaluation items,
checked on the whole clip before any crop; a folder listed as an audio file is a DatasetError naming the line."""

import json
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from audiomamba.datasets import ClipDataset, DatasetError, collate, open_split
from audiomamba.evaluation.predict import evaluate_scores, predict

SR = 16000


def _noise(seconds, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _header_promises_more(path, seconds=1.0, factor=8):
    """A valid WAV whose data chunk size is then patched to promise ``factor`` times the samples it holds."""
    sf.write(path, _noise(seconds), SR)
    b = bytearray(path.read_bytes())
    i = b.index(b"data")
    size = struct.unpack("<I", b[i + 4: i + 8])[0]
    b[i + 4: i + 8] = struct.pack("<I", size * factor)
    path.write_bytes(bytes(b))


def _cut(path, seconds=1.0):
    """A valid WAV with its second half cut off (a copy that stopped half way)."""
    sf.write(path, _noise(seconds), SR)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _with(path, value, at_seconds, seconds=2.0):
    x = _noise(seconds)
    x[int(at_seconds * SR)] = value
    sf.write(path, x, SR, subtype="FLOAT")


BAD = {  # file -> a fragment of the reason its item must give
    "nan_late.wav": "NaN or infinite",  # NaN at 1.9 s of 2 s: a crop of the first 0.5 s misses it
    "inf_late.wav": "NaN or infinite",
    "nan_early.wav": "NaN or infinite",
    "header_promises_more.wav": "truncated",
    "cut.wav": "truncated",
    "garbage.wav": "cannot read audio header",
    "empty.wav": "empty",
    "huge.wav": "samples far outside [-1, 1] (peak 1e+30)",  # finite, but the features would overflow
    "stereo_nan_right.wav": "NaN or infinite",  # damage in one channel only
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    a = d / "audio"
    a.mkdir()
    for i in range(3):
        sf.write(a / f"good{i}.wav", _noise(2.0, seed=i), SR)
    _with(a / "nan_late.wav", np.nan, 1.9)
    _with(a / "inf_late.wav", np.inf, 1.9)
    _with(a / "nan_early.wav", np.nan, 0.1)
    _header_promises_more(a / "header_promises_more.wav")
    _cut(a / "cut.wav")
    (a / "garbage.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(64))
    sf.write(a / "empty.wav", np.zeros(0, np.float32), SR)
    x = _noise(1.0)
    x[100] = 1e30
    sf.write(a / "huge.wav", x, SR, subtype="FLOAT")
    right = _noise(2.0, seed=5)
    right[int(1.8 * SR)] = np.nan
    sf.write(a / "stereo_nan_right.wav", np.stack([_noise(2.0), right], axis=1), SR, subtype="FLOAT")
    names = [f"good{i}.wav" for i in range(3)] + list(BAD)
    lines = [json.dumps({"path": f"audio/{n}", "labels": ["Dog" if k % 2 else "Cat"]}) for k, n in enumerate(names)]
    (d / "train.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _reason(item):
    return item.get("error")


@pytest.mark.parametrize("random_crop", [False, True])
def test_training_items_skip_every_bad_clip_whatever_the_crop(data, random_crop):
    cs = open_split(data, "train")
    ds = ClipDataset(cs, SR, train=True, clip_seconds=0.5, random_crop=random_crop)
    for seed in range(4 if random_crop else 1):  # random crops land anywhere; none may hide the bad sample
        items = [ds[(i, seed)] for i in range(len(cs))]
        for clip, item in zip(cs.clips, items):
            name = clip.path.rsplit("/", 1)[-1]
            if name.startswith("good"):
                assert "error" not in item and item["wave"].shape == (8000,) and np.isfinite(item["wave"]).all()
            else:
                err = _reason(item)
                assert err is not None, name
                assert err.startswith(f"{clip.path} ({data / 'train.jsonl'}:"), err  # the file and the manifest line
                assert BAD[name] in err, err
                assert f"): {clip.path}: " not in err, err  # named once, not again by the decoder's prefix
        batch = collate(items)
        assert batch["wave"].shape == (3, 8000) and len(batch["errors"]) == len(BAD)
        assert sorted(batch["error_indices"]) == list(range(3, 3 + len(BAD)))
        assert torch.isfinite(batch["wave"]).all()


def test_evaluation_items_check_beyond_the_length_cap(data):
    """eval_seconds caps what is scored, not what is checked: NaN after the cap is still a damaged clip."""
    cs = open_split(data, "train")
    ds = ClipDataset(cs, SR, train=False, eval_seconds=0.5)
    items = [ds[i] for i in range(len(cs))]
    errors = [_reason(it) for it in items]
    assert [e is None for e in errors] == [True] * 3 + [False] * len(BAD)
    assert all(len(it["wave"]) == 8000 for it in items[:3])


def test_predict_counts_skips_and_names_the_set_when_nothing_is_left(data, nano16):
    cs = open_split(data, "train")
    seen = []
    pred = predict(nano16, cs, 4, torch.device("cpu"), True, on_error=seen.append)
    assert pred["valid"].tolist() == [True] * 3 + [False] * len(BAD)
    assert len(pred["errors"]) == len(BAD) == len(seen) and np.isfinite(pred["scores"]).all()
    m = evaluate_scores(pred, True)
    assert np.isfinite(m["mAP"])
    bad_only = open_split(data, "train")
    bad_only.clips = bad_only.clips[3:]
    pred = predict(nano16, bad_only, 4, torch.device("cpu"), True)
    with pytest.raises(DatasetError, match=r"train.jsonl: none of the 9 clips could be used \(9 undecodable"):
        evaluate_scores(pred, True)


@pytest.fixture(scope="module")
def nano16():
    import audiomamba

    torch.manual_seed(0)
    return audiomamba.create_model("audiomamba_nano", num_classes=2, layout="native", sample_rate=SR).eval()


def test_a_folder_listed_as_audio_is_a_dataset_error(tmp_path):
    sf.write(tmp_path / "a.wav", _noise(0.5), SR)
    (tmp_path / "x.wav").mkdir()
    (tmp_path / "train.jsonl").write_text(json.dumps({"path": "a.wav", "labels": ["Dog"]}) + "\n"
                                          + json.dumps({"path": "x.wav", "labels": ["Dog"]}) + "\n")
    with pytest.raises(DatasetError, match=r"train.jsonl:2: .*x.wav is a directory, not an audio file"):
        open_split(tmp_path, "train")
    (tmp_path / "v.csv").write_text("path,labels\na.wav,Dog\nx.wav,Dog\n")
    with pytest.raises(DatasetError, match=r"v.csv:3: .*x.wav is a directory"):
        open_split(tmp_path / "v.csv", "x")
    # without the up-front check (data.check_files=false) it is a counted skip like any unreadable clip
    cs = open_split(tmp_path, "train", check_files=False)
    item = ClipDataset(cs, SR, train=True, clip_seconds=0.5)[(1, 0)]
    assert "x.wav" in item["error"] and "is a directory" in item["error"]


def test_pack_skips_bad_clips_and_names_an_unwritable_output(data, tmp_path):
    from audiomamba.datasets.pack import pack
    from audiomamba.errors import WriteError

    cs = open_split(data, "train")
    summary = pack(cs, tmp_path / "packed", "train", SR, progress=False)
    assert summary["clips"] == 3 and summary["skipped"] == len(BAD)
    assert len(open_split(tmp_path / "packed", "train")) == 3
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"^cannot write .*file: "):
        pack(cs, tmp_path / "file", "train", SR, progress=False)


def test_predict_refuses_a_model_with_non_finite_output(data, nano16):
    import copy

    from audiomamba.errors import CheckpointError

    broken = copy.deepcopy(nano16)
    with torch.no_grad():
        next(p for n, p in broken.named_parameters() if n.startswith("head")).fill_(float("nan"))
    cs = open_split(data, "train")
    with pytest.raises(CheckpointError, match=r"good0.wav \(.*train.jsonl:1\): the model's output is not finite"):
        predict(broken, cs, 4, torch.device("cpu"), True)
