"""Self-contained model checkpoints: safetensors weights with a JSON config in the file's metadata.

One ``.safetensors`` file holds the weights and, under the metadata key ``"audiomamba"``, a JSON document::

    {"format": "audiomamba", "format_version": 1,
     "model": {"name": "audiomamba_nano", "args": {...}},      # enough for create_model(name, **args)
     "labels": [{"index": 0, "mid": "/m/09x0r", "display_name": "Speech"}, ...],
     "multi_label": true,                                       # sigmoid (true) or softmax (false) scores
     "sample_rate": 32000, "frontend": {...},                   # log-mel settings, for other implementations
     "provenance": {...}}                                       # free-form: data, recipe, steps, metrics, date

Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiomamba.errors import CheckpointError
from audiomamba.models.registry import create_model
from audiomamba.utils.io import atomic_write

FORMAT = "audiomamba"
FORMAT_VERSION = 1
META_KEY = "audiomamba"

__all__ = ["save_model", "load", "read_meta", "CheckpointError", "atomic_write"]


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    labels: list[dict[str, Any]] | list[str] | None = None,
    multi_label: bool = True,
    provenance: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` (built by :func:`audiomamba.create_model`) to ``path`` (``.safetensors``), atomically.

    ``labels``: one entry per output class, either display names or dicts with ``index``/``mid``/``display_name``.
    ``dtype``: store floating-point tensors in this dtype (``torch.float16`` halves the file); :func:`load` casts
    them back into the model's float32 parameters.
    """
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not config:
        raise ValueError("model has no .config; build it with audiomamba.create_model so it can be rebuilt")
    num_classes = getattr(model, "num_classes", None)
    norm_labels = _normalise_labels(labels, num_classes)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config,
        "labels": norm_labels,
        "multi_label": bool(multi_label),
        "provenance": provenance or {},
    }
    if hasattr(model, "frontend"):
        meta["sample_rate"] = model.sample_rate
        meta["frontend"] = model.frontend.cfg.to_dict()
    tensors = {k: v.detach().to("cpu", dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)}))
    return path


def _normalise_labels(labels, num_classes: int | None) -> list[dict[str, Any]]:
    if labels is None:
        if num_classes == 527:
            from audiomamba.labels import audioset_labels

            return audioset_labels()
        labels = [f"class_{i}" for i in range(num_classes or 0)]
    out = []
    for i, lab in enumerate(labels):
        if isinstance(lab, str):
            out.append({"index": i, "mid": "", "display_name": lab})
        else:
            out.append({"index": int(lab.get("index", i)), "mid": lab.get("mid", ""), "display_name": lab["display_name"]})
    if num_classes is not None and len(out) != num_classes:
        raise ValueError(f"{len(out)} labels given for a model with {num_classes} classes")
    return out


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of a checkpoint, without loading its weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # safetensors raises SafetensorError for anything unreadable
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    if raw is None:
        raise CheckpointError(f"{path}: no '{META_KEY}' config in its metadata; not an audiomamba checkpoint")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')!r} v{meta.get('format_version')}")
    return meta


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model`, in eval mode.

    The model gets ``model.meta`` (the JSON config: labels, multi_label, provenance...).  A config that does
    not fit the weights raises :class:`CheckpointError` naming the file and the offending keys.
    """
    from safetensors.torch import load_file

    meta = read_meta(path)
    model = create_model(meta["model"]["name"], **meta["model"].get("args", {}))
    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the config's model {meta['model']['name']!r}: {e}") from e
    model.meta = meta
    return model.to(device).eval()
