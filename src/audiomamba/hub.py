"""Models and taggers in the Hugging Face Hub's layout: save, load, convert, share.

A model folder (a local directory, or one revision of a Hub repository)::

    config.json         the checkpoint's JSON config: {"format": "audiomamba", "format_version": 1,
                        "model": {"name", "args"}, "labels", "multi_label", "sample_rate", "frontend",
                        "provenance"}; the same document as a single-file checkpoint's metadata
                        (:mod:`audiomamba.checkpoint`)
    model.safetensors   the weights, written by :func:`audiomamba.save_model`: it carries that config too, so the
                        file alone is also a single-file checkpoint
    README.md           the model card: YAML front matter (library_name, license, tags, pipeline_tag, metrics,
                        datasets) and the labels, metrics, provenance and front-end settings

>>> from audiomamba.hub import save_pretrained, from_pretrained, tagger_from_pretrained
>>> save_pretrained(model, "audiomamba-tiny-esc50")              # or a Tagger
>>> model = from_pretrained("audiomamba-tiny-esc50")              # a folder ...
>>> tagger = tagger_from_pretrained("org/audiomamba-tiny-esc50", revision="v1.0")   # ... or a Hub repo id

``from_pretrained`` reads ``config.json`` (the one it trusts when the two copies differ) and the weights; it also
takes a single ``.safetensors`` checkpoint and the name of a tagger that ships with the package
(:func:`audiomamba.models.pretrained.list_pretrained`).  Repo ids go through ``huggingface_hub`` (the ``hub`` extra), so its
cache (``HF_HOME``, ``HF_HUB_CACHE``, ``cache_dir=``), revisions (branch, tag or commit) and offline rules
(``HF_HUB_OFFLINE=1`` or ``local_files_only=True``: only the cache is read) hold; local folders need nothing
more than the package.  Loading never unpickles anything.  Every failure to find or read a model is an
:class:`~audiomamba.errors.CheckpointError` naming the file (or repo, revision and file).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from audiomamba.checkpoint import build, load, read_meta, save_model, validate_meta
from audiomamba.errors import CheckpointError, UsageError
from audiomamba.models.pretrained import list_pretrained, pretrained_path
from audiomamba.utils.io import atomic_write

if TYPE_CHECKING:
    from audiomamba.inference.tagger import Tagger

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "MODEL_CARD_NAME",
    "save_pretrained",
    "from_pretrained",
    "tagger_from_pretrained",
    "resolve_files",
    "convert_checkpoint",
    "model_card",
    "push_to_hub",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
LIBRARY_NAME = "audiomamba"
_HUB_INSTALL = "pip install 'audiomamba[hub]'"


# ---------------------------------------------------------------------- saving
def save_pretrained(
    model_or_tagger: nn.Module | "Tagger",
    save_directory: str | os.PathLike,
    *,
    labels: list[dict[str, Any]] | list[str] | None = None,
    multi_label: bool | None = None,
    provenance: dict[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    license: str = "apache-2.0",
    repo_id: str | None = None,
    write_model_card: bool = True,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a model (built by :func:`audiomamba.create_model` or loaded) or a Tagger as a Hub model folder.

    ``labels``, ``multi_label`` and ``provenance`` default to the tagger's, then to the loaded model's
    ``model.meta``; ``metrics`` (e.g. ``{"mAP": 0.437}``) are stored as ``provenance["metrics"]`` and shown on
    the card.  ``license``: the card's licence id for the weights; ``repo_id``: the name the card's usage snippet
    shows; ``dtype``: store floating-point weights in this dtype (``torch.float16`` halves the download).  Each file
    is written atomically; other files in the folder are left alone.  Returns the folder.
    """
    model, labels, multi_label, provenance = _model_and_meta(model_or_tagger, labels, multi_label, provenance)
    if metrics:
        provenance = {**provenance, "metrics": {str(k): float(v) for k, v in metrics.items()}}
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    weights = save_model(model, folder / WEIGHTS_NAME, labels=labels, multi_label=multi_label, provenance=provenance,
                         dtype=dtype)
    meta = read_meta(weights)
    _write_text(folder / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    if write_model_card:
        _write_text(folder / MODEL_CARD_NAME, model_card(meta, license=license, repo_id=repo_id))
    return folder


def _model_and_meta(obj, labels, multi_label, provenance) -> tuple[nn.Module, Any, bool, dict[str, Any]]:
    """(model, labels, multi_label, provenance) of a model or Tagger, explicit arguments first."""
    model = getattr(obj, "model", obj)  # a Tagger holds its model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an audiomamba model or Tagger, got {type(obj).__name__}")
    meta = getattr(model, "meta", None) or {}
    if labels is None:
        labels = list(obj.labels) if hasattr(obj, "labels") else meta.get("labels")
    if multi_label is None:
        multi_label = bool(getattr(obj, "multi_label", meta.get("multi_label", True)))
    if provenance is None:
        provenance = dict(meta.get("provenance", {}))
    return model, labels, multi_label, provenance


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------------- model card
_CARD_TAGS = ["audio", "audio-classification", "audio-tagging", "audiomamba", "mamba", "vmamba", "state-space-model"]


def model_card(meta: Mapping[str, Any], license: str = "apache-2.0", repo_id: str | None = None) -> str:
    """The README.md of a model folder, from its config (``meta``): YAML front matter that the Hub indexes, then
    what the model is, how to use it, its metrics, labels, provenance and front end."""
    import yaml

    name = meta["model"]["name"]
    args = meta["model"].get("args", {})
    labels = meta.get("labels", [])
    provenance = meta.get("provenance", {}) or {}
    metrics = _card_metrics(provenance)
    framewise = args.get("head", "tscam") == "tscam"
    front: dict[str, Any] = {
        "library_name": LIBRARY_NAME,
        "license": license,
        "pipeline_tag": "audio-classification",
        "tags": _CARD_TAGS + (["sound-event-detection"] if framewise else []),
    }
    datasets = provenance.get("datasets")
    if isinstance(datasets, list) and all(isinstance(d, str) for d in datasets):
        front["datasets"] = datasets
    if metrics:
        front["metrics"] = list(metrics)
    where = repo_id or "PATH_OR_REPO_ID"
    scores = "sigmoid per class (multi-label)" if meta.get("multi_label", True) else "softmax over classes (single-label)"
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {repo_id.split('/')[-1] if repo_id else name}",
        "",
        f"An Audio Mamba audio tagger (`{name}`, a VMamba selective-scan backbone on log-mel spectrograms, "
        f"Audio Mamba, Lin & Hu, 2024): {len(labels)} classes, scores by {scores}"
        + (", clip tags and timestamped events (framewise output every 10 ms)." if framewise else ", clip tags."),
        f"Input: mono audio at {meta.get('sample_rate', 'the model')} Hz (other rates are resampled), any length.",
        "",
        "## Use",
        "",
        "```python",
        "from audiomamba.hub import tagger_from_pretrained",
        "",
        f'tagger = tagger_from_pretrained("{where}")',
        'print(tagger.tag("clip.wav").tags)              # [(label, score), ...] best first',
        *(['print(tagger.detect("clip.wav").events)        # [Event(label, onset, offset, score), ...]'] if framewise else []),
        "```",
        "",
        f"Model arguments: `{json.dumps(args, sort_keys=True)}`.",
        "",
    ]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
        lines.append("")
    lines += ["## Labels", ""]
    table = ["| index | id | name |", "| --- | --- | --- |"]
    table += [f"| {lab.get('index', i)} | {lab.get('mid', '')} | {_cell(lab.get('display_name', ''))} |"
              for i, lab in enumerate(labels)]
    if len(labels) > 50:
        lines += [f"<details><summary>{len(labels)} labels</summary>", "", *table, "", "</details>", ""]
    else:
        lines += [*table, ""]
    lines += ["## Provenance", "", "```json", json.dumps(provenance, indent=2, sort_keys=True, default=str), "```", ""]
    if "frontend" in meta:
        lines += ["## Front end (log-mel)", "", "```json", json.dumps(meta["frontend"], sort_keys=True), "```", ""]
    return "\n".join(lines)


