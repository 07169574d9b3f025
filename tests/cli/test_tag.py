import csv
import io
import json

import torch

import audiomamba
from audiomamba.cli import main


def test_tag_json_with_bad_files_exits_1_and_names_them(nano_ckpt, audio_dir, tmp_path, capsys):
    out = tmp_path / "res.json"
    missing = str(audio_dir / "missing.wav")
    code = main(["tag", str(audio_dir), missing, "--recursive", "-c", str(nano_ckpt), "--events", "--threshold", "0.0",
                 "--format", "json", "--output", str(out), "-k", "2", "--plot", str(tmp_path / "plots"), "-b", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "corrupt.wav" in err and "empty.wav" in err and "missing.wav" in err and "3 of 6 file(s) failed" in err
    assert "silent" in err  # warning
    data = json.loads(out.read_text())
    assert [d["file"].rsplit("/", 1)[-1] for d in data] == ["good.wav", "silent.wav", "other.flac"]
    for d in data:
        assert set(d) == {"file", "duration_s", "tags", "events"}
        assert len(d["tags"]) == 2 and all(set(t) == {"label", "score"} for t in d["tags"])
        assert d["events"] and all(set(e) == {"label", "onset", "offset", "score"} for e in d["events"])
        assert all(0 <= e["onset"] < e["offset"] <= d["duration_s"] + 1e-6 for e in d["events"])
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(pngs) == 3 and all(p.endswith(".png") for p in pngs)


def test_tag_csv_table_jsonl(nano_ckpt, audio_dir, capsys):
    good = str(audio_dir / "good.wav")
    assert main(["tag", good, "-c", str(nano_ckpt), "--format", "csv", "-k", "3"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["kind"] for r in rows] == ["tag"] * 3 and {r["label"] for r in rows} == {"Speech", "Dog", "Music"}
    assert main(["tag", good, "-c", str(nano_ckpt), "--format", "jsonl", "-k", "1", "--threshold", "1"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["tags"] == [] and line["events"] == []  # nothing reaches the threshold
    assert main(["tag", good, "-c", str(nano_ckpt), "-k", "1"]) == 0
    assert "good.wav" in capsys.readouterr().out


def test_usage_and_checkpoint_errors(nano_ckpt, audio_dir, tmp_path, capsys, monkeypatch):
    good = str(audio_dir / "good.wav")
    monkeypatch.delenv("AUDIOMAMBA_CHECKPOINT", raising=False)
    from audiomamba.cli import tag as tag_cmd

    assert main(["tag", good, "-c", str(nano_ckpt), "--model", "x"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["tag", good, "--model", str(tmp_path / "missing_model")]) == 3
    assert "missing_model" in capsys.readouterr().err
    assert main(["tag", good, "-c", str(tmp_path / "none.safetensors")]) == 3
    assert "checkpoint not found" in capsys.readouterr().err
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    assert main(["tag", str(empty_dir), "-c", str(nano_ckpt)]) == 2
    assert "no audio files" in capsys.readouterr().err
    torch.manual_seed(0)
    lin = audiomamba.save_model(audiomamba.create_model("audiomamba_nano", num_classes=2, head="linear", layout="native"), tmp_path / "lin.safetensors")
    assert main(["tag", good, "-c", str(lin), "--events"]) == 2
    assert "linear-head" in capsys.readouterr().err
    assert main(["tag", good, "-c", str(nano_ckpt), "--cuda-graph"]) == 2  # --device defaults to cpu
    assert "--cuda-graph needs a CUDA device" in capsys.readouterr().err
    assert tag_cmd.EXIT_CHECKPOINT == 3


def test_checkpoint_from_environment(nano_ckpt, audio_dir, monkeypatch, capsys):
    monkeypatch.setenv("AUDIOMAMBA_CHECKPOINT", str(nano_ckpt))
    assert main(["tag", str(audio_dir / "good.wav"), "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["file"].endswith("good.wav")


def test_without_checkpoint_the_shipped_tagger_tags(audio_dir, monkeypatch, capsys):
    """No --checkpoint, no --model, no environment variable: the tagger that ships with the package is used."""
    from audiomamba.models.pretrained import DEFAULT_TAGGER

    monkeypatch.delenv("AUDIOMAMBA_CHECKPOINT", raising=False)  # the default of --checkpoint is read at parse time
    assert main(["tag", str(audio_dir / "good.wav"), "-f", "json", "-k", "3"]) == 0
    out = capsys.readouterr()
    assert DEFAULT_TAGGER in out.err
    tags = json.loads(out.out)[0]["tags"]
    assert len(tags) == 3 and all(0.0 <= t["score"] <= 1.0 for t in tags)
    assert main(["tag", str(audio_dir / "good.wav"), "--model", DEFAULT_TAGGER, "-q", "-f", "json", "-k", "3"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tags"] == tags


def test_stream_from_standard_input(nano_ckpt, tmp_path):
    """`tag --stream`: a WAV stream or raw PCM piped in gives one JSON line per hop, then a final line; bad
    streams and options end with one error line and exit 1 or 2."""
    import io
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    x = (0.1 * np.random.default_rng(0).standard_normal(32000 * 5)).astype(np.float32)
    wav = io.BytesIO()
    sf.write(wav, x, 32000, format="WAV", subtype="PCM_16")
    cmd = [sys.executable, "-m", "audiomamba", "tag", "-c", str(nano_ckpt), "-q"]
    p = subprocess.run(cmd + ["--stream", "--stream-window", "3", "--stream-hop", "1", "--lookahead", "0.5"],
                       input=wav.getvalue(), capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    lines = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [round(line["t"], 2) for line in lines[:5]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert lines[-1].get("final") is True
    assert all(len(line["tags"]) == 3 and isinstance(line["events"], list) for line in lines)  # 3 classes
    raw = (x * 32767).astype("<i2").tobytes()
    p = subprocess.run(cmd + ["--stream", "-", "--raw", "s16le", "--rate", "32000", "--stream-hop", "2",
                              "--stream-window", "4", "--lookahead", "0"], input=raw, capture_output=True, timeout=300)
    assert p.returncode == 0 and len(p.stdout.decode().splitlines()) >= 2, p.stderr.decode()
    p = subprocess.run(cmd + ["--stream", "--raw", "s16le"], input=raw, capture_output=True, timeout=300)
    assert p.returncode == 2 and b"sample rate" in p.stderr
    p = subprocess.run(cmd + ["--stream"], input=b"not a wav stream at all", capture_output=True, timeout=300)
    assert p.returncode == 1 and b"stdin: not a WAV stream" in p.stderr
    p = subprocess.run(cmd + [str(tmp_path / "x.wav"), "--stream", "-"], input=b"", capture_output=True, timeout=300)
    assert p.returncode == 2 and b"give no PATH" in p.stderr
