"""Self-contained model checkpoints: safetensors weights with a JSON config in the file's metadata.

One ``.safetensors`` file holds the weights and, under the metadata key ``"audiomamba"``, a JSON document::

    {"format": "audiomamba", "format_version": 1,
     "model": {"name": "audiomamba_nano", "args": {...}},      # enough for create_model(name, **args)
     "labels": [{"index": 0, "mid": "/m/09x0r", "display_name": "Speech"}, ...],
     "multi_label": true,                                       # sigmoid (true) or softmax (false) scores
     "sample_rate": 32000, "frontend": {...},                   # log-mel settings, for other implementations
     "provenance": {...}}                                       # free-form: data, recipe, steps, metrics, date

Loading never unpickles anything, and checks the file before it allocates the model: the metadata's keys and
types, the model name and arguments, the labels against the classes, and every tensor's name, dtype and shape
(read from the safetensors header) against those of the model the metadata describes (built on the ``meta``
device, which allocates nothing).  Only then is the model built and filled, and weights that are not finite
(NaN, inf) are refused.  Every problem is a :class:`CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import inspect
import json
import math
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

__all__ = ["save_model", "load", "read_meta", "read_header", "validate_meta", "check", "build", "CheckpointError",
           "atomic_write"]


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


def _open_checked(path: str | os.PathLike) -> Path:
    """``path`` is an existing, readable file that is not a PyTorch pickle."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a .safetensors checkpoint (a model folder in the Hub's "
                              "layout is read by --model / audiomamba.hub.from_pretrained)")
    try:
        with open(path, "rb") as f:
            magic = f.read(9)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e.strerror or e})") from None
    # a safetensors file: an 8-byte header length, then the JSON header; torch.save writes a zip or a pickle
    if magic[8:9] != b"{" and (magic[:4] == b"PK\x03\x04" or (magic[:1] == b"\x80" and magic[1:2] in b"\x02\x03\x04\x05")):
        raise CheckpointError(
            f"{path}: a PyTorch pickle file (such as a training run's last.pt), not a .safetensors checkpoint; it is "
            "not loaded, because unpickling can run code. Use the run's best.safetensors or final.safetensors")
    return path


