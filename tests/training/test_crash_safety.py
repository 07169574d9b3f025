"""Training on bad data and after crashes: damaged clips are warned about once and counted (epoch log,
metrics.jsonl, summary); a kill -9 inside a checkpoint write, then --resume, gives the uninterrupted run's weights,
no duplicate metrics rows and no leftover temporary file; a full disk names the file and keeps the previous
last.pt."""

import errno
import json
import logging
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from audiomamba.errors import EXIT_IO, WriteError, exit_code_of
from audiomamba.soundscapes.toy import make_toy_dataset
from audiomamba.training import load_state, train
from audiomamba.training.config import load_config
from audiomamba.utils.io import is_temp_name
from conftest import toy_train_raw

SR = 16000


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), {"train": 8}, seconds=0.5, sample_rate=SR)


def raw_cfg(root, out, **over):
    return toy_train_raw(root, out, clip_seconds=0.3, sample_rate=SR, **over)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bad_training_and_validation_clips_are_warned_once_and_counted(toy, tmp_path, caplog):
    d = tmp_path / "data"
    d.mkdir()
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    x[int(0.9 * SR)] = np.nan  # a 0.3 s crop from the start misses it
    sf.write(d / "nan_late.wav", x, SR, subtype="FLOAT")
    sf.write(d / "short.wav", x[:4000] * 0, SR)
    b = bytearray((d / "short.wav").read_bytes())  # then the header promises 10 times the samples it holds
    i = b.index(b"data")
    b[i + 4: i + 8] = struct.pack("<I", struct.unpack("<I", b[i + 4: i + 8])[0] * 10)
    (d / "short.wav").write_bytes(bytes(b))
    good = [json.loads(line) for line in (toy / "train.jsonl").read_text().splitlines()][:6]
    rows = [{**r, "path": str(toy / r["path"])} for r in good]
    rows += [{"path": "nan_late.wav", "labels": good[0]["labels"]}, {"path": "short.wav", "labels": good[1]["labels"]}]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "class_labels_indices.csv").write_text((toy / "class_labels_indices.csv").read_text())

    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    res = train(load_config(raw=raw_cfg(d, out, data__validation="train", train__epochs=2)))
    assert res["steps"] == 4
    assert res["skipped_clips"] == 4 and res["skipped_distinct_clips"] == 2  # 2 bad clips, in each of 2 epochs
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    train_warn = [w for w in warned if w.startswith("skipped training clip")]
    val_warn = [w for w in warned if w.startswith("skipped validation clip")]
    assert len(train_warn) == 2 and len(val_warn) == 2  # once per clip, though each was met twice
    for ws in (train_warn, val_warn):
        assert any("nan_late.wav (" in w and "train.jsonl:7)" in w and "NaN or infinite" in w for w in ws), ws
        assert any("short.wav (" in w and "train.jsonl:8)" in w and "truncated" in w for w in ws), ws
    assert any(w.startswith("epoch 1: 2 training example(s) skipped (2 so far, from 2 clip(s)") for w in warned)
    assert any(w.startswith("epoch 2: 2 training example(s) skipped (4 so far, from 2 clip(s)") for w in warned)
    assert any("(2 of 8 validation clips skipped)" in r.getMessage() for r in caplog.records)
    metrics = _rows(out / "metrics.jsonl")
    assert [(m["step"], m["skipped_val_clips"], m["skipped_train_clips"]) for m in metrics] == [(2, 2, 2), (4, 2, 4)]
    assert all(np.isfinite(m["mAP"]) for m in metrics)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_clips"] == 4 and summary["skipped_distinct_clips"] == 2


_KILLER = """
import json, logging, os, signal, sys
import audiomamba.training.state as st
from audiomamba.training import train
from audiomamba.training.config import load_config

raw, kill_at, resume = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None
real, calls = st.atomic_write, [0]

def dying(path, write):  # the kill_at-th checkpoint write dies half way, as kill -9 leaves it
    calls[0] += 1
    if calls[0] != kill_at:
        return real(path, write)
    def half(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a checkpoint")
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, half)

st.atomic_write = dying
logging.basicConfig(level=logging.INFO)
train(load_config(raw=raw), resume=resume)
"""