def _card_metrics(provenance: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics for the card: ``provenance["metrics"]``, else the trainer's ``"validation"`` or
    ``"best"`` record (steps and epochs left out)."""
    for key in ("metrics", "validation", "best"):
        found = provenance.get(key)
        if isinstance(found, Mapping):
            out = {str(k): float(v) for k, v in found.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch")}
            if out:
                return out
    return {}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


# ---------------------------------------------------------------------- loading
def from_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """An eval-mode model from a model folder, a Hub repo id (``"org/name"``), a single ``.safetensors`` file or
    the name of a tagger that ships with the package (looked for in that order: local paths, shipped names, repo
    ids).

    The model carries ``model.meta`` (the config: labels, multi_label, provenance ...).  A repo id is fetched
    through ``huggingface_hub``'s cache: ``revision`` (branch, tag or commit; default its main branch),
    ``cache_dir`` (default ``HF_HUB_CACHE``), ``token``, ``force_download``; ``local_files_only=True`` (or
    ``HF_HUB_OFFLINE=1``) reads the cache only.  ``revision`` and the download options apply to repo ids only.
    """
    config, weights = resolve_files(
        name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token,
        force_download=force_download,
    )
    if config is None:
        return load(weights, device=device)
    return _build(_read_config(config), weights, config).to(device).eval()


def tagger_from_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | str | None = None,
    **tagger_kwargs: Any,
) -> "Tagger":
    """:func:`from_pretrained` wrapped in a :class:`~audiomamba.inference.Tagger` (``tagger_kwargs``: its
    options, e.g. ``mode``, ``window_s``, ``batch_size``); the Hub's counterpart of ``Tagger.from_checkpoint``."""
    from audiomamba.inference.tagger import Tagger
    from audiomamba.utils.device import resolve_device

    dev = resolve_device(device)
    model = from_pretrained(name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                            token=token, device=dev)
    return Tagger(model, device=dev, dtype=dtype, **tagger_kwargs)


def resolve_files(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
) -> tuple[Path | None, Path]:
    """Where the config and weights of ``name_or_path`` are on this machine: ``(config.json, model.safetensors)``
    of a folder or of a Hub repo (fetched into, or read from, the cache), or ``(None, file)`` for a single-file
    checkpoint or a shipped tagger.  A missing folder, file or repo is a :class:`CheckpointError` that names it."""
    path = Path(name_or_path).expanduser()
    if path.is_file() or path.is_dir():
        if revision is not None or cache_dir is not None:
            raise UsageError(f"{path}: revision and cache_dir apply to Hub repo ids, not to a local path")
        if path.is_file():
            return None, path
        missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (path / name).is_file()]
        if missing:
            names = " and ".join(str(path / m) for m in missing)
            raise CheckpointError(f"{path}: not an audiomamba model folder: missing {names}")
        return path / CONFIG_NAME, path / WEIGHTS_NAME
    name = str(name_or_path)
    if name in list_pretrained():
        if revision is not None or cache_dir is not None:
            raise UsageError(f"{name}: revision and cache_dir apply to Hub repo ids, not to a tagger shipped with the "
                             "package")
        return None, pretrained_path(name)
    if _looks_like_path(name):
        raise CheckpointError(f"model not found: {name} (no such file or folder)")
    config = _hub_file(name, CONFIG_NAME, revision, revision, cache_dir, local_files_only, token, force_download)
    # the weights of the very commit the config came from (its cache folder's name), even if the branch moves on
    commit = config.parent.name if re.fullmatch(r"[0-9a-f]{40}", config.parent.name) else revision
    return config, _hub_file(name, WEIGHTS_NAME, commit, revision, cache_dir, local_files_only, token, force_download)


