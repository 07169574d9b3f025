"""Inference for users: the :class:`Tagger` (files, arrays or tensors of any length in; tags, framewise scores and
events out), the piece planner it shares with the model and the exporter, event detection, export and plots."""

from audiomamba.inference.events import Event, detect_events
from audiomamba.inference.tagger import FileError, Tagger, TagResult

__all__ = ["Tagger", "TagResult", "FileError", "Event", "detect_events"]
