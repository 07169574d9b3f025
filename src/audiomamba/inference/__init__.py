"""Inference for users: the :class:`Tagger` (files, arrays or tensors of any length in; tags, framewise scores and
events out), the piece planner it shares with the model and the exporter (:mod:`~audiomamba.inference.pieces`),
event detection, export and plots.

The names below are imported on first use: the model imports :mod:`audiomamba.inference.pieces`, and the Tagger
imports the model, so loading the Tagger with this package would make the two import each other.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Tagger", "TagResult", "FileError", "Event", "detect_events"]

_HOME = {"Tagger": "tagger", "TagResult": "results", "FileError": "results", "Event": "events", "detect_events": "events"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