def _looks_like_path(name: str) -> bool:
    """A name that can only be a local path (so a missing one is 'not found', not a Hub lookup)."""
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.endswith((".safetensors", ".json"))
        or name.count("/") > 1
        or os.sep != "/" and os.sep in name
    )


def _hub_file(repo_id, filename, revision, asked, cache_dir, local_files_only, token, force_download) -> Path:
    """One file of a Hub repo through huggingface_hub's cache; its errors become a CheckpointError naming the
    repo, revision (``asked``: the one the user gave, when ``revision`` is the commit it resolved to) and file."""
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as e:
        raise ImportError(f"loading {repo_id!r} from the Hugging Face Hub needs huggingface_hub: {_HUB_INSTALL}") from e
    from audiomamba import __version__

    where = f"{repo_id} (revision {revision or 'main'})"
    if asked != revision:
        where = f"{repo_id} (revision {asked or 'main'}, commit {revision})"
    try:
        return Path(
            hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache_dir, local_files_only=bool(local_files_only),
                token=token, force_download=force_download, library_name=LIBRARY_NAME, library_version=__version__,
            )
        )
    except Exception as e:  # huggingface_hub's errors derive from OSError, ValueError or Exception depending on version
        offline = bool(local_files_only) or bool(constants.HF_HUB_OFFLINE)
        if offline:
            cache = cache_dir or constants.HF_HUB_CACHE
            raise CheckpointError(
                f"{where}: {filename} is not in the Hugging Face cache {cache} and downloads are off "
                f"({'local_files_only=True' if local_files_only else 'HF_HUB_OFFLINE=1'}; {type(e).__name__})"
            ) from e
        raise CheckpointError(f"{where}: cannot get {filename} from the Hugging Face Hub: {type(e).__name__}: {e}") from e


