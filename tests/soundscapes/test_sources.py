"""Source discovery, rendering and the vocabulary.

Tests needing an installed source (scripts/setup_sources.sh) skip with the reason when it is absent; the
parsers are also tested on files the tests write themselves.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomamba.soundscapes import sources as S
from audiomamba.soundscapes.mixer import MixConfig, build_soundscapes
from audiomamba.soundscapes.vocabulary import BY_NAME, VOCABULARY, class_labels_csv, mid_for

FILE_FAMILIES = ["hydrogen", "lmms", "wesnoth", "freedesktop", "ovos", "hedgewars", "soundthemes", "sonicpi",
                 "teeworlds", "gcompris"]


def test_vocabulary_size_and_audioset_mids():
    assert 30 <= len(VOCABULARY) <= 60
    assert len({c.name for c in VOCABULARY}) == len(VOCABULARY)
    assert len({c.mid for c in VOCABULARY}) == len(VOCABULARY)
    assert mid_for("Speech") == "/m/09x0r" and mid_for("My own sound") == "/audiomamba/my_own_sound"
    labels = pytest.importorskip("audiomamba.labels")
    try:
        audioset = {lab["mid"]: lab["display_name"] for lab in labels.audioset_labels()}
    except (FileNotFoundError, AttributeError) as e:
        pytest.skip(f"AudioSet label list not shipped in this tree ({e})")
    for c in VOCABULARY:
        if not c.mid.startswith("/audiomamba/"):
            assert audioset.get(c.mid) == c.name, c


def test_class_labels_csv_reads_back_with_the_package_reader(tmp_path):
    path = tmp_path / "class_labels_indices.csv"
    path.write_text(class_labels_csv(["Speech", "Violin, fiddle", "Tom-tom drum"]))
    assert path.read_text().splitlines() == [
        "index,mid,display_name", "0,/m/09x0r,Speech", '1,/m/07y_7,"Violin, fiddle"',
        "2,/audiomamba/tom-tom_drum,Tom-tom drum"]
    labels = pytest.importorskip("audiomamba.labels")
    assert [lab["display_name"] for lab in labels.read_class_labels(path)] == ["Speech", "Violin, fiddle", "Tom-tom drum"]


def test_hydrogen_kit_parsing(tmp_path, monkeypatch):
    kit = tmp_path / "MyKit"
    kit.mkdir()
    for name in ("k.wav", "s1.wav", "s2.wav", "fx.wav"):
        sf.write(kit / name, np.ones(100, np.float32) * 0.1, 8000)
    (kit / "drumkit.xml").write_text(
        '<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit"><name>MyKit</name><license>CC0</license>'
        "<instrumentList>"
        "<instrument><name>Kick Hard</name><layer><filename>k.wav</filename></layer></instrument>"
        "<instrument><name>Snare Jazz</name><instrumentComponent><layer><filename>s1.wav</filename></layer>"
        "<layer><filename>s2.wav</filename></layer></instrumentComponent></instrument>"
        "<instrument><name>Zap FX</name><layer><filename>fx.wav</filename></layer></instrument>"
        "</instrumentList></drumkit_info>")
    monkeypatch.setattr(S, "HYDROGEN_ROOT", tmp_path)
    items = S._hydrogen_items(S._Context(tmp_path, 8000, 1))
    assert sorted((Path(it.path).name, it.label) for it in items) == [
        ("k.wav", "Bass drum"), ("s1.wav", "Snare drum"), ("s2.wav", "Snare drum")]
    assert {it.group for it in items} == {"hydrogen-kit:MyKit"}
    assert all(it.licence for it in items)


@pytest.mark.parametrize("name, label", [
    ("Hi Hat Closed", "Hi-hat"), ("Closed HH", "Hi-hat"), ("Snare Rimshot", "Rimshot"), ("Floor Tom", "Tom-tom drum"),
    ("Ride Bell", "Cymbal"), ("Cowbell", "Cowbell"), ("Djembe1 Slap", "Hand drum"), ("Snare Roll", None),
    ("c3 - bass drum 1", "Bass drum"), ("Hand Clap", "Clapping")])
def test_drum_name_rules(name, label):
    assert S._first_rule(name, S._DRUM_RULES) == label


def test_midi_file_is_well_formed():
    phrases = S._phrases("TestFont")
    assert {p.label for p in phrases} >= {"Piano", "Snare drum", "Applause"}
    data = S._midi_file(phrases[:3], [1.0, 3.0, 6.0])
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, 1000)
    assert data[14:18] == b"MTrk" and struct.unpack(">I", data[18:22])[0] == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")
    assert S._phrases("TestFont") == phrases  # the rendering plan is fixed



def test_appended_classes_keep_every_earlier_phrase(monkeypatch):
    phrases = S._phrases("TestFont")
    monkeypatch.setattr(S, "_GM_APPENDED", {})
    before = S._phrases("TestFont")
    # classes added to the plan come last: every earlier phrase keeps its index (its key) and its notes
    assert phrases[: len(before)] == before and {p.label for p in phrases[len(before):]} == {"Bell"}
    assert {p.program for p in phrases[len(before):]} == {14, 112}
    assert S._plan_digest(phrases) != S._plan_digest(before)  # so a cached rendering of the old plan is not reused

def _builtin(families: list[str], tmp_path: Path) -> S.Catalogue:
    cat = S.discover(families, cache_dir=tmp_path / "cache", sample_rate=16000)
    if cat.missing:
        pytest.skip(f"sources not installed (run scripts/setup_sources.sh): {cat.missing}")
    return cat


def test_builtin_file_sources_label_and_license_everything(tmp_path):
    cat = _builtin(FILE_FAMILIES, tmp_path)
    assert all(it.label in BY_NAME and it.licence and it.origin for it in cat.items)
    groups = {}
    for it in cat.items:
        groups.setdefault(it.label, set()).add(it.group)
    assert len(groups) >= 30
    assert len(groups["Hi-hat"]) >= 10  # a dozen Hydrogen kits and the LMMS hats
    out = tmp_path / "ds"
    build_soundscapes(cat.items, out, clips=6, seed=0, mix=MixConfig(duration=4.0, sample_rate=16000), jobs=2)
    assert len((out / "train.jsonl").read_text().splitlines()) == 6 - 2 * int(6 * 0.15)


@pytest.mark.parametrize("renderer", ["fluidsynth", "tinysoundfont"])
def test_soundfont_renderer_produces_sound(renderer):
    if renderer == "fluidsynth" and shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (apt-get install fluidsynth)")
    if renderer == "tinysoundfont" and importlib.util.find_spec("tinysoundfont") is None:
        pytest.skip("tinysoundfont not installed (pip install tinysoundfont)")
    fonts = [f for f in S._soundfonts() if f.path.suffix == ".sf2"]
    if not fonts:
        pytest.skip("no sf2 General MIDI soundfont (apt-get install timgm6mb-soundfont, or pip install pretty_midi)")
    font = min(fonts, key=lambda f: f.path.stat().st_size)
    phrases = [p for p in S._phrases(font.name) if p.label in ("Piano", "Snare drum")][:4]
    phrases += [p for p in S._phrases(font.name) if p.label == "Snare drum"][:2]
    starts = list(np.cumsum([1.0] + [p.notes[-1][1] + p.notes[-1][2] + S._SLOT_TAIL_S for p in phrases[:-1]]))
    render = S._render_fluidsynth if renderer == "fluidsynth" else S._render_tinysoundfont
    audio = render(font, phrases, starts, 16000)
    for t0 in starts:
        part = audio[int(t0 * 16000): int((t0 + 1.0) * 16000)]
        assert np.sqrt(np.mean(part**2)) > 1e-3, (font.name, t0)


def test_espeak_speaks(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    assert S._espeak_one("en", 0, tmp_path / "en.wav", 16000)
    audio, sr = sf.read(tmp_path / "en.wav")
    assert sr == 16000 and len(audio) > 0.3 * sr


def test_sources_command_lists_missing_with_install_hint(monkeypatch, capsys):
    monkeypatch.setattr(S, "HYDROGEN_ROOT", Path("/nonexistent/drumkits"))
    monkeypatch.setattr(S, "FAMILIES", tuple(
        S.Family(f.name, f.description, f.install, (lambda: False) if f.name == "hydrogen" else f.available, f.items)
        for f in S.FAMILIES))
    from audiomamba.cli import main
    from audiomamba.errors import SourceError, exit_code_of

    code = main(["data", "sources", "--families", "hydrogen"])
    captured = capsys.readouterr()
    assert code == exit_code_of(SourceError("")) and "apt-get install hydrogen-drumkits" in captured.out
    assert "no source recordings installed" in captured.err


def _stamp_sound(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(8000), 16000, format="OGG", subtype="VORBIS")


def test_tuxpaint_stamp_sounds_labelled_and_grouped_by_content(tmp_path, monkeypatch):
    root = tmp_path / "stamps"
    for i, rel in enumerate(["animals/mammals/pig.ogg", "animals/mammals/bovines/cow.ogg",
                             "animals/birds/owl.ogg", "hobbies/music/string/cello.ogg",
                             # not used: spoken descriptions, a bird's wings, sounds without a class
                             "animals/mammals/pig_desc.ogg", "animals/mammals/pig_desc_fr.ogg",
                             "animals/birds/owl_desc_es.ogg", "animals/birds/heron_greatblue_flying.ogg",
                             "household/tools/hammer.ogg", "animals/mammals/cats/lion.ogg"]):
        _stamp_sound(root / rel, i)
    shutil.copy(root / "animals/mammals/bovines/cow.ogg", root / "animals/mammals/bovines/cow_white.ogg")
    monkeypatch.setattr(S, "TUXPAINT_ROOT", root)
    cat = S.discover(["tuxpaint"], cache_dir=tmp_path / "cache", sample_rate=16000)
    got = {Path(it.path).relative_to(root).as_posix(): it for it in cat.items}
    livestock = "Livestock, farm animals, working animals"
    assert {k: it.label for k, it in got.items()} == {
        "animals/mammals/pig.ogg": livestock, "animals/mammals/bovines/cow.ogg": livestock,
        "animals/mammals/bovines/cow_white.ogg": livestock, "animals/birds/owl.ogg": "Bird",
        "hobbies/music/string/cello.ogg": "Cello"}
    assert all(it.label in BY_NAME and it.licence and it.origin == "tuxpaint-stamps-default" for it in got.values())
    # the same bytes under two names are one group, so they cannot land in two splits
    assert got["animals/mammals/bovines/cow.ogg"].group == got["animals/mammals/bovines/cow_white.ogg"].group
    assert len({it.group for it in got.values()}) == 4
    # a default family: discovery without names finds the same items
    monkeypatch.setattr(S, "FAMILIES", tuple(f for f in S.FAMILIES if f.name == "tuxpaint"))
    default = S.discover(None, cache_dir=tmp_path / "cache", sample_rate=16000).items
    assert sorted(default, key=lambda it: it.key) == sorted(cat.items, key=lambda it: it.key)


def test_hedgewars_voices_grouped_by_actor_and_effects_labelled(tmp_path, monkeypatch):
    root = tmp_path / "Sounds"
    files = ["voices/Default/Hello.ogg", "voices/Default_es/Hello.ogg", "voices/Default/Ow1.ogg",
             "voices/Default/PoisonMoan.ogg", "voices/Pirate/Ooff2.ogg", "voices/Pirate/Yessir.ogg",
             "baseballbat.ogg", "hammer.ogg", "beep.ogg",
             # not used: laughs, coughs, shouts, the sung pack, effects without a class
             "voices/Default/Laugh.ogg", "voices/Default/PoisonCough.ogg", "voices/Pirate/Firepunch1.ogg",
             "voices/Singer/Hello.ogg", "explosion.ogg", "Whistle.ogg"]
    for i, rel in enumerate(files):
        _stamp_sound(root / rel, i)
    monkeypatch.setattr(S, "HEDGEWARS_ROOT", root)
    got = {it.key.split(":", 1)[1]: it for it in S.discover(["hedgewars"], cache_dir=tmp_path / "c").items}
    assert {k: it.label for k, it in got.items()} == {
        "voices/Default/Hello.ogg": "Speech", "voices/Default_es/Hello.ogg": "Speech",
        "voices/Default/Ow1.ogg": "Grunt", "voices/Default/PoisonMoan.ogg": "Groan",
        "voices/Pirate/Ooff2.ogg": "Grunt", "voices/Pirate/Yessir.ogg": "Speech",
        "baseballbat.ogg": "Whack, thwack", "hammer.ogg": "Whack, thwack", "beep.ogg": "Beep, bleep"}
    # a pack and its translations are one group (they may share an actor); each effect is its own group
    assert {it.group for k, it in got.items() if k.startswith("voices/Default")} == {"hedgewars:voice/Default"}
    assert got["voices/Pirate/Yessir.ogg"].group == "hedgewars:voice/Pirate"
    assert got["hammer.ogg"].group != got["baseballbat.ogg"].group
    assert all(it.label in BY_NAME and it.licence and it.origin == "hedgewars-data" for it in got.values())


def test_sound_themes_are_one_group_per_theme(tmp_path, monkeypatch):
    for i, rel in enumerate(["oxygen/Oxygen-Sys-Warning.ogg", "oxygen/Oxygen-Sys-Log-In.ogg",
                             "oxygen/Oxygen-Window-Close.ogg", "yaru/bell.oga", "yaru/dialog-error.oga",
                             "yaru/desktop-login.oga", "yaru/trash-empty.oga"]):
        _stamp_sound(tmp_path / rel, i)
    monkeypatch.setattr(S, "SOUND_THEMES", {
        "oxygen": S._SoundTheme("oxygen-sounds", str(tmp_path / "oxygen/Oxygen-*.ogg"), "LGPL-3.0-or-later"),
        "yaru": S._SoundTheme("yaru-theme-sound", str(tmp_path / "yaru/*.oga"), "CC-BY-SA-4.0"),
        "absent": S._SoundTheme("absent-theme", str(tmp_path / "none/*.wav"), "GPL-3")})
    got = {it.key: (it.label, it.group) for it in S.discover(["soundthemes"], cache_dir=tmp_path / "c").items}
    assert got == {"oxygen-sounds:Oxygen-Sys-Warning.ogg": ("Beep, bleep", "soundtheme:oxygen"),
                   "yaru-theme-sound:bell.oga": ("Bell", "soundtheme:yaru"),
                   "yaru-theme-sound:dialog-error.oga": ("Beep, bleep", "soundtheme:yaru")}
    monkeypatch.setattr(S, "SOUND_THEMES", {"absent": S.SOUND_THEMES["absent"]})
    assert S.discover(["soundthemes"], cache_dir=tmp_path / "c").missing == {
        "soundthemes": "apt-get install oxygen-sounds deepin-sound-theme yaru-theme-sound lomiri-sounds"}


def test_lomiri_theme_keeps_only_its_tones(tmp_path, monkeypatch):
    for i, name in enumerate(["A440.ogg", "Blip.ogg", "LowBattery.ogg", "Xylo.ogg", "Rhodes.ogg", "Mallet.ogg"]):
        _stamp_sound(tmp_path / name, i)
    monkeypatch.setattr(S, "SOUND_THEMES", {"lomiri": S._SoundTheme("lomiri-test", str(tmp_path / "*.ogg"), "X",
                                                                    S._LOMIRI_RULES)})
    got = {it.key: (it.label, it.group) for it in S.discover(["soundthemes"], cache_dir=tmp_path / "c").items}
    assert got == {f"lomiri-test:{n}": ("Beep, bleep", "soundtheme:lomiri")
                   for n in ("A440.ogg", "Blip.ogg", "LowBattery.ogg")}


def test_installed_lomiri_licences_follow_its_copyright_file(tmp_path):
    if not Path("/usr/share/doc/lomiri-sounds/copyright").exists():
        pytest.skip("lomiri-sounds not installed (run scripts/setup_sources.sh)")
    got = {it.key: it.licence for it in S.discover(["soundthemes"], cache_dir=tmp_path / "c").items
           if it.origin == "lomiri-sounds"}
    # A440 is CC0 per file; the theme's default would have been CC-BY-SA-3.0
    assert got["lomiri-sounds:A440.ogg"] == "CC0-1.0" and len(got) == 5


def test_sonic_pi_samples_labelled_and_grouped_by_uploader(tmp_path, monkeypatch):
    names = ["bd_808", "drum_snare_hard", "tabla_ke1", "tabla_na_o", "elec_beep", "elec_blip2", "bass_hard_c",
             "perc_impact1", "perc_bell2", "drum_cymbal_closed", "misc_crow",
             # not used: loops, ambient textures, samples whose class the name leaves open
             "loop_amen", "ambi_drone", "elec_bell", "perc_snap", "guit_harmonics"]
    for i, n in enumerate(names):
        _stamp_sound(tmp_path / f"{n}.flac", i)
    (tmp_path / "README.md").write_text(
        "* `:bd_808` - http://freesound.org/people/EKVelika/sounds/208447/\n"
        "* `:tabla_ke1` - http://freesound.org/people/dio_333/sounds/130413/ **(link deprecated)**\n"
        "* `:tabla_na_o` - http://freesound.org/people/dio_333/sounds/130422/\n"
        "* `:perc_bell_2`- https://freesound.org/people/hullum/sounds/415559/\n"  # README's name has an underscore
        "* `:perc_impact_1` - https://freesound.org/people/hullum/sounds/415578/\n"
        "* `:misc_crow` - http://freesound.org/people/Rodrigo%20The%20Mad/sounds/1/\n")
    monkeypatch.setattr(S, "SONIC_PI_ROOT", tmp_path)
    got = {it.key.split(":", 1)[1]: it for it in S.discover(["sonicpi"], cache_dir=tmp_path / "c").items}
    assert {k: it.label for k, it in got.items()} == {
        "bd_808.flac": "Bass drum", "drum_snare_hard.flac": "Snare drum", "tabla_ke1.flac": "Hand drum",
        "tabla_na_o.flac": "Hand drum", "elec_beep.flac": "Beep, bleep", "elec_blip2.flac": "Beep, bleep",
        "bass_hard_c.flac": "Synthesizer", "perc_impact1.flac": "Whack, thwack", "perc_bell2.flac": "Bell",
        "drum_cymbal_closed.flac": "Hi-hat", "misc_crow.flac": "Bird"}
    groups = {k: it.group for k, it in got.items()}
    assert groups["tabla_ke1.flac"] == groups["tabla_na_o.flac"] == "sonicpi:dio_333"
    assert groups["perc_bell2.flac"] == groups["perc_impact1.flac"] == "sonicpi:hullum"
    assert groups["misc_crow.flac"] == "sonicpi:Rodrigo The Mad"
    assert groups["elec_beep.flac"] == "sonicpi:elec_beep.flac"  # an uploader the README does not name
    assert all(it.licence and it.origin == "sonic-pi-samples" for it in got.values())


def test_teeworlds_wavpack_effects_unpacked_losslessly(tmp_path, monkeypatch):
    if not (shutil.which("wavpack") and shutil.which("wvunpack")):
        pytest.skip("wavpack not installed (run scripts/setup_sources.sh)")
    import subprocess

    root = tmp_path / "audio"
    root.mkdir()
    rng = np.random.default_rng(0)
    waves = {}
    for stem in ["wp_hammer_hit-01", "sfx_hit_strong-02", "vo_teefault_pain_short-03", "wp_gun_fire-01",
                 "wp_ninja_attack-02", "foley_foot_left-01", "music_menu"]:
        x = (0.2 * rng.standard_normal(4000) * 32767).astype(np.int16)
        sf.write(tmp_path / f"{stem}.wav", x, 22050, subtype="PCM_16")
        subprocess.run(["wavpack", "-q", "-y", str(tmp_path / f"{stem}.wav"), "-o", str(root / f"{stem}.wv")],
                       check=True, capture_output=True)
        waves[stem] = x
    (root / "broken.wv").write_bytes(b"not wavpack")
    monkeypatch.setattr(S, "TEEWORLDS_ROOT", root)
    monkeypatch.setattr(S, "_TEEWORLDS_RULES", S._TEEWORLDS_RULES + [(r"^broken$", "Whack, thwack")])
    cat = S.discover(["teeworlds"], cache_dir=tmp_path / "cache")
    got = {it.key.split(":", 1)[1]: it for it in cat.items}
    assert {k: (it.label, it.group) for k, it in got.items()} == {
        "wp_hammer_hit-01.wv": ("Whack, thwack", "teeworlds:effects"),
        "sfx_hit_strong-02.wv": ("Whack, thwack", "teeworlds:effects"),
        "vo_teefault_pain_short-03.wv": ("Grunt", "teeworlds:voice"),
        "wp_gun_fire-01.wv": ("Gunshot, gunfire", "teeworlds:effects"),
        "wp_ninja_attack-02.wv": ("Whoosh, swoosh, swish", "teeworlds:effects")}  # the broken file is skipped
    for k, it in got.items():
        y, sr = sf.read(it.path, dtype="int16")
        assert sr == 22050 and np.array_equal(y, waves[k[:-3]])  # WavPack is lossless
    # unpacked once: a second discovery reads the cache (the unpacked files are not rewritten)
    mtimes = {k: Path(it.path).stat().st_mtime_ns for k, it in got.items()}
    again = {it.key.split(":", 1)[1]: Path(it.path).stat().st_mtime_ns
             for it in S.discover(["teeworlds"], cache_dir=tmp_path / "cache").items}
    assert again == mtimes


def _qt_bundle(files: dict[str, bytes], version: int, compress: set[str] = frozenset()) -> bytes:
    """A Qt resource bundle (``.rcc``) holding ``files`` (inner path -> bytes), written here from Qt's documented
    layout, independently of the reader: header, data blobs, names, then the node tree breadth first (the
    children of a directory contiguous, sorted by name hash as Qt does)."""
    tree: dict = {}
    for path, payload in files.items():
        node = tree
        *dirs, leaf = path.strip("/").split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = payload

    def qt_hash(name: str) -> int:
        h = 0
        for ch in name:
            h = ((h << 4) + ord(ch)) & 0xFFFFFFFF
            h = (h ^ ((h & 0xF0000000) >> 23)) & 0x0FFFFFFF
        return h

    names, name_at, data = bytearray(), {}, bytearray()

    def name_offset(name: str) -> int:
        if name not in name_at:
            name_at[name] = len(names)
            names.extend(struct.pack(">HI", len(name), qt_hash(name)) + name.encode("utf-16-be"))
        return name_at[name]

    nodes: list[bytes] = []
    nodes.append(b"")  # the root, filled in below
    pending = [(0, tree, "")]
    mtime = struct.pack(">Q", 0) if version >= 2 else b""
    while pending:
        index, subtree, inner = pending.pop(0)
        children = sorted(subtree.items(), key=lambda kv: qt_hash(kv[0]))
        first = len(nodes)
        entry = struct.pack(">IHII", name_offset(inner.rsplit("/", 1)[-1]) if index else 0, 2, len(children), first)
        nodes[index] = entry + mtime
        for name, value in children:
            path = f"{inner}/{name}"
            if isinstance(value, dict):
                nodes.append(b"")
                pending.append((len(nodes) - 1, value, path))
            else:
                flags = 0
                blob = value
                if path in compress:
                    flags, blob = 1, struct.pack(">I", len(value)) + zlib.compress(value)
                nodes.append(struct.pack(">IHHHI", name_offset(name), flags, 0, 0, len(data)) + mtime)
                data.extend(struct.pack(">I", len(blob)) + blob)
    header_size = 24 if version >= 3 else 20
    data_off = header_size
    names_off = data_off + len(data)
    tree_off = names_off + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_off, data_off, names_off)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + bytes(data) + bytes(names) + b"".join(nodes)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_qt_resource_bundles_read_back_what_was_packed(tmp_path, version):
    rng = np.random.default_rng(version)
    files = {f"/gcompris/src/activities/a/resource/{n}": rng.bytes(int(rng.integers(1, 3000)))
             for n in ("dog.ogg", "x.wav", "img.svg")}
    files["/gcompris/src/activities/a/resource/sub/deep.wav"] = b"RIFF" * 100
    files["/top.txt"] = "héllo".encode()
    bundle = tmp_path / "a.rcc"
    bundle.write_bytes(_qt_bundle(files, version, compress={"/gcompris/src/activities/a/resource/x.wav",
                                                            "/gcompris/src/activities/a/resource/sub/deep.wav"}))
    assert S.qt_resource_files(bundle) == files
    audio = S.qt_resource_files(bundle, lambda inner: inner.endswith((".ogg", ".wav")))
    assert audio == {k: v for k, v in files.items() if k.endswith((".ogg", ".wav"))}
    (tmp_path / "bad.rcc").write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(ValueError, match="bad.rcc: not a Qt resource bundle"):
        S.qt_resource_files(tmp_path / "bad.rcc")


def test_gcompris_recordings_labelled_from_their_bundles_and_unpacked_once(tmp_path, monkeypatch):
    def ogg(seed: int) -> bytes:
        path = tmp_path / f"tmp{seed}.ogg"
        _stamp_sound(path, seed)
        return path.read_bytes()

    root = tmp_path / "rcc"
    root.mkdir()
    base = "/gcompris/src/activities"
    bundles = {
        "explore_farm_animals": ["dog.ogg", "horse.ogg", "cow.ogg", "duck.ogg", "cat.ogg"],
        "memory-sound": ["LRBark_1_LA_cut.ogg", "LRApplauses_1_LA_cut.ogg", "LRHits_01_LA.ogg", "guitar_son2.ogg"],
        "instruments": ["horn.ogg", "bongo.ogg", "banjo.ogg", "drum_kit.ogg"],
        "morse_code": ["dot.wav", "silence.wav"],
        "chess": ["move.wav"],
    }
    payloads = {}
    for i, (activity, names) in enumerate(bundles.items()):
        files = {f"{base}/{activity}/resource/{n}": ogg(10 * i + j) for j, n in enumerate(names)}
        payloads.update({f"{activity}/{k.rsplit('/', 1)[1]}": v for k, v in files.items()})
        (root / f"{activity}.rcc").write_bytes(_qt_bundle(files, 3, compress=set(list(files)[::2])))
    (root / "broken.rcc").write_bytes(b"qres" + bytes(8))  # truncated: skipped with a log line
    monkeypatch.setattr(S, "GCOMPRIS_ROOT", root)
    cat = S.discover(["gcompris"], cache_dir=tmp_path / "cache")
    got = {it.key: (it.label, it.group) for it in cat.items}
    dogs, stock = "Canidae, dogs, wolves", "Livestock, farm animals, working animals"
    want = {"explore_farm_animals/dog.ogg": dogs, "explore_farm_animals/horse.ogg": "Horse",
            "explore_farm_animals/cow.ogg": stock, "explore_farm_animals/duck.ogg": "Bird",
            "memory-sound/LRBark_1_LA_cut.ogg": dogs, "memory-sound/LRApplauses_1_LA_cut.ogg": "Applause",
            "memory-sound/guitar_son2.ogg": "Acoustic guitar", "instruments/horn.ogg": "French horn",
            "instruments/bongo.ogg": "Hand drum", "morse_code/dot.wav": "Beep, bleep"}
    assert got == {f"gcompris-qt-data:{rel}": (label, f"gcompris:{rel}") for rel, label in want.items()}
    for it in cat.items:
        assert Path(it.path).read_bytes() == payloads[it.key.split(":", 1)[1]] and it.origin == "gcompris-qt-data"
    mtimes = {it.key: Path(it.path).stat().st_mtime_ns for it in cat.items}
    again = S.discover(["gcompris"], cache_dir=tmp_path / "cache").items
    assert {it.key: Path(it.path).stat().st_mtime_ns for it in again} == mtimes  # unpacked once
    monkeypatch.setattr(S, "GCOMPRIS_ROOT", tmp_path / "absent")
    missing = S.discover(["gcompris"], cache_dir=tmp_path / "c2").missing
    assert missing == {"gcompris": "apt-get install gcompris-qt-data"}


def test_installed_gcompris_recordings_decode_with_their_licences(tmp_path):
    if not S.GCOMPRIS_ROOT.is_dir():
        pytest.skip("gcompris-qt-data not installed (run scripts/setup_sources.sh)")
    items = S.discover(["gcompris"], cache_dir=tmp_path / "c").items
    by_key = {it.key: it for it in items}
    assert sum(it.label == "Canidae, dogs, wolves" for it in items) == 3
    assert by_key["gcompris-qt-data:instruments/violin.ogg"].label == "Violin, fiddle"
    for it in items:
        info = sf.info(it.path)
        assert info.frames > 0.05 * info.samplerate, it.key
        assert it.licence and it.licence != "X"
    # the memory game's recordings are under the Free Art License per the Debian copyright file
    assert by_key["gcompris-qt-data:memory-sound/LRBark_1_LA_cut.ogg"].licence.lower().startswith("free-art")


def test_qabcs_noises_labelled_by_their_word(tmp_path, monkeypatch):
    names = ["dog", "wolf", "foal", "yak", "rooster", "natural_horn", "squeezebox", "fire",
             # not used: no class, a drum kit, an unclear "horn", a tune
             "cat", "drums", "horn", "dogmatix", "keyboard"]
    for i, n in enumerate(names):
        _stamp_sound(tmp_path / f"{n}.ogg", i)
    monkeypatch.setattr(S, "QABCS_ROOT", tmp_path)
    got = {it.key: (it.label, it.group) for it in S.discover(["qabcs"], cache_dir=tmp_path / "c").items}
    want = {"dog": "Canidae, dogs, wolves", "wolf": "Canidae, dogs, wolves", "foal": "Horse",
            "yak": "Livestock, farm animals, working animals", "rooster": "Bird", "natural_horn": "French horn",
            "squeezebox": "Accordion", "fire": "Fire"}
    assert got == {f"qabcs-data:{n}.ogg": (label, f"qabcs:{n}.ogg") for n, label in want.items()}
    assert set(S._QABCS_LABELS.values()) <= set(BY_NAME)


def test_single_recordings_skip_absent_files_and_copies(tmp_path, monkeypatch):
    for i, name in enumerate(["punch.wav", "bark.ogg", "beep.wav"]):
        _stamp_sound(tmp_path / name, i)
    shutil.copy(tmp_path / "punch.wav", tmp_path / "punch_copy.wav")  # one sound shipped by two packages
    singles = (S._Single("pkg-a", str(tmp_path / "punch.wav"), "data/punch.wav", "Whack, thwack"),
               S._Single("pkg-b", str(tmp_path / "punch_copy.wav"), "punch.wav", "Whack, thwack"),
               S._Single("pkg-c", str(tmp_path / "bark.ogg"), "bark.ogg", "Canidae, dogs, wolves"),
               S._Single("pkg-d", str(tmp_path / "absent.wav"), "absent.wav", "Beep, bleep"),
               S._Single("pkg-e", str(tmp_path / "beep.wav"), "beep.wav", "Beep, bleep"))
    monkeypatch.setattr(S, "SINGLES", singles)
    got = {it.key: (it.label, it.group) for it in S.discover(["singles"], cache_dir=tmp_path / "c").items}
    assert got == {"pkg-a:punch.wav": ("Whack, thwack", "single:pkg-a/punch.wav"),
                   "pkg-c:bark.ogg": ("Canidae, dogs, wolves", "single:pkg-c/bark.ogg"),
                   "pkg-e:beep.wav": ("Beep, bleep", "single:pkg-e/beep.wav")}
    monkeypatch.setattr(S, "SINGLES", singles[3:4])
    missing = S.discover(["singles"], cache_dir=tmp_path / "c").missing
    assert list(missing) == ["singles"] and missing["singles"].startswith("apt-get install bambam ")


def test_installed_single_recordings_and_qabcs_noises_have_licences(tmp_path):
    cat = S.discover(["singles", "qabcs"], cache_dir=tmp_path / "c")
    if cat.missing:
        pytest.skip(f"sources not installed (run scripts/setup_sources.sh): {cat.missing}")
    assert all(it.label in BY_NAME and it.licence for it in cat.items)
    by_key = {it.key: it for it in cat.items}
    assert by_key["wx3.2-examples:doggrowl.wav"].licence == "wxWindows"  # per file, from the copyright file
    assert by_key["bambam:punch.wav"].licence == "GPL-2+"  # bambam's pygame sounds, not its GPL-3+ default
    # gnome-audio's copyright file is not machine-readable: the licence its README gives these sounds
    assert by_key["gnome-audio:error.wav"].licence == "CC-BY-3.0"
    assert by_key["gnustep-gui-common:Glass.wav"].licence == "LGPL-2+"  # from the copyright file's "Files: *"
    assert by_key["linphone-common:oldphone-mono.wav"].label == "Telephone bell ringing"
    assert "gnome-audio:info.wav" not in by_key  # not listed (a copy of generic.wav)
    assert sum(it.label == "Canidae, dogs, wolves" for it in cat.items) >= 6
