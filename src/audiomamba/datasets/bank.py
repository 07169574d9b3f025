"""Reading a source bank as a dataset: soundscapes planned up front, rendered on the fly by the loader.

``open_split(BANK_DIR, "train")`` (format ``"bank"``, detected from ``bank.json``) gives a :class:`ClipSet` whose
clips carry their mixing plan (:mod:`audiomamba.soundscapes.bank`): labels and strong labels are known before any
audio is made, so balanced sampling and crop targets work as for files, and :func:`audiomamba.datasets.load_clip`
renders the audio from the bank in memory.  A split may name its size: ``"train:50000"`` (default: the count
stored in the bank).
"""

from __future__ import annotations

from pathlib import Path

from audiomamba.datasets.core import Clip, ClipSet, DatasetError
from audiomamba.soundscapes.bank import open_bank
from audiomamba.soundscapes.mixer import SPLITS
from audiomamba.soundscapes.vocabulary import mid_for

__all__ = ["read_bank"]


def read_bank(root: str | Path, split: str) -> ClipSet:
    """The planned clips of ``split`` (``"train"``, ``"validation"`` or ``"test"``, optionally ``":N"`` clips)."""
    name, _, count = split.partition(":")
    if name not in SPLITS:
        raise DatasetError(f"{root}: a source bank has the splits {', '.join(SPLITS)}; got {split!r}")
    try:
        n = int(count) if count else None
    except ValueError:
        raise DatasetError(f"{root}: split {split!r}: the clip count after ':' must be an integer") from None
    if n is not None and n < 1:
        raise DatasetError(f"{root}: split {split!r}: the clip count must be >= 1")
    bank = open_bank(root)
    labels = [{"index": i, "mid": mid_for(c), "display_name": c} for i, c in enumerate(bank.classes)]
    path = str(Path(root))
    clips = []
    for i, plan in enumerate(bank.plan_split(name, n)):
        events = tuple(bank.events_of(plan))
        clips.append(Clip(path, tuple(sorted({e[0] for e in events})), events, 0.0, plan[0] / bank.sample_rate,
                          f"{path}:{name}:{i}", key=f"{name}/{i:07d}", plan=plan))
    return ClipSet(labels, clips, True, name=f"{path}:{name}", info={"sample_rate": bank.sample_rate}).require_nonempty()
