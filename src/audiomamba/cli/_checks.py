"""Up-front checks of command-line options, run before a command does any work.

Each check raises the error class of the command line's exit-code scheme (:mod:`audiomamba.errors`) with a
message naming the option: :class:`UsageError` for a value out of range or a device that is not there,
:class:`WriteError` for an output that could not be written, :class:`CheckpointError` / :class:`DatasetError`
for an input that is not there.
"""

from __future__ import annotations

import errno
import math
import os
import tempfile
from pathlib import Path

from audiomamba.errors import AudiomambaError, UsageError, WriteError

__all__ = ["number", "device", "output_file", "output_dir", "input_path", "int_list", "workers", "label_file",
           "tensor_file"]


def number(value, option: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, allow_none: bool = False) -> None:
    """``value`` is a finite number within ``[low, high]`` (``low_open``/``high_open``: the bound excluded)."""
    if value is None and allow_none:
        return
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    want = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number in {want}, got {value!r}")
    if (low is not None and (value < low or (low_open and value == low))) or \
       (high is not None and (value > high or (high_open and value == high))):
        if low is not None and high is None:
            rule = f"{'>' if low_open else '>='} {low:g}"
        elif high is not None and low is None:
            rule = f"{'<' if high_open else '<='} {high:g}"
        else:
            rule = f"in {want}"
        raise UsageError(f"{option} must be {rule}, got {value:g}")


