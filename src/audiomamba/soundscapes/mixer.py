"""Soundscape builder: isolated recordings mixed over a background, with clip labels and strong labels.

Two layouts are written:

* ``soundscapes``: ``DIR/audio/{split}/{id}.wav`` and ``DIR/{split}.jsonl`` for train / validation / test, each
  clip holding 1-4 events at random times over a coloured-noise background at a random SNR;
* ``esc50``: ESC-50's layout (``DIR/meta/esc50.csv``, ``DIR/audio/*.wav``), 5 s single-label clips in 5 folds.

Both also write ``class_labels_indices.csv`` (AudioSet's format) and ``sources.json`` (every recording used,
its origin, licence and split).  Splits (and folds) are drawn by source *group* (drum kit, soundfont, voice,
file; see :mod:`audiomamba.soundscapes.sources`), so no recording is shared between them.

Determinism: the event labels of every clip are dealt up front from ``(seed, split)``, then clip ``i`` of split
``s`` is mixed from a generator seeded by ``(seed, s, i)`` alone, so the output bytes depend on the seed and the
sources, not on the number of worker processes.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audiomamba.audio import AudioDecodeError, load_audio
from audiomamba.soundscapes.sources import SourceItem, active_region
from audiomamba.soundscapes.vocabulary import BY_NAME, VOCABULARY, class_labels_csv
from audiomamba.errors import DataBuildError

__all__ = ["SPLITS", "DataBuildError", "MixConfig", "assign_splits", "build_esc50", "build_soundscapes",
           "builtin_splits", "DEFAULT_FRACTIONS"]

log = logging.getLogger("audiomamba.data")

SPLITS = ("train", "validation", "test")
ESC_FOLDS = 5
ESC10 = ("Canidae, dogs, wolves", "Speech", "Piano", "Snare drum", "Applause", "Bird", "Horse", "Fire",
         "Gunshot, gunfire", "Telephone bell ringing")  # classes flagged esc10=True in the ESC-50 layout
EVENT_THRESHOLD_DB = -40.0  # an event spans the frames within this of its loudest 5 ms frame
MAX_DRAWS = 8  # attempts at finding a readable recording for one event



@dataclass(frozen=True)
class MixConfig:
    """How clips are mixed."""

    duration: float = 10.0
    sample_rate: int = 32000
    min_events: int = 1
    max_events: int = 4
    snr_db: tuple[float, float] = (6.0, 30.0)  # event RMS over background RMS
    background_db: tuple[float, float] = (-50.0, -35.0)  # background RMS, dB full scale
    max_event_s: float = 4.0  # longer recordings are cut to a random window of this length

    def check(self) -> None:
        """Raise :class:`DataBuildError` for settings that cannot produce clips."""
        if not (self.duration > 0 and math.isfinite(self.duration)):
            raise DataBuildError(f"--duration must be a positive number of seconds, got {self.duration}")
        if not 1000 <= self.sample_rate <= 192000:
            raise DataBuildError(f"--sample-rate must be within 1000..192000 Hz, got {self.sample_rate}")
        if not 1 <= self.min_events <= self.max_events:
            raise DataBuildError(f"need 1 <= min events <= max events, got {self.min_events}..{self.max_events}")
        if self.snr_db[0] > self.snr_db[1] or self.background_db[0] > self.background_db[1]:
            raise DataBuildError(f"SNR / background ranges must be low <= high, got {self.snr_db} {self.background_db}")
        if self.max_event_s <= 0:
            raise DataBuildError(f"maximum event length must be positive, got {self.max_event_s}")


@dataclass
class BuildSummary:
    """What a build wrote."""

    out: str
    clips: dict[str, int]
    classes: list[str]
    dropped_classes: dict[str, str] = field(default_factory=dict)
    failed_reads: int = 0
    events_per_class: dict[str, dict[str, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# splits


def _stable(s: str) -> int:
    return zlib.crc32(s.encode())


DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)  # train, validation, test share of each class's source groups


def builtin_splits() -> dict[str, str]:
    """The split of every built-in source group in the bank the shipped tagger was trained on
    (``resources/source_splits.json``): pinned, so that a source family added later, or missing on a machine, moves
    no recording the tagger trained on into validation or test."""
    from importlib import resources

    text = resources.files("audiomamba").joinpath("resources/source_splits.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["splits"])


def assign_splits(items: list[SourceItem], splits: list[str], fractions: list[float],
                  pinned: dict[str, str] | None = None) -> dict[str, str]:
    """Map every source group to a split, aiming at ``fractions`` of each class's groups per split.

    ``pinned`` groups keep their split (entries for absent groups or other splits are ignored); the others are
    placed around them.  Without pins, every class with at least one group per split gets at least one in each.
    Groups are visited from the most shared (a soundfont holding 40 classes) to the least, in a fixed hash order,
    and each goes where its classes lack groups most (relative to their targets), so the assignment is
    deterministic and does not depend on the clip seed.
    """
    classes_of: dict[str, set[str]] = defaultdict(set)
    for it in items:
        classes_of[it.group].add(it.label)
    n_groups = Counter(label for labels in classes_of.values() for label in labels)
    target: dict[str, list[float]] = {}
    for label, n in n_groups.items():
        rest = [max(1.0, f * n) for f in fractions[1:]]
        target[label] = [max(1.0, n - sum(rest))] + rest
    count: dict[str, list[int]] = {label: [0] * len(splits) for label in n_groups}
    assignment = {g: s for g, s in (pinned or {}).items() if g in classes_of and s in splits}
    for group, split in assignment.items():
        for c in classes_of[group]:
            count[c][splits.index(split)] += 1
    for group in sorted(set(classes_of) - set(assignment), key=lambda g: (-len(classes_of[g]), _stable(g), g)):
        labels = classes_of[group]
        scores = [sum((target[c][s] - count[c][s]) / target[c][s] for c in labels) for s in range(len(splits))]
        best = int(np.argmax(scores))
        assignment[group] = splits[best]
        for c in labels:
            count[c][best] += 1
    return assignment


def _pools(
    items: list[SourceItem], splits: list[str], fractions: list[float], pinned: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, dict[str, list[SourceItem]]]], dict[str, str], dict[str, str]]:
    """``pool[split][label][group] -> items``, the classes dropped for lacking a group in some split (with the
    reason) and the split of every group (:func:`assign_splits`)."""
    assignment = assign_splits(items, splits, fractions, pinned)
    pool: dict[str, dict[str, dict[str, list[SourceItem]]]] = {s: defaultdict(lambda: defaultdict(list)) for s in splits}
    for it in items:
        pool[assignment[it.group]][it.label][it.group].append(it)
    dropped = {}
    for label in sorted({it.label for it in items}):
        n = len({it.group for it in items if it.label == label})
        if any(label not in pool[s] for s in splits):
            dropped[label] = (f"its {n} distinct source group(s) (kits/soundfonts/voices/files) leave a split "
                              f"without one; it needs one in each of the {len(splits)} splits/folds")
    for s in splits:
        for label in dropped:
            pool[s].pop(label, None)
    return {s: {c: dict(g) for c, g in pool[s].items()} for s in splits}, dropped, assignment


def _class_order(labels: set[str]) -> list[str]:
    """Vocabulary order first, then a user's own labels alphabetically."""
    known = [c.name for c in VOCABULARY if c.name in labels]
    return known + sorted(labels - set(known))


