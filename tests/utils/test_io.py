"""utils/io: atomic writes that fail with one message naming the path and the cause (disk full, permission, a
folder in the way, a file size limit) and leave the previous file intact; leftovers of killed writes removed."""

import errno
import os
import subprocess
import sys
import time

import pytest
import torch

from audiomamba.errors import WriteError, exit_code_of, EXIT_IO
from audiomamba.utils import io as amio
from audiomamba.utils.io import atomic_write, is_temp_name, process_start_time, remove_stale_temps, write_torch


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_full_disk_names_path_and_cause_and_keeps_previous_file(tmp_path):
    target = tmp_path / "runs" / "x" / "last.pt"
    atomic_write(target, lambda tmp: write_torch({"step": 1}, tmp))

    def full_disk(tmp):  # fault injection: the disk fills up half way through the write
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as info:
        atomic_write(target, full_disk)
    assert str(info.value) == f"cannot write {target}: no space left on device"
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert isinstance(info.value, OSError) and exit_code_of(info.value) == EXIT_IO
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert _temps(target.parent) == []


def test_torch_save_short_write_reports_the_os_error(tmp_path, monkeypatch):
    """torch.save reports a failed write as "enforce fail at inline_container.cc ... unexpected pos"; write_torch
    hands it the file, records the OSError and raises that instead."""
    target = tmp_path / "last.pt"
    atomic_write(target, lambda tmp: write_torch({"step": 1}, tmp))
    real_open = open

    class FullFile:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 200:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: FullFile(real_open(p, mode, *a, **k))
                        if str(p).endswith(".tmp") and "w" in mode else real_open(p, mode, *a, **k))
    with pytest.raises(WriteError, match=f"^cannot write {target}: no space left on device$"):
        atomic_write(target, lambda tmp: write_torch({"step": 2, "w": torch.randn(10000)}, tmp))
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1} and _temps(tmp_path) == []


def test_opaque_runtime_error_on_a_full_disk(tmp_path, monkeypatch):
    """A library that only says "unexpected pos": with (almost) no free space left, the cause is the full disk; with
    space left, the error is not an I/O problem we can name and propagates unchanged."""
    target = tmp_path / "m.bin"

    def opaque(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(amio.shutil, "disk_usage", lambda p: type("U", (), {"free": 0})())
    with pytest.raises(WriteError, match=f"^cannot write {target}: no space left on device$"):
        atomic_write(target, opaque)
    monkeypatch.setattr(amio.shutil, "disk_usage", lambda p: type("U", (), {"free": 1 << 40})())
    with pytest.raises(RuntimeError, match="unexpected pos") as info:
        atomic_write(target, opaque)
    assert not isinstance(info.value, WriteError)
    # safetensors quotes the errno in its message
    with pytest.raises(WriteError, match=f"^cannot write {target}: file too large$"):
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(
            Exception("Error while serializing: I/O error: File too large (os error 27)")))
    with pytest.raises(ValueError, match="a bug"):  # not an I/O error: untouched
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(ValueError("a bug")))
    assert not target.exists() and _temps(tmp_path) == []


