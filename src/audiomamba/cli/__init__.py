"""The ``audiomamba`` command line.

Each subcommand lives in the module of its task; this file maps names to those modules and ends every command
the same way.  A task module exposes ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code); it
reports a user error by raising one of :mod:`audiomamba.errors`' classes, and :func:`main` turns it into one
line on stderr, ``audiomamba COMMAND: error: MESSAGE``, and the class's exit code:

====  =====================================================================================================
0     done
1     some inputs failed (each named on stderr), the others were processed and written (``tag``, ``data``)
2     usage: a bad option, option value or config (file, key, type, range); a missing optional dependency
3     checkpoint: missing, unreadable, damaged, unsafe, or inconsistent with its own metadata
4     export failed, or the exported model does not reproduce PyTorch
5     data: a dataset, manifest, label file, source recording or audio input that cannot be used
6     a file that cannot be written or read: disk full, permission denied, a directory in the way
7     out of memory (host or GPU): a batch, input or model too large for this machine
70    a bug in audiomamba: the traceback is printed, then a line saying so
130   interrupted (Ctrl-C)
141   standard output was closed early (e.g. piped into ``head``); nothing is printed
====  =====================================================================================================

docs/errors.md says what triggers each code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from audiomamba.errors import (
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_MEMORY,
    EXIT_USAGE,
    AudiomambaError,
    MissingDependencyError,
    UsageError,
)

EXIT_BROKEN_PIPE = 141

# name -> (module, one-line help).  Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("audiomamba.cli.models", "list the registered models and their parameter counts"),
    "demo": ("audiomamba.cli.demo", "build a model, load a checkpoint and tag a generated waveform"),
    "train": ("audiomamba.cli.train", "train or fine-tune a tagger from a YAML config (torchrun for multi-GPU)"),
    "evaluate": ("audiomamba.cli.evaluate", "mAP, mAUC, d', F1, accuracy and event scores of a checkpoint on a dataset"),
    "data": ("audiomamba.cli.data", "build soundscape / ESC-50-style data sets from offline source recordings"),
    "tag": ("audiomamba.cli.tag", "tag audio files: clip tags, timestamped events, plots (any length)"),
    "export": ("audiomamba.cli.export", "export a checkpoint to ONNX or TorchScript (front end included)"),
    "convert": ("audiomamba.cli.convert", "convert a .safetensors checkpoint to a Hugging Face Hub model folder, or back"),
}

# optional dependencies -> the extra that installs them
EXTRAS: dict[str, str] = {
    "onnx": "export", "onnxruntime": "export", "onnxscript": "export", "matplotlib": "plot",
    "sed_scores_eval": "sed", "pandas": "sed", "tensorboard": "tensorboard", "huggingface_hub": "hub",
    "sounddevice": "stream", "triton": "triton",
}

EXIT_CODES_EPILOG = (
    "exit codes: 0 done; 1 some inputs failed, the others were written; 2 usage, option or config error; "
    "3 checkpoint error; 4 export failed; 5 data error; 6 cannot write (or read) a file; 7 out of memory; 70 bug; "
    "130 interrupted "
    "(docs/errors.md)"
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that a command-line error raises :class:`UsageError` (so :func:`main` prints
    it as its one error line) instead of printing the usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        err = UsageError(f"{message} (see {self.prog} --help)")
        err.prog = self.prog  # type: ignore[attr-defined]
        raise err


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="audiomamba", description="Audio Mamba: audio tagging with state-space models",
                            epilog=EXIT_CODES_EPILOG)
    from audiomamba import __version__

    parser.add_argument("--version", action="version", version=f"audiomamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # a real import error inside an existing command module
                raise
            continue  # command listed but its module is not part of this installation (yet)
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        mod.add_arguments(p)
        if not p.epilog:
            p.epilog = EXIT_CODES_EPILOG
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script exits with it).  User errors end in one line
    on stderr; any other exception is a bug: its traceback, a line saying so, exit code 70."""
    command = "audiomamba"
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command they were given to, not by the top-level parser
            prog = f"audiomamba {args.command}" if getattr(args, "command", None) else "audiomamba"
            err = UsageError(f"unrecognized arguments: {' '.join(extra)} (see {prog} --help)")
            err.prog = prog  # type: ignore[attr-defined]
            raise err
        if not getattr(args, "_module", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        command = f"audiomamba {args.command}"
        return int(importlib.import_module(args._module).run(args) or 0)
    except SystemExit:  # --help, --version
        raise
    except BaseException as e:  # noqa: BLE001 -- every exception ends here, classified
        return report(e, _prog(e, command))


def _prog(exc: BaseException, command: str) -> str:
    prog = getattr(exc, "prog", None)  # a parse error: the (sub)command whose options failed
    return " ".join(prog.split()[:2]) if prog else command


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` on one line (newlines and runs of spaces become one space), at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, AudiomambaError):
        cause = exc.strerror or str(exc)
        cause = cause[:1].lower() + cause[1:]
        if exc.filename is not None and exc.filename2 is not None:
            return f"{exc.filename} -> {exc.filename2}: {cause}"
        if exc.filename is not None:
            return f"{exc.filename}: {cause}"
        return f"I/O error: {cause}"
    return str(exc) or type(exc).__name__


def _missing_dependency(exc: ImportError) -> MissingDependencyError | None:
    """An ImportError of an optional dependency as a MissingDependencyError naming the extra; None otherwise."""
    if isinstance(exc, MissingDependencyError):
        return exc
    top = (getattr(exc, "name", None) or "").split(".")[0]
    if top in EXTRAS:
        return MissingDependencyError(f"{top} is not installed: pip install 'audiomamba[{EXTRAS[top]}]'")
    if top == "timm":  # the peer models' blocks
        return MissingDependencyError("timm is not installed (the peer models need it): pip install timm")
    if "pip install 'audiomamba[" in str(exc):  # the package's own hint for an extra
        return MissingDependencyError(str(exc))
    return None


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "CUDA out of memory" in text)


def report(exc: BaseException, command: str = "audiomamba") -> int:
    """Print what ``exc`` means for the user on stderr and return the exit code (the command line's scheme)."""
    if isinstance(exc, KeyboardInterrupt):
        _line(f"{command}: interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):  # the reader went away: say nothing more, stop writing
        try:
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    if isinstance(exc, ImportError):
        dep = _missing_dependency(exc)
        if dep is not None:
            exc = dep
    if isinstance(exc, AudiomambaError):
        _line(f"{command}: error: {one_line(_message(exc))}")
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    if isinstance(exc, OSError):
        _line(f"{command}: error: {one_line(_message(exc))}")
        return EXIT_IO
    if _out_of_memory(exc):
        _line(f"{command}: error: out of memory ({one_line(str(exc) or type(exc).__name__, 300)}); use a smaller batch "
              "size (--batch-size, train.batch_size) or shorter input")
        return EXIT_MEMORY
    from audiomamba import __version__

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    _line(f"{command}: internal error: this is a bug in audiomamba {__version__}, not in your input; please report it "
          "with the command line and the traceback above")
    return EXIT_BUG


def _line(text: str) -> None:
    try:
        sys.stderr.flush()
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