# --------------------------------------------------------------------------------------------------------------
# mixing (runs in worker processes)

_POOLS: dict[str, dict[str, dict[str, list[SourceItem]]]] = {}
_MIX: MixConfig = MixConfig()


def _init_worker(pools: dict, mix: MixConfig, log_level: int) -> None:
    global _POOLS, _MIX
    _POOLS, _MIX = pools, mix
    logging.getLogger("audiomamba.data").setLevel(log_level)


@functools.lru_cache(maxsize=384)
def _load(path: str, sr: int) -> np.ndarray:
    audio, _ = load_audio(path, sr)
    audio.setflags(write=False)
    return audio


@functools.lru_cache(maxsize=8)
def _noise_shape(n: int, sr: int, exponent: float) -> np.ndarray:
    """Amplitude response 1/f^(exponent/2) (flat below 20 Hz) on the rfft bins of ``n`` samples."""
    return (1.0 / np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 20.0) ** (exponent / 2)).astype(np.float64)


NOISE_COLOURS = (("white", 0.0), ("pink", 1.0), ("brown", 2.0))  # name, spectral exponent (power ~ 1/f^exponent)


def _background(rng: np.random.Generator, n: int, sr: int) -> tuple[np.ndarray, str]:
    """Coloured noise of a random colour (see :func:`background_noise`)."""
    return background_noise(rng, n, sr, int(rng.integers(len(NOISE_COLOURS))))


