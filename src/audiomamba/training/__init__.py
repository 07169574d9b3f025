"""Training: the typed configuration (``config``), AdamW groups, schedules and EMA (``optim``), the pieces of
one step (``step``), the resumable state ``last.pt`` (``state``) and the loop (``trainer``: :func:`train`)."""

from audiomamba.training.config import Config, ConfigError, load_config
from audiomamba.training.state import load_state
from audiomamba.training.step import LossLog
from audiomamba.training.trainer import Trainer, TrainResult, build_model, train

__all__ = ["train", "Trainer", "TrainResult", "build_model", "load_state", "LossLog", "Config", "ConfigError",
           "load_config"]
