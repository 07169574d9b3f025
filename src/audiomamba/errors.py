"""The package's exceptions, in one place.

Every error a user can cause (a bad file, checkpoint, dataset, config or option) derives from
:class:`AudiomambaError`, and also from the built-in exception it has always been (``ValueError``,
``RuntimeError``, ``KeyError``), so existing ``except`` clauses keep working.  Messages name the culprit: the
file (and line), the config key or the option.
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
    "SourceError",
    "UnknownModelError",
]


class AudiomambaError(Exception):
    """Base of every user-facing audiomamba error."""


class AudioDecodeError(AudiomambaError, RuntimeError):
    """A file could not be read or decoded as audio. The message names the file."""


class CheckpointError(AudiomambaError, ValueError):
    """A checkpoint is missing, unreadable, or does not match its own config or the model asked for."""


class ConfigError(AudiomambaError, ValueError):
    """A training config is invalid; the message names the file, the key and what is wrong."""


class DatasetError(AudiomambaError, ValueError):
    """A dataset cannot be read: missing files, malformed rows, unknown labels.  The message names the source."""


class DataBuildError(AudiomambaError, RuntimeError):
    """The built-in soundscape data could not be built (too few sources, bad settings)."""


class SourceError(AudiomambaError, RuntimeError):
    """Source recordings for the built-in data are missing or unreadable."""


class ExportError(AudiomambaError, RuntimeError):
    """Export failed, or the exported model does not reproduce PyTorch's outputs."""


class UnknownModelError(AudiomambaError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class WriteError(AudiomambaError, OSError):
    """An output (checkpoint, metrics, results) could not be written: disk full, permission denied, a directory in
    the way.  The message names the path and the cause, e.g. ``cannot write runs/x/last.pt: no space left on
    device``; ``errno`` and ``filename`` are those of the failed write.  An atomic write that fails leaves the
    previous file as it was."""

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.errno, self.filename = errno, filename

    def __str__(self) -> str:  # OSError would format "[Errno n] ..." from its arguments; show the message plainly
        return str(self.args[0])


__all__ += ["WriteError"]