def background_noise(rng: np.random.Generator, n: int, sr: int, colour: int) -> tuple[np.ndarray, str]:
    """Coloured noise (``NOISE_COLOURS[colour]``: white, pink or brown) with a slow level drift, unit RMS; and its
    name for the manifest."""
    kind, exponent = NOISE_COLOURS[colour]
    noise = rng.standard_normal(n)
    if exponent:
        noise = np.fft.irfft(np.fft.rfft(noise) * _noise_shape(n, sr, exponent), n)
    phase = 2 * np.pi * rng.uniform(0.05, 0.3) / sr
    noise *= 1.0 + 0.3 * np.sin(phase * np.arange(n) + rng.uniform(0, 2 * np.pi))
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12), f"synthetic:{kind}-noise"


def _draw_event(rng: np.random.Generator, pool: dict[str, dict[str, list[SourceItem]]], label: str, max_len: int,
                sr: int) -> tuple[np.ndarray, SourceItem, int]:
    """A non-silent stretch of a recording of ``label`` (at most ``max_len`` samples), its item and failed reads."""
    groups = pool[label]
    failed = 0
    for _ in range(MAX_DRAWS):
        group = groups[sorted(groups)[int(rng.integers(len(groups)))]]
        item = group[int(rng.integers(len(group)))]
        try:
            audio = _load(item.path, sr)
        except (AudioDecodeError, FileNotFoundError, ValueError) as e:
            log.warning("skipping unreadable recording %s: %s", item.path, e)
            failed += 1
            continue
        start, stop = active_region(audio, sr, EVENT_THRESHOLD_DB)
        if stop - start > max_len:  # a random window of a long recording, then its own active part
            offset = start + int(rng.integers(stop - start - max_len + 1))
            window = audio[offset: offset + max_len]
            a, b = active_region(window, sr, EVENT_THRESHOLD_DB)
            start, stop = offset + a, offset + b
        if stop > start:
            return np.asarray(audio[start:stop], dtype=np.float64), item, failed
        log.warning("skipping silent recording %s", item.path)
        failed += 1
    raise DataBuildError(f"no readable, non-silent recording of class {label!r} after {MAX_DRAWS} draws")


def _mix_clip(task: tuple[int, str, int, tuple[str, ...], str]) -> tuple[dict, int]:
    """Build and write one clip. ``task`` = (seed, split, index, event labels, output wav path).

    Returns the manifest row (path relative to the output folder is filled in by the caller) and the
    number of recordings that failed to read.
    """
    import soundfile as sf

    seed, split, index, event_labels, out_path = task
    mix, pool = _MIX, _POOLS[split]
    sr = mix.sample_rate
    n = int(round(mix.duration * sr))
    rng = np.random.default_rng([seed, _stable(split), index])
    background, bg_name = _background(rng, n, sr)
    bg_rms = 10 ** (rng.uniform(*mix.background_db) / 20)
    clip = background * bg_rms
    max_len = min(n, int(round(mix.max_event_s * sr)))
    events, used, failed = [], [], 0
    for label in event_labels:
        x, item, bad = _draw_event(rng, pool, label, max_len, sr)
        failed += bad
        onset = int(rng.integers(n - len(x) + 1))
        snr = rng.uniform(*mix.snr_db)
        gain = bg_rms * 10 ** (snr / 20) / (np.sqrt(np.mean(x**2)) + 1e-12)
        clip[onset: onset + len(x)] += gain * x
        events.append({"label": label, "onset": round(onset / sr, 3), "offset": round((onset + len(x)) / sr, 3)})
        used.append(item.key)
    peak = float(np.abs(clip).max())
    if peak > 0.9:  # scale the whole clip: SNRs stay as drawn
        clip *= 0.9 / peak
    sf.write(out_path, clip.astype(np.float32), sr, subtype="PCM_16")
    order = sorted(range(len(events)), key=lambda k: (events[k]["onset"], events[k]["label"]))
    row = {"labels": sorted({e["label"] for e in events}), "events": [events[k] for k in order],
           "duration": round(n / sr, 6), "sources": [used[k] for k in order] + [bg_name]}
    return row, failed