def read_header(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """``(metadata, {tensor name: (dtype, shape)})`` of a safetensors file, from its header only (nothing is
    allocated)."""
    from safetensors import safe_open

    path = _open_checked(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {}
            for k in f.keys():
                s = f.get_slice(k)
                tensors[k] = (str(s.get_dtype()), tuple(int(n) for n in s.get_shape()))
    except Exception as e:  # safetensors raises SafetensorError (or OSError) for anything unreadable
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    return metadata, tensors


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of a checkpoint, without loading its weights; its keys and types are checked
    (:func:`validate_meta`)."""
    path = Path(path)
    metadata, _ = read_header(path)
    return _parse_meta(metadata, path)


def _parse_meta(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    raw = metadata.get(META_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: no '{META_KEY}' config in its metadata; not an audiomamba checkpoint")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: metadata '{META_KEY}' is not valid JSON ({e})") from None
    return validate_meta(meta, path)


_ARG_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_MAX_SAMPLE_RATE = 384_000
_MAX_INT_ARG = 4096  # widths, depths, heads: a bound that keeps even building on the meta device quick


def _model_params(name: str) -> dict[str, inspect.Parameter]:
    """The keyword arguments a checkpoint may give the registered model ``name`` (not ``pretrained_backbone``:
    a checkpoint never makes loading read another file)."""
    from audiomamba.models.audiomamba import AudioMamba
    from audiomamba.models.peers import PEERS
    from audiomamba.models.vmamba import VMAMBA_CONFIGS, VMamba

    cls = VMamba if name in VMAMBA_CONFIGS else PEERS[name][0] if name in PEERS else AudioMamba
    return {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k not in ("self", "cfg", "backbone")}


def _check_arg(where: str, key: str, value: Any, param: inspect.Parameter) -> None:
    ann = str(param.annotation).replace(" ", "")
    kinds = [t for t in ann.split("|") if t]
    ok_none = "None" in kinds
    types = tuple(_ARG_TYPES[t] for t in kinds if t in _ARG_TYPES)
    if value is None:
        if not ok_none:
            raise CheckpointError(f"{where}: model.args.{key} must not be null")
        return
    if bool in types:
        good = isinstance(value, bool)
    elif int in types and float not in types:
        good = isinstance(value, int) and not isinstance(value, bool)
    elif float in types:
        good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif str in types:
        good = isinstance(value, str)
    else:
        good = True
    if not good:
        want = " or ".join(t for t in kinds if t != "None") or ann
        raise CheckpointError(f"{where}: model.args.{key} must be {want}, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and key not in ("num_classes", "sample_rate") \
            and value > _MAX_INT_ARG:
        raise CheckpointError(f"{where}: model.args.{key}={value} is implausibly large (> {_MAX_INT_ARG})")
    ranges = {"num_classes": (0, None), "extra_transformer_blocks": (0, None), "drop_path_rate": (0.0, 1.0),
              "sample_rate": (1000, _MAX_SAMPLE_RATE), "in_chans": (1, None)}
    if key in ranges:
        lo, hi = ranges[key]
        if value < lo or (hi is not None and value > hi):
            rule = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise CheckpointError(f"{where}: model.args.{key} must be {rule}, got {value!r}")
    choices = {"head": ("tscam", "linear"), "layout": ("fold", "native")}
    if key in choices and value not in choices[key]:
        raise CheckpointError(f"{where}: model.args.{key} must be one of {', '.join(choices[key])}, got {value!r}")


def validate_meta(meta: Any, where: str | os.PathLike) -> dict[str, Any]:
    """Check a checkpoint config (the metadata document, or a model folder's config.json) for the keys and
    types loading relies on; returns it.  ``where`` names the file in the errors."""
    from audiomamba.models.registry import list_models

    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: the config must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not an audiomamba config (\"format\" is {meta.get('format')!r}, not "
                              f"{FORMAT!r}); not an audiomamba checkpoint")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version <= FORMAT_VERSION:
        raise CheckpointError(f"{where}: unsupported config format_version {version!r} (this version reads "
                              f"1..{FORMAT_VERSION})")
    model = meta.get("model")
    if not isinstance(model, dict) or "name" not in model:
        raise CheckpointError(f"{where}: missing key 'model' ({{\"name\": str, \"args\": {{...}}}})")
    name, args = model.get("name"), model.get("args", {})
    if not isinstance(name, str):
        raise CheckpointError(f"{where}: model.name must be a string, got {name!r}")
    from audiomamba.models.peers import PEERS

    if name not in list_models() and name not in PEERS:
        raise CheckpointError(f"{where}: cannot build model {name!r}: model.name is not a registered model (known: "
                              f"{', '.join(list_models())})")
    if not isinstance(args, dict):
        raise CheckpointError(f"{where}: model.args must be an object, got {args!r}")
    params = _model_params(name)
    for key, value in args.items():
        if key not in params:
            raise CheckpointError(f"{where}: model.args.{key} is not an argument of {name} (accepted: "
                                  f"{', '.join(sorted(params))})")
        _check_arg(where, key, value, params[key])
    labels = meta.get("labels")
    if not isinstance(labels, list):
        raise CheckpointError(f"{where}: missing key 'labels' (a list of {{\"index\", \"mid\", \"display_name\"}})")
    for i, lab in enumerate(labels):
        if not isinstance(lab, dict) or not isinstance(lab.get("display_name"), str):
            raise CheckpointError(f"{where}: labels[{i}] must be an object with a string 'display_name', got {lab!r}")
        if "mid" in lab and not isinstance(lab["mid"], str):
            raise CheckpointError(f"{where}: labels[{i}].mid must be a string, got {lab['mid']!r}")
        if "index" in lab and (isinstance(lab["index"], bool) or not isinstance(lab["index"], int)):
            raise CheckpointError(f"{where}: labels[{i}].index must be an integer, got {lab['index']!r}")
    if "multi_label" in meta and not isinstance(meta["multi_label"], bool):
        raise CheckpointError(f"{where}: multi_label must be true or false, got {meta['multi_label']!r}")
    sr = meta.get("sample_rate")
    if sr is not None and (isinstance(sr, bool) or not isinstance(sr, int) or not 0 < sr <= _MAX_SAMPLE_RATE):
        raise CheckpointError(f"{where}: sample_rate must be an integer in [1, {_MAX_SAMPLE_RATE}], got {sr!r}")
    if sr is not None and "sample_rate" in params and sr != args.get("sample_rate", params["sample_rate"].default):
        raise CheckpointError(f"{where}: sample_rate {sr} differs from model.args.sample_rate "
                              f"{args.get('sample_rate', params['sample_rate'].default)}")
    for key in ("provenance", "frontend"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], dict):
            raise CheckpointError(f"{where}: {key} must be an object, got {type(meta[key]).__name__}")
    return meta


_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
_TORCH_NAMES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
                torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL"}


def _check_tensors(meta: dict[str, Any], tensors: dict[str, tuple[str, tuple[int, ...]]], where: str,
                   config_source: str | None = None) -> None:
    """Every tensor of the file (names, dtypes, shapes from the header) against the model the config describes,
    built on the meta device: nothing is allocated however large the config claims the model is; then the
    labels against the classes."""
    name, args = meta["model"]["name"], dict(meta["model"].get("args", {}))
    model_of = f"the config's model {name!r}" if config_source is None else f"the model of {config_source} ({name!r})"
    # extra transformer blocks are counted in the header first: a huge count would take long even on 'meta'
    blocks = {k.split(".")[2] for k in tensors if k.startswith("extra_blocks.blocks.")}
    if args.get("extra_transformer_blocks", 0) != len(blocks):
        raise CheckpointError(f"{where}: model.args.extra_transformer_blocks={args.get('extra_transformer_blocks', 0)} "
                              f"but the file holds weights of {len(blocks)} extra block(s)")
    try:
        with torch.device("meta"):
            shell = create_model(name, **args)
            expected = shell.state_dict()
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where}: cannot build model {name!r} with {args}: {e}") from None
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensor(s) missing ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})")
        raise CheckpointError(f"{where}: weights do not match {model_of}: {'; '.join(parts)}")
    for key, ref in expected.items():
        dtype, shape = tensors[key]
        if shape != tuple(ref.shape):
            hint = ""
            if key.startswith("head."):
                hint = f" (model.args.num_classes={args.get('num_classes', 'default')}, {len(meta['labels'])} labels)"
            raise CheckpointError(f"{where}: weights do not match {model_of}: tensor {key!r} has shape {list(shape)} "
                                  f"in the file, the model needs {list(ref.shape)}{hint}")
        want_float = ref.is_floating_point()
        if want_float != (dtype in _FLOAT_DTYPES):
            raise CheckpointError(f"{where}: tensor {key!r} is stored as {dtype}, expected "
                                  f"{'a floating-point dtype' if want_float else _TORCH_NAMES.get(ref.dtype, ref.dtype)}")
    num_classes = getattr(shell, "num_classes", None)
    if isinstance(num_classes, int) and num_classes > 0 and len(meta["labels"]) != num_classes:
        raise CheckpointError(f"{config_source or where}: {len(meta['labels'])} labels for a model of {num_classes} "
                              "classes (model.args.num_classes and the head's weights)")


def check(path: str | os.PathLike, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check a checkpoint file without building its model: the config (``meta``, default the file's own), and
    every tensor's name, dtype and shape against it.  Returns the config.  Cheap: the header is all it reads."""
    path = Path(path)
    metadata, tensors = read_header(path)
    if meta is None:
        meta = _parse_meta(metadata, path)
    _check_tensors(meta, tensors, str(path))
    return meta


def _check_finite(state: dict[str, torch.Tensor], where: str) -> None:
    for key, t in state.items():
        if t.is_floating_point():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise CheckpointError(f"{where}: tensor {key!r} holds {bad} NaN/inf value(s) of {t.numel()}; the "
                                      "weights are damaged (or come from a diverged training run) and are not used")


def build(meta: dict[str, Any], weights: str | os.PathLike, config_source: str | os.PathLike | None = None) -> nn.Module:
    """The model ``meta`` describes, filled with the tensors of ``weights``: checked first (:func:`check`),
    then built, then loaded strictly; non-finite weights are refused.  Returns the model (CPU, train mode) with
    ``model.meta``.  ``config_source``: where ``meta`` came from, for the errors (default ``weights``)."""
    from safetensors.torch import load_file

    weights = Path(weights)
    where = str(config_source or weights)
    meta = validate_meta(meta, where)
    _, tensors = read_header(weights)
    _check_tensors(meta, tensors, str(weights), None if config_source is None else str(config_source))
    name, args = meta["model"]["name"], meta["model"].get("args", {})
    try:
        model = create_model(name, **args)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where}: cannot build model {name!r} with {args}: {e}") from None
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:  # SafetensorError, OSError
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
    _check_finite(state, str(weights))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: weights do not match the config's model {name!r}: {e}") from None
    model.meta = meta
    return model


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model`, in eval mode.

    The model gets ``model.meta`` (the JSON config: labels, multi_label, provenance...).  The file is checked
    against its own config before the model is built (:func:`check`); any problem, and weights that are not
    finite, raise :class:`CheckpointError` naming the file and the offending key.
    """
    path = Path(path)
    meta = read_meta(path)
    return build(meta, path).to(device).eval()
