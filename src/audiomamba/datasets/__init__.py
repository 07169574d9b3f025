"""Datasets for training and evaluation: manifests (JSONL/CSV), AudioSet, ESC-50, class folders and packed
shards, all read into one clip representation (:class:`ClipSet` of :class:`Clip`)."""

from audiomamba.datasets.core import Clip, ClipSet, DatasetError
from audiomamba.datasets.loader import ClipDataset, collate, detect_format, load_clip, open_split

__all__ = ["Clip", "ClipSet", "DatasetError", "ClipDataset", "collate", "detect_format", "load_clip", "open_split"]