def _plan_labels(seed: int, split: str, n_clips: int, labels: list[str], mix: MixConfig) -> list[tuple[str, ...]]:
    """The event labels of each clip of a split: clips get ``min_events..max_events`` events, and the labels
    are dealt from successive random permutations of the classes, so every class occurs about equally often
    in every split (even a small one).  Depends only on the seed, the split and the classes."""
    rng = np.random.default_rng([seed, _stable(split), _stable("labels")])
    counts = rng.integers(mix.min_events, mix.max_events + 1, size=n_clips)
    stream: list[str] = []
    while len(stream) < counts.sum():
        stream += [labels[k] for k in rng.permutation(len(labels))]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [tuple(stream[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _run_tasks(tasks: list[tuple], pools: dict, mix: MixConfig, jobs: int) -> list[tuple[dict, int]]:
    """Run :func:`_mix_clip` over ``tasks`` on ``jobs`` processes, results in task order."""
    level = logging.getLogger("audiomamba.data").getEffectiveLevel()
    if jobs <= 1 or len(tasks) <= 1:
        _init_worker(pools, mix, level)
        return [_mix_clip(t) for t in tasks]
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(pools, mix, level)) as pool:
        return list(pool.imap(_mix_clip, tasks, chunksize=max(1, min(16, len(tasks) // (4 * jobs)))))


# --------------------------------------------------------------------------------------------------------------
# builders


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataBuildError(f"output folder {out} is not empty; choose another or pass --overwrite")
        for name in ("audio", "meta"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in [*(f"{s}.jsonl" for s in SPLITS), "class_labels_indices.csv", "sources.json"]:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _select(items: list[SourceItem], classes: list[str] | None) -> list[SourceItem]:
    """Keep the items of ``classes`` (all when None); a class asked for with no recording is an error."""
    if not items:
        raise DataBuildError("no source recordings found; run `audiomamba data sources` to see what to install")
    if classes is None:
        return items
    have = {it.label for it in items}
    empty = [c for c in classes if c not in have]
    if empty:
        hint = " (not in the vocabulary either)" if any(c not in BY_NAME for c in empty) else ""
        raise DataBuildError(f"no source recordings for class(es) {empty}{hint}; run `audiomamba data sources` "
                             f"for what to install, or list the available classes with `audiomamba data sources -v`")
    return [it for it in items if it.label in set(classes)]


def _sources_json(path: Path, items: list[SourceItem], where: dict[str, str], uses: Counter, extra: dict) -> None:
    used = [it for it in items if uses[it.key]]
    records = [{"key": it.key, "label": it.label, "group": it.group, "split": where[it.group], "origin": it.origin,
                "licence": it.licence, "path": it.path, "uses": uses[it.key]} for it in used]
    licences = Counter((it.origin, it.licence) for it in used)
    summary = [{"origin": o, "licence": lic, "recordings": k} for (o, lic), k in sorted(licences.items())]
    path.write_text(json.dumps({**extra, "licences": summary, "recordings": records}, indent=1) + "\n")


def _split_counts(clips: int, fractions: list[float]) -> list[int]:
    rest = [int(math.floor(clips * f)) for f in fractions[1:]]
    return [clips - sum(rest)] + rest


def build_soundscapes(
    items: list[SourceItem],
    out: str | os.PathLike,
    *,
    clips: int,
    seed: int,
    mix: MixConfig = MixConfig(),
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    classes: list[str] | None = None,
    jobs: int = 2,
    overwrite: bool = False,
    pinned: dict[str, str] | None = None,
) -> BuildSummary:
    """Write a soundscape set of ``clips`` clips (split by ``fractions``; ``pinned`` groups keep their split, as in
    :func:`assign_splits`) into ``out``; see the module doc."""
    if clips <= 0:
        raise DataBuildError(f"--clips must be at least 1, got {clips}")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataBuildError(f"split fractions must be 3 non-negative numbers summing to 1, got {list(fractions)}")
    mix.check()
    items = _select(items, classes)
    pools, dropped, where = _pools(items, list(SPLITS), list(fractions), pinned)
    for label, why in dropped.items():
        log.warning("dropping class %r: %s", label, why)
    kept = _class_order(set(pools["train"]))
    if not kept:
        raise DataBuildError("no class has recordings for every split: " + "; ".join(f"{k}: {v}" for k, v in dropped.items()))
    out = Path(out)
    _prepare_out(out, overwrite)
    counts = dict(zip(SPLITS, _split_counts(clips, list(fractions))))
    tasks, rels = [], []
    for split in SPLITS:
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
        for i, labels in enumerate(_plan_labels(seed, split, counts[split], kept, mix)):
            rel = f"audio/{split}/{i + 1:06d}.wav"
            tasks.append((seed, split, i, labels, str(out / rel)))
            rels.append((split, rel))
    log.info("building %d clips (%s) of %.1f s from %d classes on %d process(es)", clips,
             ", ".join(f"{s} {c}" for s, c in counts.items()), mix.duration, len(kept), jobs)
    results = _run_tasks(tasks, pools, mix, jobs)
    uses: Counter = Counter()
    per_class: dict[str, Counter] = {s: Counter() for s in SPLITS}
    handles = {s: open(out / f"{s}.jsonl", "w") for s in SPLITS}
    try:
        for (split, rel), (row, _) in zip(rels, results):
            handles[split].write(json.dumps({"path": rel, **row}) + "\n")
            uses.update(k for k in row["sources"] if not k.startswith("synthetic:"))
            per_class[split].update(e["label"] for e in row["events"])
    finally:
        for h in handles.values():
            h.close()
    (out / "class_labels_indices.csv").write_text(class_labels_csv(kept))
    _sources_json(out / "sources.json", items, where, uses, {
        "layout": "soundscapes", "seed": seed, "clips": counts, "mix": asdict(mix), "split_fractions": list(fractions),
        "dropped_classes": dropped})
    failed = sum(f for _, f in results)
    if failed:
        log.warning("%d recording read(s) failed and were skipped (see the log lines above)", failed)
    return BuildSummary(str(out), counts, kept, dropped, failed,
                        {c: {s: per_class[s][c] for s in SPLITS} for c in kept})


def _esc_category(name: str) -> str:
    """ESC-50-style category: lower case, words joined by underscores ("Snare drum" -> "snare_drum")."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _take_name(k: int) -> str:
    """ESC-50 take letters: 0 -> "A", 25 -> "Z", 26 -> "AA", 27 -> "AB", ..."""
    name = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        name = chr(ord("A") + r) + name
    return name


def build_esc50(
    items: list[SourceItem],
    out: str | os.PathLike,
    *,
    clips: int,
    seed: int,
    mix: MixConfig = MixConfig(duration=5.0, snr_db=(10.0, 30.0)),
    classes: list[str] | None = None,
    jobs: int = 2,
    overwrite: bool = False,
) -> BuildSummary:
    """Write an ESC-50-shaped set: ``clips`` single-label 5-fold clips, folds disjoint by source group.

    Clip ``i`` goes to fold ``i mod 5 + 1`` and is of class ``(i div 5) mod C``, so folds hold equal numbers of
    clips (to one) and every class is spread over the folds.
    """
    if clips <= 0:
        raise DataBuildError(f"--clips must be at least 1, got {clips}")
    mix.check()
    items = _select(items, classes)
    folds = [f"fold{k}" for k in range(1, ESC_FOLDS + 1)]
    pools, dropped, where = _pools(items, folds, [1.0 / ESC_FOLDS] * ESC_FOLDS)
    for label, why in dropped.items():
        log.warning("dropping class %r: %s", label, why)
    kept = _class_order(set(pools["fold1"]))
    if not kept:
        raise DataBuildError("no class has recordings for all 5 folds: " + "; ".join(f"{k}: {v}" for k, v in dropped.items()))
    out = Path(out)
    _prepare_out(out, overwrite)
    (out / "audio").mkdir(parents=True)
    (out / "meta").mkdir(parents=True)
    tasks = []
    for i in range(clips):
        label, fold = kept[(i // ESC_FOLDS) % len(kept)], i % ESC_FOLDS + 1
        tasks.append((seed, f"fold{fold}", i, (label,), str(out / "audio" / f"tmp-{i:06d}.wav")))
    log.info("building %d ESC-50-style clips of %.1f s from %d classes on %d process(es)", clips, mix.duration,
             len(kept), jobs)
    results = _run_tasks(tasks, pools, mix, jobs)
    src_ids = {it.key: k for k, it in enumerate(sorted(items, key=lambda it: it.key))}
    takes: Counter = Counter()
    uses: Counter = Counter()
    rows = []
    for task, (row, _) in zip(tasks, results):
        _, split, _, (label,), tmp = task
        key = row["sources"][0]
        uses[key] += 1
        src, fold, target = src_ids[key], int(split[4:]), kept.index(label)
        take = _take_name(takes[src])
        takes[src] += 1
        name = f"{fold}-{src}-{take}-{target}.wav"
        os.replace(tmp, out / "audio" / name)
        rows.append([name, fold, target, _esc_category(label), str(label in ESC10), src, take])
    with open(out / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(sorted(rows, key=lambda r: (r[1], r[0])))
    (out / "class_labels_indices.csv").write_text(class_labels_csv(kept))
    _sources_json(out / "sources.json", items, where, uses, {
        "layout": "esc50", "seed": seed, "clips": clips, "mix": asdict(mix), "src_file_ids": {
            it.key: src_ids[it.key] for it in items if uses[it.key]}, "dropped_classes": dropped})
    per_fold = Counter(r[1] for r in rows)
    per_class: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        per_class[kept[r[2]]][f"fold{r[1]}"] = per_class[kept[r[2]]].get(f"fold{r[1]}", 0) + 1
    return BuildSummary(str(out), {f"fold{k}": per_fold[k] for k in range(1, ESC_FOLDS + 1)}, kept, dropped,
                        sum(f for _, f in results), dict(per_class))