def _read_config(path: Path) -> dict[str, Any]:
    """config.json -> the checkpoint config, checked like a single file's metadata."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a readable JSON config ({e})") from None
    return validate_meta(meta, path)


def _build(meta: dict[str, Any], weights: Path, config_source: Path) -> nn.Module:
    """The model ``meta`` describes, with the tensors of ``weights``: names, dtypes and shapes are checked
    against the config before anything is allocated, then loaded strictly; non-finite weights are refused."""
    return build(meta, weights, config_source)


# ---------------------------------------------------------------------- conversion and sharing
def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, **load_options: Any) -> Path:
    """Convert between a single-file checkpoint and a model folder, either way; returns ``dst``.

    ``dst`` ending in ``.safetensors`` gets a single file, anything else becomes a folder.  ``src`` is whatever
    :func:`from_pretrained` reads (a file, a folder, or a repo id with ``load_options`` such as ``revision``).
    Labels, multi_label and provenance carry over unchanged, and the weights bit for bit, in the dtype they are
    stored in (a float16 file stays float16); the model is rebuilt on the way, so a config that does not fit its
    weights is caught.
    """
    _, weights = resolve_files(src, **load_options)
    model = from_pretrained(src, **load_options)
    meta = model.meta
    kept = {"labels": meta["labels"], "multi_label": meta["multi_label"], "provenance": meta.get("provenance", {}),
            "dtype": _stored_float_dtype(weights)}
    if str(dst).endswith(".safetensors"):
        return save_model(model, dst, **kept)
    return save_pretrained(model, dst, **kept)


def _stored_float_dtype(weights: Path) -> torch.dtype | None:
    """The dtype a weights file stores its floating-point tensors in, when it is a half-precision one (else None:
    float32, what the model holds)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        stored = {f.get_slice(k).get_dtype() for k in f.keys()}
    halves = {"F16": torch.float16, "BF16": torch.bfloat16}
    found = {halves[s] for s in stored if s in halves}
    return found.pop() if len(found) == 1 and not stored & {"F32", "F64"} else None


def push_to_hub(
    model_or_tagger: nn.Module | "Tagger",
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload audiomamba model",
    **save_options: Any,
) -> Any:
    """Create (if needed) the Hub model repo ``repo_id`` and upload the folder :func:`save_pretrained` writes
    (``save_options``: its keyword arguments) in one commit; returns huggingface_hub's ``CommitInfo``."""
    try:
        from huggingface_hub import HfApi
    except ImportError as e:
        raise ImportError(f"pushing to the Hugging Face Hub needs huggingface_hub: {_HUB_INSTALL}") from e
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="audiomamba-hub-") as tmp:
        save_pretrained(model_or_tagger, tmp, repo_id=repo_id, **save_options)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision, commit_message=commit_message,
                                 repo_type="model")
