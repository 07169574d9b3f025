"""Pretrained weights: the taggers that ship inside the package, and the official VMamba ImageNet checkpoints
that initialise Audio Mamba backbones."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from audiomamba.errors import CheckpointError
from audiomamba.models.audiomamba import AudioMamba

# Taggers shipped in ``audiomamba/resources/pretrained/`` (name -> file); provenance and metrics are in each file's
# metadata (``audiomamba.checkpoint.read_meta``) and in docs/training.md ("The shipped tagger").
SHIPPED: dict[str, str] = {"audiomamba_micro_v2-bank53": "audiomamba_micro_v2-bank53.safetensors"}
DEFAULT_TAGGER = "audiomamba_micro_v2-bank53"


def list_pretrained() -> list[str]:
    """Names of the taggers that ship with the package (usable without any download)."""
    return sorted(SHIPPED)


def pretrained_path(name: str | None = None) -> Path:
    """The checkpoint file of shipped tagger ``name`` (default :data:`DEFAULT_TAGGER`)."""
    from importlib import resources

    name = DEFAULT_TAGGER if name is None else name
    if name not in SHIPPED:
        raise CheckpointError(f"no shipped tagger named {name!r}; shipped: {', '.join(list_pretrained())}")
    path = Path(str(resources.files("audiomamba") / "resources" / "pretrained" / SHIPPED[name]))
    if not path.is_file():
        raise CheckpointError(f"shipped tagger {name!r} is missing from this installation ({path})")
    return path



@dataclass
class LoadReport:
    """What :func:`init_backbone_from_imagenet` did: keys loaded, model keys left at their initialisation
    (``missing``), checkpoint keys not used (``unexpected``) and deliberately dropped ones (``dropped``)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.path}: loaded {len(self.loaded)} tensors; {len(self.missing)} model tensors newly initialised "
            f"({', '.join(_prefixes(self.missing)) or 'none'}); dropped {len(self.dropped)} (ImageNet classifier); "
            f"{len(self.unexpected)} unexpected"
        )


def _prefixes(keys: list[str]) -> list[str]:
    return sorted({k.split(".")[0] if not k.startswith("head.") else ".".join(k.split(".")[:2]) for k in keys})


def read_state_dict(path: str | os.PathLike, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file without unpickling arbitrary objects.

    ``.safetensors`` is read with safetensors; anything else with ``torch.load(weights_only=True)`` and may be
    a dict holding the state dict under ``"model"`` (or ``"model_ema"`` when ``use_ema``), or the state dict
    itself.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError for bad headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: holds Python objects besides tensors, so it is not loaded (loading it could run code); use a "
            f"file that holds only tensors, or its .safetensors version ({e})"
        ) from e
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e})") from e
    key = "model_ema" if use_ema else "model"
    if isinstance(obj, dict) and key in obj:
        obj = obj[key]
    elif use_ema:
        raise CheckpointError(f"{path}: no 'model_ema' entry (keys: {sorted(obj)[:10] if isinstance(obj, dict) else type(obj)})")
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (or a dict with 'model'), got {type(obj).__name__}")
    return obj


def adapt_stem(weight: torch.Tensor, in_chans: int, mode: str = "mean") -> torch.Tensor:
    """Turn a 3-channel stem convolution into an ``in_chans``-channel one: for 1 channel, the mean (HTS-AT) or
    the sum over RGB."""
    if weight.shape[1] == in_chans:
        return weight
    if in_chans != 1:
        raise CheckpointError(f"cannot adapt a {weight.shape[1]}-channel stem to {in_chans} channels")
    if mode == "mean":
        return weight.mean(dim=1, keepdim=True)
    if mode == "sum":
        return weight.sum(dim=1, keepdim=True)
    raise ValueError(f"stem_adapt must be 'mean' or 'sum', got {mode!r}")


def init_backbone_from_imagenet(
    model: AudioMamba, path: str | os.PathLike, stem_adapt: str = "mean", use_ema: bool = False
) -> LoadReport:
    """Copy an official ImageNet VMamba checkpoint into ``model.backbone``.

    The stem is adapted to one input channel, ``classifier.norm`` initialises the head's LayerNorm when the
    head has one of that size, ``classifier.head`` (the 1000-class layer) is dropped.  A shape mismatch is a
    :class:`CheckpointError` naming the key; a checkpoint that shares no key with the backbone is rejected.
    """
    state = read_state_dict(path, use_ema=use_ema)
    report = LoadReport(str(path))
    target = model.state_dict()
    stem_key = "patch_embed.0.weight"
    new: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("classifier.head."):
            report.dropped.append(key)
            continue
        dest = key.replace("classifier.norm.", "head.norm.") if key.startswith("classifier.norm.") else f"backbone.{key}"
        if dest not in target:
            report.unexpected.append(key)
            continue
        if key == stem_key:
            value = adapt_stem(value, target[dest].shape[1], stem_adapt)
        if value.shape != target[dest].shape:
            raise CheckpointError(
                f"{path}: key {key!r} has shape {tuple(value.shape)} but the model expects {tuple(target[dest].shape)} "
                f"(is the checkpoint for another VMamba size?)"
            )
        new[dest] = value.to(target[dest].dtype)
    backbone_keys = [k for k in new if k.startswith("backbone.")]
    if not backbone_keys:
        raise CheckpointError(f"{path}: no VMamba backbone tensor matches this model; not an official VMamba checkpoint?")
    model.load_state_dict(new, strict=False)
    report.loaded = sorted(new)
    report.dropped.sort()
    report.missing = sorted(k for k in target if k not in new and not k.endswith("num_batches_tracked"))
    return report
