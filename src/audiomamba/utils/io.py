"""File writes that a crash cannot leave half done, and that fail with one clear message.

:func:`atomic_write` writes a temporary file next to the target (``.NAME.XXXXXXXX.tmp``), flushes it to disk
and renames it onto the target, so a crash, a kill or a full disk leaves the previous file as it was.  A write
that fails raises :class:`~audiomamba.errors.WriteError` naming the path and the cause (``cannot write
runs/x/last.pt: no space left on device``).  A process killed during a write leaves its temporary file behind;
:func:`remove_stale_temps` removes such leftovers when the next run starts in that folder.
"""

from __future__ import annotations

import errno as _errno
import logging
import math
import numbers
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from audiomamba.errors import WriteError

__all__ = ["atomic_write", "write_torch", "write_error", "remove_stale_temps", "is_temp_name", "process_start_time",
           "json_safe", "TEMP_SUFFIX"]

log = logging.getLogger("audiomamba.io")

TEMP_SUFFIX = ".tmp"
# ".<target name>.<8 characters of tempfile's alphabet>.tmp": what atomic_write's mkstemp call creates, nothing else
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
_IMPORTED_AT = time.time()  # no temporary file of this process is older: atomic_write lives in this module
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")  # how Rust libraries (safetensors) quote an errno
_LOW_SPACE = 1 << 20  # bytes: a failed write with less than this free on its file system is taken as a full disk


def _cause(exc: BaseException, folder: Path | None = None) -> tuple[str, int | None] | None:
    """(cause in words, errno) of a failed write, or None when the failure is not an I/O problem."""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None:
        m = _OS_ERROR_IN_TEXT.search(str(exc))
        code = int(m.group(1)) if m else None
    if code is None and folder is not None and isinstance(exc, RuntimeError):  # torch's opaque short write
        try:
            if shutil.disk_usage(folder).free < _LOW_SPACE:
                code = _errno.ENOSPC
        except OSError:
            pass
    if code is not None:
        text = os.strerror(code)
        return text[:1].lower() + text[1:], code
    if isinstance(exc, OSError):
        return str(exc) or type(exc).__name__, None
    return None


def write_error(path: str | os.PathLike, exc: BaseException) -> WriteError:
    """The :class:`WriteError` for a failed write of ``path``: ``cannot write PATH: CAUSE``."""
    if isinstance(exc, WriteError):
        return exc
    cause, code = _cause(exc) or (str(exc) or type(exc).__name__, None)
    return WriteError(f"cannot write {path}: {cause}", code, str(path))


class _RecordingFile:
    """A binary file for ``torch.save`` that keeps the first ``OSError`` of a write: torch reports a failed write as
    an opaque ``RuntimeError`` ("unexpected pos ...") without the cause."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def write_torch(obj: Any, tmp: str | os.PathLike) -> None:
    """``torch.save(obj)`` into the file ``tmp``; a failed write raises the ``OSError`` that caused it."""
    import torch

    with open(tmp, "wb") as f:
        rec = _RecordingFile(f)
        try:
            torch.save(obj, rec)
        except Exception as e:
            if rec.error is not None:
                raise rec.error from e
            raise


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    if directory and os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY if directory else os.O_RDWR)
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems cannot sync a folder; a file's data must reach the disk
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``: a crash leaves the old file.

    The data are flushed to disk before the rename (a full disk is reported here, not found later in a
    truncated file).  A failed write removes the temporary file, leaves ``path`` untouched and raises
    :class:`WriteError` (``cannot write PATH: no space left on device`` / ``permission denied`` / ...); an
    error of ``write`` that is not an I/O problem propagates as it is.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(_errno.EISDIR, os.strerror(_errno.EISDIR), str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except WriteError:
        raise
    except Exception as e:
        cause = _cause(e, path.parent)
        if cause is None:
            raise
        raise WriteError(f"cannot write {path}: {cause[0]}", cause[1], str(path)) from e
    finally:
        if os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    try:
        _fsync(path.parent, directory=True)
    except OSError:
        pass


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`atomic_write`'s temporary files (``.NAME.XXXXXXXX.tmp``)."""
    return _TEMP_NAME.match(name) is not None


def process_start_time() -> float:
    """When this process started (seconds since the epoch; Linux: from ``/proc``), never later than the import of
    this module, so that no temporary file this process writes looks older."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, starttime, in clock ticks after boot
        # the tick counter is truncated: the start lies within the tick after it (10 ms)
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - (ticks + 1) / os.sysconf("SC_CLK_TCK")
        return min(time.time() - age, _IMPORTED_AT)
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        return _IMPORTED_AT


def remove_stale_temps(folder: str | os.PathLike, before: float | None = None) -> list[Path]:
    """Remove the temporary files of interrupted :func:`atomic_write` calls in ``folder`` (not below it): files
    named ``.NAME.XXXXXXXX.tmp`` last modified before ``before`` (default: this process's start).  Nothing
    else is touched, whatever its name.  Returns the removed paths; each is logged with its size."""
    folder = Path(folder)
    before = process_start_time() if before is None else before
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            if st.st_mtime >= before:
                continue
            os.unlink(entry.path)
        except OSError as e:
            log.warning("could not remove the leftover temporary file %s: %s", entry.path, e)
            continue
        log.info("removed %s (%.1f MB), left by an interrupted write", entry.path, st.st_size / 1e6)
        removed.append(Path(entry.path))
    return removed


def json_safe(obj: Any) -> Any:
    """``obj`` made fit for strict JSON (``json.dumps(..., allow_nan=False)``): a NaN or infinite number (a
    diverged loss, an undefined metric) becomes null, numpy and torch scalars become Python numbers, anything else
    that is not a number becomes its string."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    try:
        f = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    return f if math.isfinite(f) else None
