"""Ctrl-C in long runs: the first one is acted on at a safe point, a second one stops at once.

A training run interrupted in the middle of an optimiser step or a checkpoint write would lose the steps since
its last checkpoint.  :class:`DeferredInterrupt` turns the first SIGINT into a flag that the loop reads between
steps (the trainer then writes ``last.pt`` and stops, exit 130); the handler is removed as it fires, so a second
Ctrl-C raises ``KeyboardInterrupt`` wherever it lands.  DataLoader workers ignore SIGINT
(:func:`ignore_interrupt`): a terminal's Ctrl-C and ``timeout --signal=INT`` reach the whole process group, and a
worker that dies of it mid-hand-over prints its own traceback; the main process shuts the workers down instead.
"""

from __future__ import annotations

import logging
import signal
import threading

__all__ = ["DeferredInterrupt", "ignore_interrupt"]

log = logging.getLogger("audiomamba")


class DeferredInterrupt:
    """Within ``with DeferredInterrupt(what) as intr:``, the first SIGINT sets ``intr.requested`` (and logs that
    ``what`` stops at the next safe point) instead of raising.  Inactive (a plain ``requested = False``) off the
    main thread, when ``enabled`` is False, or when another handler than Python's default is installed."""

    def __init__(self, what: str, enabled: bool = True) -> None:
        self.what, self.enabled = what, enabled
        self.requested = False
        self._previous = None

    def __enter__(self) -> "DeferredInterrupt":
        if (self.enabled and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self._restore()
        log.warning("interrupt: %s stops at the next safe point (Ctrl-C again to stop at once)", self.what)

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def __exit__(self, *exc) -> None:
        self._restore()


def ignore_interrupt(worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: the worker ignores SIGINT, leaving Ctrl-C to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
