"""The training configuration: a tree of dataclasses read from YAML, with ``key=value`` overrides.

Unknown keys and values of the wrong type are errors naming the key (and the file).  See docs/training.md for
every key.
"""

from __future__ import annotations

import dataclasses
import math
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
    step_frames: int = 32  # frames per time step of the token-semantic head: 32, or 16 / 8 for finer steps
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
    source_speed: float = 0.0  # source bank only: each event plays at a factor in [1/(1+x), 1+x] (SourceAugment)
    source_eq_db: float = 0.0  # source bank only: a random 2-band equaliser of +-x dB on each event
    source_reverb: float = 0.0  # source bank only: half the events in a synthetic room of RT60 0.1..x s
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
    frame_loss_weight: float = 0.0  # > 0: + w * BCE of the per-step logits against strong-label frame targets
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
        from audiomamba.models.peers import PEERS
        from audiomamba.models.registry import AUDIOMAMBA_VARIANTS

        for (sec, key), allowed in choices.items():
            v = getattr(getattr(self, sec), key)
            if v not in allowed:
                raise ConfigError(f"{sec}.{key}: {v!r} is not one of {', '.join(allowed)}")
        for (sec, key), (low, high, low_open, high_open) in RANGES.items():
            _check_range(f"{sec}.{key}", getattr(getattr(self, sec), key), low, high, low_open, high_open)
        if len(self.optim.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers [beta1, beta2], got {self.optim.betas}")
        for i, b in enumerate(self.optim.betas):
            _check_range(f"optim.betas[{i}]", b, 0.0, 1.0, False, True)
        for i, w in enumerate(self.optim.htsat_warmup):
            _check_range(f"optim.htsat_warmup[{i}]", w, 0.0, None, True, False)
        for i, m in enumerate(self.optim.htsat_milestones):
            _check_range(f"optim.htsat_milestones[{i}]", m, 0, None, False, False)
        if sorted(self.optim.htsat_milestones) != list(self.optim.htsat_milestones):
            raise ConfigError(f"optim.htsat_milestones must be in increasing order, got {self.optim.htsat_milestones}")
        if self.model.step_frames not in (4, 8, 16, 32):
            raise ConfigError(f"model.step_frames: {self.model.step_frames!r} is not one of 4, 8, 16, 32")
        if self.model.step_frames != 32 and (self.model.head != "tscam" or self.model.name not in AUDIOMAMBA_VARIANTS):
            raise ConfigError(f"model.step_frames={self.model.step_frames} needs an Audio Mamba model with the "
                              f"token-semantic head (model.head: tscam), not {self.model.name} with {self.model.head}")
        if self.model.stem_adapt not in ("mean", "sum"):
            raise ConfigError(f"model.stem_adapt: {self.model.stem_adapt!r} is not one of mean, sum")
        trainable = list(AUDIOMAMBA_VARIANTS) + list(PEERS)
        if self.model.name not in trainable:
            raise ConfigError(f"model.name: {self.model.name!r} is not a trainable model (one of {', '.join(trainable)})")
        _check_device(self.train.device)
        from audiomamba.models.features import FrontendConfig

        n_fft = FrontendConfig.for_sample_rate(self.model.sample_rate).n_fft
        shortest = (n_fft // 2 + 1) / self.model.sample_rate  # the centred STFT's shortest input
        for key in ("clip_seconds", "eval_seconds"):
            value = getattr(self.data, key)
            if value is not None and value < shortest:
                raise ConfigError(f"data.{key}={value:g} is shorter than the model's shortest input ({shortest:.3f} s "
                                  f"at model.sample_rate={self.model.sample_rate})")
        self._check_frame_loss()
        if self.train.cuda_graph and self.train.compile != "off":
            raise ConfigError(f"train.cuda_graph and train.compile={self.train.compile!r} exclude each other; choose one")
        if not self.data.root:
            raise ConfigError("data.root is required (the dataset folder or manifest)")
        return self

    def _check_frame_loss(self) -> None:
        """``train.frame_loss_weight > 0`` needs framewise outputs, a multi-label loss, and no CutMix.  (Strong
        labels in the training split, and a time-step grid that stays put, are checked when training starts.)"""
        if not self.train.frame_loss_weight:
            return
        if self.model.head != "tscam":
            raise ConfigError(f"train.frame_loss_weight > 0 needs framewise outputs: model.head must be tscam, "
                              f"not {self.model.head!r}")
        if self.train.loss == "ce":
            raise ConfigError("train.frame_loss_weight > 0 needs a multi-label model: train.loss must be bce or "
                              "auto, not 'ce'")
        if self.augment.cutmix_prob > 0:
            raise ConfigError("augment.cutmix_prob > 0 and train.frame_loss_weight > 0 exclude each other (CutMix "
                              "moves sounds without their frame targets); set one to 0")


# (section, key) -> (low, high, low excluded, high excluded); None: no bound.  Optional keys may also be null.
RANGES: dict[tuple[str, str], tuple[float | None, float | None, bool, bool]] = {
    ("model", "extra_transformer_blocks"): (0, None, False, False),
    ("model", "drop_path_rate"): (0.0, 1.0, False, True),
    ("model", "sample_rate"): (1000, 384000, False, False),
    ("data", "fold"): (1, None, False, False),
    ("data", "val_fraction"): (0.0, 1.0, False, True),
    ("data", "clip_seconds"): (0.0, None, True, False),
    ("data", "eval_seconds"): (0.0, None, True, False),
    ("data", "num_workers"): (0, 1024, False, False),
    ("sampling", "epoch_size"): (1, None, False, False),
    ("augment", "gain_db"): (0.0, None, False, False),
    ("augment", "time_shift"): (0.0, None, False, False),
    ("augment", "source_speed"): (0.0, 1.0, False, False),
    ("augment", "source_eq_db"): (0.0, 24.0, False, False),
    ("augment", "source_reverb"): (0.0, 3.0, False, False),
    ("augment", "mixup_alpha"): (0.0, None, True, False),
    ("augment", "mixup_prob"): (0.0, 1.0, False, False),
    ("augment", "cutmix_prob"): (0.0, 1.0, False, False),
    ("augment", "cutmix_alpha"): (0.0, None, True, False),
    ("optim", "lr"): (0.0, None, True, False),
    ("optim", "eps"): (0.0, None, True, False),
    ("optim", "weight_decay"): (0.0, None, False, False),
    ("optim", "warmup_steps"): (0, None, False, False),
    ("optim", "min_lr_ratio"): (0.0, 1.0, False, False),
    ("optim", "grad_clip"): (0.0, None, True, False),
    ("optim", "accumulate"): (1, None, False, False),
    ("train", "epochs"): (1, None, False, False),
    ("train", "batch_size"): (1, None, False, False),
    ("train", "frame_loss_weight"): (0.0, None, False, False),
    ("train", "ema_decay"): (0.0, 1.0, True, True),
    ("train", "seed"): (0, 2**32 - 1, False, False),
    ("train", "threads"): (1, 1024, False, False),
    ("train", "eval_every_epochs"): (1, None, False, False),
    ("train", "eval_batch_size"): (1, None, False, False),
    ("train", "checkpoint_every"): (1, None, False, False),
    ("train", "log_every"): (1, None, False, False),
    ("train", "stop_after_steps"): (1, None, False, False),
}


def _check_range(key: str, value: Any, low, high, low_open: bool, high_open: bool) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(f"{key} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(f"{key} must be {'<' if high_open else '<='} {high}, got {value}")


def _check_device(value: str) -> None:
    """train.device names a device (auto, cpu, cuda, cuda:N); whether it is there is checked when training starts."""
    if value == "auto":
        return
    import torch

    try:
        torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"train.device: {value!r} is not a device (auto, cpu, cuda or cuda:N)") from None


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
        out = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                pass
        if out is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(out):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return out
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
    unknown = sorted((str(k) for k in set(data) - names))  # YAML keys may be numbers or null
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
        if not all(parts):
            raise ConfigError(f"override {ov!r}: {key.strip()!r} is not a section.key name")
        node = data
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {p} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {ov!r}: the value is not valid YAML ({' '.join(str(e).split())})") from None
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, raw: dict | None = None) -> Config:
    """Read a YAML file (and/or a raw mapping), apply overrides, check keys and types."""
    data: dict = {}
    where = ""
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            line = path.read_bytes()[: e.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                              "a config is a YAML text file") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the config ({e.strerror or e})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{at}: not valid YAML ({' '.join(str(e).split())})") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config is a mapping of sections (model:, data:, train:, ...), got "
                              f"{type(data).__name__}")
        where = f"{path}: "
    if raw:
        import copy

        data = {**data, **copy.deepcopy(raw)}
    apply_overrides(data, overrides or [])
    cfg = _build(Config, data, "", where)
    try:
        return cfg.validate()
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None