def test_kill_9_in_a_checkpoint_write_then_resume(toy, tmp_path):
    """Epoch 2 ends: its validation row is written, then the process is killed inside the write of last.pt.  The
    resumed run (a new process) removes the leftover temporary file, drops the row written after its checkpoint,
    and ends with the uninterrupted run's weights and metrics."""
    over = dict(data__validation="train", train__epochs=3, train__checkpoint_every=1, augment__random_crop=True,
                augment__gain_db=3.0, augment__mixup="spec", model__spec_augment=True, optim__schedule="cosine")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # the uninterrupted run in a process of its own too: the weights are compared bit for bit, and the state that
    # earlier tests leave in the test process (thread pools, numba's and torch's caches) must not enter the comparison
    proc = subprocess.run([sys.executable, "-c", _KILLER, json.dumps(raw_cfg(toy, tmp_path / "full", **over)), "0", ""],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["steps"] == 6

    out = tmp_path / "killed"
    out.mkdir()
    (out / "notes.tmp").write_text("a user's file")  # never touched
    (out / ".notes.tmp").write_text("nor this")
    raw = json.dumps(raw_cfg(toy, out, **over))
    # checkpoint writes: steps 1, 2, end of epoch 1, steps 3, 4, end of epoch 2 (the 6th: killed)
    proc = subprocess.run([sys.executable, "-c", _KILLER, raw, "6", ""], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    leftovers = [p.name for p in out.iterdir() if is_temp_name(p.name)]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.")
    state = load_state(out / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 4)
    assert [(m["epoch"], m["step"]) for m in _rows(out / "metrics.jsonl")] == [(1, 2), (2, 4)]  # (2, 4): after it

    proc = subprocess.run([sys.executable, "-c", _KILLER, raw, "0", str(out / "last.pt")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "left by an interrupted write" in proc.stderr
    assert not [p.name for p in out.iterdir() if is_temp_name(p.name)]
    assert (out / "notes.tmp").read_text() == "a user's file" and (out / ".notes.tmp").exists()

    rows, want = _rows(out / "metrics.jsonl"), _rows(tmp_path / "full" / "metrics.jsonl")
    assert [(m["epoch"], m["step"]) for m in rows] == [(1, 2), (2, 4), (3, 6)]
    for a, b in zip(rows, want):
        a.pop("train_loss"), b.pop("train_loss")  # the loss average restarts with the process
        assert a == b
    a, b = load_file(tmp_path / "full" / "final.safetensors"), load_file(out / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_full_disk_in_a_checkpoint_write(toy, tmp_path, monkeypatch):
    """Fault injection: the third write of last.pt finds the disk full (OSError ENOSPC half way through)."""
    import audiomamba.training.state as st

    real, calls = st.write_torch, [0]

    def filling(obj, tmp):
        calls[0] += 1
        if calls[0] < 3:
            return real(obj, tmp)
        with open(tmp, "wb") as f:
            f.write(b"the first bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(st, "write_torch", filling)
    out = tmp_path / "run"
    with pytest.raises(WriteError) as info:
        train(load_config(raw=raw_cfg(toy, out, train__epochs=2, train__checkpoint_every=1)))
    assert str(info.value) == f"cannot write {out / 'last.pt'}: no space left on device"
    assert exit_code_of(info.value) == EXIT_IO
    state = load_state(out / "last.pt")  # the previous checkpoint, whole
    assert state["step"] == 2 and state["epoch"] == 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_resume_drops_rows_after_the_checkpoint_and_fresh_run_starts_anew(toy, tmp_path):
    out = tmp_path / "run"
    train(load_config(raw=raw_cfg(toy, out, data__validation="train", train__epochs=1)))
    assert [m["step"] for m in _rows(out / "metrics.jsonl")] == [2]
    with open(out / "metrics.jsonl", "a") as f:  # what a killed later run may leave: a row past last.pt, a cut line
        f.write(json.dumps({"epoch": 2, "step": 4, "mAP": 0.1}) + "\n" + '{"epoch": 3, "st')
    res = train(load_config(raw=raw_cfg(toy, out, data__validation="train", train__epochs=2)),
                resume=str(out / "last.pt"))
    assert res["steps"] == 4
    assert [(m["epoch"], m["step"]) for m in _rows(out / "metrics.jsonl")] == [(1, 2), (2, 4)]
    assert _rows(out / "metrics.jsonl")[1]["mAP"] != 0.1
    train(load_config(raw=raw_cfg(toy, out, data__validation="train", train__epochs=1)))  # no --resume
    assert [(m["epoch"], m["step"]) for m in _rows(out / "metrics.jsonl")] == [(1, 2)]


def test_output_folder_that_is_a_file_or_unwritable(toy, tmp_path, monkeypatch):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(WriteError, match=r"cannot write to .*out: it is a file, not a folder \(train.output_dir\)"):
        train(load_config(raw=raw_cfg(toy, tmp_path / "out")))
    import audiomamba.utils.io as amio

    def refuse(*a, **k):  # as an unwritable folder does (injected: root writes anywhere)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(amio.tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match=f"^cannot write {tmp_path / 'run' / 'config.json'}: permission denied$"):
        train(load_config(raw=raw_cfg(toy, tmp_path / "run")))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if it ran


def test_damaged_resume_files_are_checkpoint_errors(tmp_path):
    from audiomamba.errors import CheckpointError, EXIT_CHECKPOINT
    from audiomamba.training.state import STATE_FORMAT, CheckpointNotFoundError

    good = {"format": STATE_FORMAT, "version": 1, "step": 3, "epoch": 1, "micro": 1, "model_name": "audiomamba_nano",
            "num_classes": 4, "world_size": 1, "model": {"w": torch.ones(3)}, "optimizer": {}, "rng": [],
            "best": {"mAP": -1.0, "step": -1}}
    torch.save(good, tmp_path / "good.pt")
    assert load_state(tmp_path / "good.pt")["step"] == 3
    whole = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "dir.pt").mkdir()
    torch.save({**good, "x": _Payload(str(tmp_path / "ran"))}, tmp_path / "evil.pt")
    torch.save({k: v for k, v in good.items() if k != "num_classes"}, tmp_path / "nokey.pt")
    torch.save({**good, "step": "3"}, tmp_path / "badtype.pt")
    cases = {
        "cut.pt": "damaged or not a training checkpoint",
        "text.pt": "damaged or not a training checkpoint",
        "dir.pt": "is a directory, not a training checkpoint",
        "evil.pt": "holds Python objects besides tensors",
        "nokey.pt": "'num_classes' should be of type int, is missing",
        "badtype.pt": "'step' should be of type int, is a str",
        "missing.pt": "training checkpoint not found",
    }
    for name, fragment in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_state(tmp_path / name)
        msg = str(info.value)
        assert fragment in msg and str(tmp_path / name) in msg and "weights_only=False" not in msg, msg
        assert "\n" not in msg and exit_code_of(info.value) == EXIT_CHECKPOINT
    assert not (tmp_path / "ran").exists()
    with pytest.raises(CheckpointNotFoundError):  # still a FileNotFoundError for existing callers
        load_state(tmp_path / "missing.pt")
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)


def test_an_epoch_without_one_usable_clip_is_an_error(tmp_path):
    from audiomamba.datasets import DatasetError

    d = tmp_path / "data"
    d.mkdir()
    x = np.full(SR // 2, np.inf, np.float32)
    rows = []
    for k in range(4):
        sf.write(d / f"bad{k}.wav", x, SR, subtype="FLOAT")
        rows.append({"path": f"bad{k}.wav", "labels": ["Dog" if k % 2 else "Cat"]})
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    with pytest.raises(DatasetError, match=r"train.jsonl: none of the 4 training examples of epoch 1 could be used "
                                           r"\(4 clip\(s\) undecodable, truncated or non-finite"):
        train(load_config(raw=raw_cfg(d, out, train__epochs=3)))
    assert not (out / "final.safetensors").exists()


def test_metrics_and_summary_are_strict_json():
    """A diverged loss or an undefined metric is null, never NaN (which is not JSON)."""
    from audiomamba.training.trainer import _json

    text = _json({"loss": float("nan"), "losses": [1.0, float("inf"), -float("inf")], "mAP": np.float32(0.5),
                  "steps": np.int64(3), "ok": True, "name": "x", "none": None})
    assert json.loads(text) == {"loss": None, "losses": [1.0, None, None], "mAP": 0.5, "steps": 3, "ok": True,
                                "name": "x", "none": None}
    assert "NaN" not in text and "Infinity" not in text


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test.  A shell starts background jobs (`make test &`) with SIGINT
    ignored, and Python then keeps it ignored; the Ctrl-C tests need the signal as a terminal delivers it."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _default_sigint() -> None:
    """``preexec_fn`` of a child that must get Ctrl-C whatever its parent ignores."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_to_the_process_group_stops_after_the_step_with_last_pt_then_resumes(toy, tmp_path):
    """A terminal's Ctrl-C (or `timeout --signal=INT`) reaches the CLI and its DataLoader workers: the run
    stops after the current step with last.pt written at that step (not at the last periodic checkpoint), exits
    130 with one line and no worker traceback, and --resume auto finishes it with the uninterrupted run's
    step count."""
    import signal
    import time

    import yaml

    over = dict(train__epochs=8, train__checkpoint_every=1000, train__log_every=1, data__num_workers=2,
                train__batch_size=8)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw_cfg(toy, tmp_path / "run", **over)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "audiomamba", "train", "--config", str(cfg_path)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)
    lines, deadline = [], time.time() + 300
    for line in proc.stderr:  # wait until steps are being logged, then interrupt the whole group
        lines.append(line)
        if "step 3" in line or time.time() > deadline:
            break
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    rc = proc.wait(timeout=120)
    err = "".join(lines) + rest
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.rstrip().splitlines()[-1] == "audiomamba train: interrupted"
    state = load_state(tmp_path / "run" / "last.pt")
    assert 3 <= state["step"] < 8
    assert f"interrupted at step {state['step']}" in err
    done = subprocess.run(cmd + ["--resume", "auto"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 8


def test_dataloader_workers_leave_ctrl_c_to_the_main_process(python_sigint):
    """Each item sends SIGINT to its own worker: with ignore_interrupt the workers carry on, without it the
    loader fails (the control that shows the signal does arrive)."""
    from audiomamba.utils.interrupt import ignore_interrupt

    class SelfInterrupting(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            import signal

            os.kill(os.getpid(), signal.SIGINT)
            return torch.tensor(i)

    kw = dict(batch_size=2, num_workers=2, multiprocessing_context="fork")
    got = torch.cat(list(torch.utils.data.DataLoader(SelfInterrupting(), worker_init_fn=ignore_interrupt, **kw)))
    assert got.tolist() == [0, 1, 2, 3]
    with pytest.raises(Exception):
        list(torch.utils.data.DataLoader(SelfInterrupting(), **kw))


def test_deferred_interrupt_flags_the_first_ctrl_c_and_raises_on_the_second(python_sigint):
    import signal

    from audiomamba.utils.interrupt import DeferredInterrupt

    with DeferredInterrupt("the test") as intr:
        os.kill(os.getpid(), signal.SIGINT)
        assert intr.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with DeferredInterrupt("the test", enabled=False) as off:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
        assert not off.requested
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignored by whoever started us (nohup, a background job): kept
    with DeferredInterrupt("the test") as ignored:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        assert not ignored.requested