def device(value: str | None, option: str = "--device"):
    """The torch device ``value`` names; one that is not there (CUDA without a GPU, cuda:7 of 1) is a
    :class:`UsageError` naming ``option``."""
    import torch

    from audiomamba.utils.device import resolve_device

    try:
        dev = torch.device(value) if value not in (None, "auto") else None
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"{option} {value!r}: not a device (auto, cpu, cuda or cuda:N)") from None
    if dev is not None and dev.type not in ("cpu", "cuda"):
        mps = dev.type == "mps" and getattr(getattr(torch.backends, "mps", None), "is_available", lambda: False)()
        if not mps:
            raise UsageError(f"{option} {value}: not available here (use cpu, cuda, cuda:N or auto)")
    if dev is not None and dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{option} {value}: CUDA is not available on this machine (use cpu, or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"{option} {value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    try:
        return resolve_device(value)
    except (ValueError, RuntimeError) as e:
        raise UsageError(f"{option} {value}: {e}") from None


def _write_probe(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``: the one test of writability that also holds for root, read-only
    file systems and full disks."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".audiomamba-write-test-"):
            pass
    except OSError as e:
        raise WriteError(f"{what}: cannot write in {folder}: {_cause(e)}", e.errno, str(folder)) from None


def _cause(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "read-only file system"
    return (e.strerror or str(e)).lower()


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def output_file(path: str | os.PathLike | None, option: str, create_parent: bool = True) -> Path | None:
    """``path`` can be written as a file: it is not a directory, its folder exists (created when
    ``create_parent``) and accepts files, and an existing file there is writable.  Returns the path."""
    if path is None:
        return None
    p = Path(path)
    what = f"{option} {p}"
    if str(path).endswith(("/", os.sep)) or p.is_dir():
        raise WriteError(f"{what}: is a directory; give a file name", errno.EISDIR, str(p))
    if p.exists() and not p.is_file():  # a device or pipe (/dev/stdout, a FIFO): written in place
        if not os.access(p, os.W_OK):
            raise WriteError(f"{what}: permission denied", errno.EACCES, str(p))
        return p
    parent = p.parent
    if not parent.is_dir():
        anc = _existing_ancestor(parent)
        if anc.exists() and not anc.is_dir():
            raise WriteError(f"{what}: {anc} is a file, not a directory", errno.ENOTDIR, str(anc))
        if not create_parent:
            raise WriteError(f"{what}: folder {parent} does not exist", errno.ENOENT, str(parent))
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{what}: cannot create folder {parent}: {_cause(e)}", e.errno, str(parent)) from None
    _write_probe(parent, what)
    if p.exists() and not os.access(p, os.W_OK):
        raise WriteError(f"{what}: permission denied", errno.EACCES, str(p))
    return p


def output_dir(path: str | os.PathLike | None, option: str, create: bool = True) -> Path | None:
    """``path`` is (or can be created as) a directory that accepts files.  Returns the path."""
    if path is None:
        return None
    p = Path(path)
    what = f"{option} {p}"
    if p.exists() and not p.is_dir():
        raise WriteError(f"{what}: exists and is not a directory", errno.ENOTDIR, str(p))
    if not p.exists():
        anc = _existing_ancestor(p)
        if anc.exists() and not anc.is_dir():
            raise WriteError(f"{what}: {anc} is a file, not a directory", errno.ENOTDIR, str(anc))
        if not create:
            _write_probe(anc, what)
            return p
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{what}: cannot create it: {_cause(e)}", e.errno, str(p)) from None
    _write_probe(p, what)
    return p


def input_path(path: str | os.PathLike, option: str, error: type[AudiomambaError], kind: str = "file") -> Path:
    """``path`` exists (a file for ``kind="file"``, a folder for ``"dir"``, either for ``"any"``) and can be
    read; else ``error`` (e.g. CheckpointError, DatasetError, ConfigError) naming the option."""
    p = Path(path).expanduser()
    what = f"{option} {p}" if option else str(p)
    if not p.exists():
        raise error(f"{what}: no such file or directory")
    if kind == "file" and p.is_dir():
        raise error(f"{what}: is a directory, not a file")
    if kind == "dir" and not p.is_dir():
        raise error(f"{what}: is a file, not a directory")
    if not os.access(p, os.R_OK):
        raise error(f"{what}: permission denied")
    return p


def int_list(text: str | None, option: str, low: int = 1) -> list[int]:
    """"1,2,3" -> [1, 2, 3]: whole numbers >= ``low``, at least one."""
    if text is None:
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise UsageError(f"{option} takes comma-separated whole numbers, got {text!r}") from None
        if n < low:
            raise UsageError(f"{option}: {n} must be >= {low}")
        out.append(n)
    if not out:
        raise UsageError(f"{option} takes comma-separated whole numbers, got {text!r}")
    return out


def workers(value: int, option: str = "--workers") -> None:
    """A worker-process count: >= 0, and not more than a few per CPU core (each one is a process)."""
    limit = max(64, 4 * (os.cpu_count() or 1))
    number(value, option, low=0, high=limit)


def label_file(path: str | os.PathLike, option: str) -> None:
    """``path`` is a readable class_labels_indices.csv (index,mid,display_name); else a DatasetError naming the
    option, the file and the line."""
    from audiomamba.errors import DatasetError
    from audiomamba.labels import read_class_labels

    p = input_path(path, option, DatasetError)
    try:
        read_class_labels(p)
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        raise DatasetError(f"{option}: {e}") from None


def tensor_file(path: str | os.PathLike, option: str) -> None:
    """``path`` holds tensors that can be read without unpickling anything: a safetensors file (its header is
    read), or a ``torch.save`` file that loads with ``weights_only=True`` (memory-mapped).  Else a
    CheckpointError naming the option; never advice to unpickle."""
    from audiomamba.errors import CheckpointError

    p = input_path(path, option, CheckpointError)
    with open(p, "rb") as f:
        magic = f.read(9)
    if magic[8:9] == b"{":  # safetensors: an 8-byte header length, then the JSON header
        from audiomamba.checkpoint import read_header

        try:
            read_header(p)
        except CheckpointError as e:
            raise CheckpointError(f"{option}: {e}") from None
        return
    if magic[:4] != b"PK\x03\x04" and magic[:1] != b"\x80":
        raise CheckpointError(f"{option} {p}: not a checkpoint (neither safetensors nor a torch.save file)")
    torch_load_tensors(p, option, "checkpoint")


def torch_load_tensors(p, option: str, what: str):
    """``torch.load(p, weights_only=True)``, memory-mapped where the file's format allows; a file that holds
    Python objects (it is not unpickled: that can run code) or that is damaged is a CheckpointError naming
    ``option`` and the file (``what``: the kind of file expected, for the message)."""
    import pickle
    import re

    import torch

    from audiomamba.errors import CheckpointError

    try:
        try:
            return torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # a file of the old (non-zip) format cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        refers = f" (it refers to {found.group(1)})" if found else ""
        raise CheckpointError(f"{option} {p}: holds Python objects besides tensors and plain containers{refers}; it is "
                              "not loaded, because unpickling can run code") from None
    except Exception as e:  # zip, pickle or tensor errors of a truncated or damaged file
        raise CheckpointError(f"{option} {p}: not a readable {what} (damaged or truncated?): {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]}") from None
