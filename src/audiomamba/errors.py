"""The package's exceptions, in one place, and the command line's exit codes.

Every error a user can cause (a bad file, checkpoint, dataset, config or option) derives from
:class:`AudiomambaError`, and also from the built-in exception it has always been (``ValueError``,
``RuntimeError``, ``KeyError``, ``OSError``), so existing ``except`` clauses keep working.  Messages name the
culprit: the file (and line), the config key or the option.

Each class carries the ``exit_code`` the ``audiomamba`` command ends with when it escapes a command (see
:func:`exit_code_of` and docs/errors.md); a subclass inherits its parent's.
"""

from __future__ import annotations

__all__ = [
    "AudiomambaError",
    "AudioDecodeError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "DataBuildError",
    "ExportError",
    "MissingDependencyError",
    "SourceError",
    "UnknownModelError",
    "UsageError",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "EXIT_CHECKPOINT",
    "EXIT_EXPORT",
    "EXIT_DATA",
    "EXIT_IO",
    "EXIT_MEMORY",
    "EXIT_BUG",
    "EXIT_INTERRUPTED",
    "exit_code_of",
]

# The exit codes of every ``audiomamba`` command (docs/errors.md lists what triggers each).
EXIT_OK = 0  # done
EXIT_PARTIAL = 1  # some inputs failed (each named on stderr); the others were processed and written (tag, data)
EXIT_USAGE = 2  # bad command line, option value or config (file, key, type, range), missing optional dependency
EXIT_CHECKPOINT = 3  # a checkpoint is missing, unreadable, damaged, unsafe or inconsistent with its own metadata
EXIT_EXPORT = 4  # export failed, or the exported model does not reproduce PyTorch's outputs
EXIT_DATA = 5  # a dataset, manifest, label file, source recording or audio input cannot be used
EXIT_IO = 6  # an output (or other file) cannot be written or read: disk full, permission, a directory in the way
EXIT_MEMORY = 7  # out of memory (host or GPU): a batch, input or model too large for this machine
EXIT_BUG = 70  # an unexpected exception: a bug in audiomamba (the traceback is printed)
EXIT_INTERRUPTED = 130  # Ctrl-C


class AudiomambaError(Exception):
    """Base of every user-facing audiomamba error."""

    exit_code = EXIT_USAGE


class UsageError(AudiomambaError, ValueError):
    """A bad command-line option or combination of options; the message names the option."""

    exit_code = EXIT_USAGE


class MissingDependencyError(AudiomambaError, ImportError):
    """An optional dependency (an extra) is not installed; the message says which ``pip install`` adds it."""

    exit_code = EXIT_USAGE


class AudioDecodeError(AudiomambaError, RuntimeError):
    """A file could not be read or decoded as audio. The message names the file."""

    exit_code = EXIT_DATA


class CheckpointError(AudiomambaError, ValueError):
    """A checkpoint is missing, unreadable, or does not match its own config or the model asked for."""

    exit_code = EXIT_CHECKPOINT


class ConfigError(AudiomambaError, ValueError):
    """A training config is invalid; the message names the file, the key and what is wrong."""

    exit_code = EXIT_USAGE


class DatasetError(AudiomambaError, ValueError):
    """A dataset cannot be read: missing files, malformed rows, unknown labels.  The message names the source."""

    exit_code = EXIT_DATA


class DataBuildError(AudiomambaError, RuntimeError):
    """The built-in soundscape data could not be built (too few sources, bad settings)."""

    exit_code = EXIT_DATA


class SourceError(AudiomambaError, RuntimeError):
    """Source recordings for the built-in data are missing or unreadable."""

    exit_code = EXIT_DATA


class ExportError(AudiomambaError, RuntimeError):
    """Export failed, or the exported model does not reproduce PyTorch's outputs."""

    exit_code = EXIT_EXPORT


class UnknownModelError(AudiomambaError, KeyError):
    """A model name that is not registered."""

    exit_code = EXIT_USAGE

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def exit_code_of(exc: BaseException) -> int:
    """The exit code for ``exc`` escaping a command: an :class:`AudiomambaError`'s ``exit_code``; any other
    ``OSError`` (a file that cannot be read or written) :data:`EXIT_IO`; Ctrl-C :data:`EXIT_INTERRUPTED`;
    anything else :data:`EXIT_BUG`."""
    if isinstance(exc, AudiomambaError):
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, OSError):
        return EXIT_IO
    return EXIT_BUG


class WriteError(AudiomambaError, OSError):
    """An output (checkpoint, metrics, results) could not be written: disk full, permission denied, a directory in
    the way.  The message names the path and the cause, e.g. ``cannot write runs/x/last.pt: no space left on
    device``; ``errno`` and ``filename`` are those of the failed write.  An atomic write that fails leaves the
    previous file as it was."""

    exit_code = EXIT_IO

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.errno, self.filename = errno, filename

    def __str__(self) -> str:  # OSError would format "[Errno n] ..." from its arguments; show the message plainly
        return str(self.args[0])


__all__ += ["WriteError"]
