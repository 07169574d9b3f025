"""Tagging a folder of recordings of many lengths end to end (files in, tags out): the shipped tagger batching
files whose spectrograms the model pads to the same length (the default: a multiple of 32 frames, 0.32 s) against
the same tagger running one length at a time, side by side in one process.

Files longer than the short-input padding (2.5 s) keep their own lengths, so a folder of user recordings has
almost as many lengths as files; the model pads each spectrogram to a multiple of 32 frames anyway, so files whose
padded lengths agree can share a forward pass with exactly the results of each alone
(``Tagger._infer_on_grid``).  The "one length at a time" rows turn that off (``Tagger._grid = None``), which is
how the tagger ran before; the "padded lengths together" rows take the files in the order given, the last rows
sort them by length within windows first (``tag_files(sort_by_length=True)``, the default), so that a batch holds
fewer lengths.  Files are written and timed as in ``bench_short_files.py``.

    PYTHONPATH=src python bench/bench_grid_batching.py --device cpu --files 48 --workers 0 --json FILE
    PYTHONPATH=src python3 bench/bench_grid_batching.py --device cuda --files 1024 --workers 8 --json FILE
"""

from __future__ import annotations

import functools
import os
import sys

from audiomamba import Tagger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_short_files import arguments, side_by_side  # noqa: E402  (one home for the files, timing and table)


def one_length_at_a_time(**kwargs) -> Tagger:
    """The shipped tagger with grid batching turned off: files of different lengths never share a pass."""
    tagger = Tagger.from_pretrained(**kwargs)
    tagger._grid = None
    return tagger


def in_input_order(**kwargs) -> Tagger:
    """The shipped tagger batching padded lengths together, the files batched in the order given (not sorted by
    length first, as ``tag_files`` does by default)."""
    tagger = Tagger.from_pretrained(**kwargs)
    tagger.tag_files = functools.partial(tagger.tag_files, sort_by_length=False)
    return tagger


def main() -> None:
    a = arguments(__doc__.split("\n\n")[0], (2.5, 10.0), 48)
    side_by_side(a, "batching", {"one length at a time": one_length_at_a_time,
                                 "padded lengths together": in_input_order,
                                 "sorted by length, padded together": Tagger.from_pretrained})


if __name__ == "__main__":
    main()