def test_folder_in_the_way_and_unwritable_folder(tmp_path, monkeypatch):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(WriteError, match=f"^cannot write {tmp_path / 'out.json'}: is a directory$"):
        atomic_write(tmp_path / "out.json", lambda tmp: open(tmp, "w").write("{}"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*file/sub/out.json: not a directory"):
        atomic_write(tmp_path / "file" / "sub" / "out.json", lambda tmp: None)
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "last.pt").write_bytes(b"old")
    if os.geteuid() == 0:  # root writes whatever the mode: inject the refusal instead
        def refuse(*a, **k):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr(amio.tempfile, "mkstemp", refuse)
    ro.chmod(0o500)
    try:
        with pytest.raises(WriteError, match=f"^cannot write {ro / 'last.pt'}: permission denied$"):
            atomic_write(ro / "last.pt", lambda tmp: open(tmp, "wb").write(b"new"))
    finally:
        ro.chmod(0o700)
    assert (ro / "last.pt").read_bytes() == b"old" and _temps(ro) == []


def test_file_size_limit_is_a_real_write_error(tmp_path):
    """No fault injection: the kernel refuses the write (RLIMIT_FSIZE, which needs no privileges), through
    torch.save."""
    pytest.importorskip("resource")
    target = tmp_path / "last.pt"
    code = (
        "import resource, signal, sys, torch\n"
        "from audiomamba.utils.io import atomic_write, write_torch\n"
        "from audiomamba.errors import WriteError\n"
        f"atomic_write({str(target)!r}, lambda tmp: write_torch({{'step': 1}}, tmp))\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200000, 200000))\n"
        "try:\n"
        f"    atomic_write({str(target)!r}, lambda tmp: write_torch({{'step': 2, 'w': torch.zeros(200000)}}, tmp))\n"
        "except WriteError as e:\n"
        "    print(e); sys.exit(6)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 6, proc.stderr
    assert proc.stdout.strip() == f"cannot write {target}: file too large"
    assert torch.load(target, weights_only=True) == {"step": 1} and _temps(tmp_path) == []


def test_real_full_disk_where_a_small_tmpfs_can_be_mounted(tmp_path):
    """A real ENOSPC: a 256 KiB tmpfs in a user and mount namespace (no privileges needed where the kernel allows
    unprivileged user namespaces); skipped cleanly where it does not."""
    import shutil

    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        pytest.skip("needs Linux and unshare")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=256k none {disk}"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    target = disk / "last.pt"
    code = (
        "import sys, torch\n"
        "from audiomamba.utils.io import atomic_write, write_torch\n"
        "from audiomamba.errors import WriteError\n"
        f"atomic_write({str(target)!r}, lambda tmp: write_torch({{'step': 1, 'w': torch.ones(40000)}}, tmp))\n"
        "try:\n"
        f"    atomic_write({str(target)!r}, lambda tmp: write_torch({{'step': 2, 'w': torch.zeros(40000)}}, tmp))\n"
        "except WriteError as e:\n"
        "    print(e)\n"
        f"s = torch.load({str(target)!r}, weights_only=True)\n"
        "import os\n"
        f"print(s['step'], bool((s['w'] == 1).all()), sorted(os.listdir({str(disk)!r})))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    mount_then_run = f'mount -t tmpfs -o size=256k none {disk} && exec "$0" -c "$1"'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", mount_then_run, sys.executable, code], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"cannot write {target}: no space left on device", "1 True ['last.pt']"]


def test_stale_temps_removed_and_nothing_else(tmp_path):
    old = time.time() - 3600
    stale = [".last.pt.k3j_9x0a.tmp", ".best.safetensors.abcdefgh.tmp", ".metrics.jsonl.00000000.tmp"]
    kept = [".last.pt.abc.tmp", ".notes.tmp", "last.pt.abcdefgh.tmp", ".last.pt.ABCDEFGH.tmp", "x.wav",
            ".last.pt.abcdefgh.tmp.bak", "last.pt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x" * 10)
        os.utime(tmp_path / name, (old, old))
    (tmp_path / ".fresh.pt.abcdefgh.tmp").write_bytes(b"being written by a live process")  # newer than `before`
    (tmp_path / ".dir.pt.abcdefgh.tmp").mkdir()  # a folder: never ours
    os.utime(tmp_path / ".dir.pt.abcdefgh.tmp", (old, old))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".last.pt.abcdefgh.tmp").write_bytes(b"x")  # only the folder itself is cleaned
    os.utime(tmp_path / "sub" / ".last.pt.abcdefgh.tmp", (old, old))
    assert all(is_temp_name(n) for n in stale) and not any(is_temp_name(n) for n in kept)

    removed = remove_stale_temps(tmp_path, before=time.time() - 60)
    assert sorted(p.name for p in removed) == sorted(stale)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(kept + [".fresh.pt.abcdefgh.tmp", ".dir.pt.abcdefgh.tmp", "sub"])
    assert (tmp_path / "sub" / ".last.pt.abcdefgh.tmp").exists()
    assert remove_stale_temps(tmp_path / "missing") == []


def test_process_start_is_before_any_temp_this_process_writes(tmp_path):
    start = process_start_time()
    assert start <= time.time()
    target = tmp_path / "a.txt"
    seen = []
    atomic_write(target, lambda tmp: (open(tmp, "w").write("x"), seen.append(os.stat(tmp).st_mtime)))
    assert seen[0] >= start
    # a temp file of a live write in this process is never taken for a leftover
    leftover = tmp_path / ".b.txt.abcdefgh.tmp"
    leftover.write_text("live")
    assert remove_stale_temps(tmp_path) == [] and leftover.exists()


def test_json_safe_gives_strict_json():
    import json
    import math

    import numpy as np
    import torch

    from audiomamba.utils.io import json_safe

    obj = {"loss": float("nan"), "mAP": np.float32(0.5), "steps": np.int64(3), "inf": -math.inf, "ok": True,
           "t": torch.tensor(2.5), "list": (1, None, "a"), "path": object}
    out = json_safe(obj)
    text = json.dumps(out, allow_nan=False)  # would raise on NaN or numpy scalars
    assert json.loads(text) == {"loss": None, "mAP": 0.5, "steps": 3, "inf": None, "ok": True, "t": 2.5,
                                "list": [1, None, "a"], "path": str(object)}
    assert type(out["steps"]) is int and out["ok"] is True
