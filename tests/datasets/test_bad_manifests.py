"""A table of malformed manifests: each is a DatasetError naming the manifest, the line and what is wrong."""

import json

import numpy as np
import pytest
import soundfile as sf

from audiomamba.datasets import ClipDataset, DatasetError, open_split

SR = 16000

CASES = [  # (file name, content, expected message after "<manifest>:")
    ("neg_duration.jsonl", '{"path": "a.wav", "labels": ["Dog"], "duration": -1}\n',
     "1: duration must be more than 0, got -1"),
    ("zero_duration.jsonl", '{"path": "a.wav", "labels": ["Dog"], "duration": 0}\n',
     "1: duration must be more than 0, got 0"),
    ("nan_duration.jsonl", '{"path": "a.wav", "labels": ["Dog"], "duration": NaN}\n',
     "1: duration must be a finite number, got nan"),
    ("inf_offset.jsonl", '{"path": "a.wav", "labels": ["Dog"], "offset": Infinity}\n',
     "1: offset must be a finite number, got inf"),
    ("neg_offset.jsonl", '{"path": "a.wav", "labels": ["Dog"]}\n{"path": "a.wav", "labels": ["Dog"], "offset": -2}\n',
     "2: offset must be at least 0, got -2"),
    ("bool_duration.jsonl", '{"path": "a.wav", "labels": ["Dog"], "duration": true}\n',
     "1: duration must be a number, got True"),
    ("nan_onset.jsonl", '{"path": "a.wav", "events": [{"label": "Dog", "onset": NaN, "offset": 1}]}\n',
     "1: event onset must be a finite number, got nan"),
    ("path_number.jsonl", '{"path": 5, "labels": ["Dog"]}\n', "1: 'path' must be a non-empty string, got 5"),
    ("path_empty.jsonl", '{"path": "", "labels": ["Dog"]}\n', "1: 'path' must be a non-empty string, got ''"),
    ("events_number.jsonl", '{"path": "a.wav", "events": 5}\n', "1: 'events' must be a list of objects, got 5"),
    ("event_label.jsonl", '{"path": "a.wav", "events": [{"label": 3, "onset": 0, "offset": 1}]}\n',
     "1: each event needs label, onset and offset"),
    ("latin1.jsonl", b'{"path": "a.wav", "labels": ["Dog"]}\n{"path": "a.wav", "labels": ["Caf\xe9"]}\n',
     "2: not UTF-8 text (byte 0xe9); save the manifest as UTF-8"),
    ("latin1.csv", b"path,labels\na.wav,Dog\n\na.wav,Caf\xe9\n", "4: not UTF-8 text (byte 0xe9)"),
    ("negative_onset.csv", "path,label,onset,offset\na.wav,Dog,-1,1\n", "2: onset must be at least 0, got -1"),
    ("nan_duration.csv", "path,labels,duration\na.wav,Dog,nan\n", "2: duration must be a finite number, got 'nan'"),
    ("folder.jsonl", '{"path": "a.wav", "labels": ["Dog"]}\n{"path": "x.wav", "labels": ["Dog"]}\n',
     "2: {root}/x.wav is a directory, not an audio file"),
]


@pytest.mark.parametrize("name,content,message", CASES, ids=[c[0] for c in CASES])
def test_malformed_manifest(tmp_path, name, content, message):
    sf.write(tmp_path / "a.wav", np.full(8000, 0.1, np.float32), SR)
    (tmp_path / "x.wav").mkdir()
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DatasetError) as info:
        open_split(path, "x")
    assert str(info.value).startswith(f"{path}:" + message.format(root=tmp_path)), str(info.value)


def test_byte_order_mark_and_crlf_are_fine(tmp_path):
    sf.write(tmp_path / "a.wav", np.full(8000, 0.1, np.float32), SR)
    (tmp_path / "m.csv").write_bytes("\ufeffpath,labels\r\na.wav,Dog\r\n".encode())
    (tmp_path / "m.jsonl").write_bytes(b'{"path": "a.wav", "labels": ["Dog"]}\r\n' * 2)
    for name in ("m.csv", "m.jsonl"):
        cs = open_split(tmp_path / name, "x")
        assert cs.label_names == ["Dog"] and "wave" in ClipDataset(cs, SR)[0]


def test_an_offset_past_the_end_is_a_counted_skip(tmp_path):
    sf.write(tmp_path / "a.wav", np.full(8000, 0.1, np.float32), SR)
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "a.wav", "labels": ["Dog"], "offset": 100}) + "\n")
    cs = open_split(tmp_path / "m.jsonl", "x")
    assert "audio is empty" in ClipDataset(cs, SR)[0]["error"]
    assert "audio is empty" in ClipDataset(cs, SR, train=True, clip_seconds=0.3)[(0, 0)]["error"]


@pytest.mark.parametrize("meta,message", [
    (b"filename,fold,target,category\na.wav,1,0,caf\xe9\n", "esc50.csv:2: not UTF-8 text (byte 0xe9)"),
    (b"filename,fold,target,category\na.wav,1\n", "esc50.csv:2: every row needs category, filename, fold, target"),
    (b"filename,fold,target,category\na.wav,x,0,dog\n", "esc50.csv:2: fold and target must be integers"),
])
def test_damaged_esc50_metadata(tmp_path, meta, message):
    (tmp_path / "meta").mkdir()
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.full(8000, 0.1, np.float32), SR)
    (tmp_path / "meta" / "esc50.csv").write_bytes(meta)
    with pytest.raises(DatasetError, match=f"^{tmp_path}/meta/" + message.replace("(", r"\(").replace(")", r"\)")):
        open_split(tmp_path, "fold1")


def test_damaged_shard_index(tmp_path):
    from audiomamba.datasets.pack import pack

    sf.write(tmp_path / "a.wav", np.full(8000, 0.1, np.float32), SR)
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav", "labels": ["Dog"]}\n')
    pack(open_split(tmp_path / "m.jsonl", "x"), tmp_path / "p", "train", SR, progress=False)
    index = tmp_path / "p" / "train.index.json"
    good = json.loads(index.read_text())
    (off, size) = good["clips"][0][1:3]
    for content, message in [
        (b"{", "damaged index, not valid JSON"),
        (b"{}", "damaged index (KeyError: 'shards')"),
        (json.dumps({**good, "clips": [[0, off, size, "k", [7], [], 0.5]]}).encode(),
         "damaged index (ValueError: clip 0: a label or shard index out of range)"),
        (json.dumps({**good, "clips": [[0, 1]]}).encode(), "damaged index (ValueError: not enough values"),
        (b'{"x": "\xe9"}', ":1: not UTF-8 text (byte 0xe9)"),
    ]:
        index.write_bytes(content)
        with pytest.raises(DatasetError) as info:
            open_split(tmp_path / "p", "train")
        assert str(info.value).startswith(str(index)) and message in str(info.value), str(info.value)
