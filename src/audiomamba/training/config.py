"""The training configuration: a tree of dataclasses read from YAML, with ``key=value`` overrides.

Unknown keys and values of the wrong type are errors naming the key (and the file).  See docs/training.md for
every key.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from audiomamba.errors import ConfigError

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides", "config_to_dict"]



@dataclass
class ModelConfig:
    name: str = "audiomamba_nano"
    head: str = "tscam"
    layout: str = "fold"
    extra_transformer_blocks: int = 0
    drop_path_rate: float | None = None
    sample_rate: int = 32000
    spec_augment: bool = True
    pretrained_backbone: str | None = None  # ImageNet VMamba checkpoint (.pth / .safetensors)
    stem_adapt: str = "mean"
    init_checkpoint: str | None = None  # a tagging checkpoint to fine-tune from (head dropped if classes differ)


@dataclass
class DataConfig:
    format: str = "auto"  # auto | manifest | audioset | esc50 | folder | shards | bank
    root: str = ""
    train: str = "train"
    validation: str | None = "validation"
    test: str | None = None
    labels: str | None = None  # class_labels_indices.csv (default: the dataset's own)
    fold: int | None = None  # ESC-50: the held-out fold
    val_fraction: float = 0.1  # class folders without split folders
    clip_seconds: float = 10.0  # training crop length
    eval_seconds: float | None = None  # cap on evaluation clip length (None: whole clips)
    num_workers: int = 0
    check_files: bool = True


@dataclass
class SamplingConfig:
    mode: str = "shuffle"  # shuffle | balanced
    epoch_size: int | None = None  # clips per epoch (default: the training split's size)


@dataclass
class AugmentConfig:
    random_crop: bool = True
    gain_db: float = 0.0
    time_shift: float = 0.0
    mixup: str = "none"  # none | spec | wave
    mixup_alpha: float = 0.5
    mixup_prob: float = 1.0
    mixup_targets: str = "mix"  # mix (lam-weighted) | max (union of labels)
    cutmix_prob: float = 0.0
    cutmix_alpha: float = 1.0


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.05
    schedule: str = "htsat"  # htsat | cosine | constant
    htsat_warmup: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    htsat_milestones: list[int] = field(default_factory=lambda: [10, 20, 30])
    warmup_steps: int = 0  # cosine: linear warm-up steps
    min_lr_ratio: float = 0.01  # cosine: final lr / lr
    grad_clip: float | None = 1.0
    accumulate: int = 1


@dataclass
class TrainConfig:
    output_dir: str = "runs/audiomamba"
    epochs: int = 100
    batch_size: int = 32  # global batch (all ranks, per optimiser step = batch_size * accumulate examples)
    loss: str = "auto"  # auto | bce | ce
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA only)
    compile: str = "off"  # off | inductor (torch.compile of the training forward) | aot_eager (capture check only)
    cuda_graph: bool = False  # replay forward + backward from CUDA graphs (one GPU; utils/cuda_graphs.py)
    ema_decay: float | None = None
    eval_with_ema: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    eval_every_epochs: int = 1
    eval_batch_size: int | None = None
    checkpoint_every: int = 500  # steps
    log_every: int = 10
    progress: bool = True
    tensorboard: bool = True
    sync_bn: bool = True
    stop_after_steps: int | None = None  # stop early (as if interrupted), for tests


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "Config":
        choices = {("model", "layout"): ("fold", "native"), ("model", "head"): ("tscam", "linear"),
                   ("sampling", "mode"): ("shuffle", "balanced"), ("augment", "mixup"): ("none", "spec", "wave"),
                   ("augment", "mixup_targets"): ("mix", "max"), ("optim", "schedule"): ("htsat", "cosine", "constant"),
                   ("train", "loss"): ("auto", "bce", "ce"), ("train", "precision"): ("fp32", "bf16", "fp16"),
                   ("train", "compile"): ("off", "inductor", "aot_eager"),
                   ("data", "format"): ("auto", "manifest", "audioset", "esc50", "folder", "shards", "bank")}
        for (sec, key), allowed in choices.items():
            v = getattr(getattr(self, sec), key)
            if v not in allowed:
                raise ConfigError(f"{sec}.{key}: {v!r} is not one of {', '.join(allowed)}")
        positive = [("train", "batch_size"), ("train", "epochs"), ("optim", "accumulate"), ("train", "checkpoint_every")]
        for sec, key in positive:
            if getattr(getattr(self, sec), key) < 1:
                raise ConfigError(f"{sec}.{key} must be >= 1")
        if self.train.cuda_graph and self.train.compile != "off":
            raise ConfigError(f"train.cuda_graph and train.compile={self.train.compile!r} exclude each other; choose one")
        if not self.data.root:
            raise ConfigError("data.root is required (the dataset folder or manifest)")
        return self


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(errs[0] if errs else f"{key}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls, data: dict, prefix: str, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}unknown config key '{prefix}{unknown[0]}' (known in {prefix.rstrip('.') or 'the top level'}: "
                          f"{', '.join(sorted(names))})")
    kwargs = {}
    for k, v in data.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = _build(tp, v or {}, f"{prefix}{k}.", where)
        else:
            kwargs[k] = _convert(v, tp, f"{where}{prefix}{k}")
    return cls(**kwargs)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``section.key=value`` strings (values parsed as YAML) merged into a raw config mapping."""
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like section.key=value")
        key, value = ov.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, raw: dict | None = None) -> Config:
    """Read a YAML file (and/or a raw mapping), apply overrides, check keys and types."""
    data: dict = {}
    where = ""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML ({e})") from None
        where = f"{path}: "
    if raw:
        import copy

        data = {**data, **copy.deepcopy(raw)}
    apply_overrides(data, overrides or [])
    return _build(Config, data, "", where).validate()
