"""Models: VMamba backbones and classifiers, Audio Mamba taggers, the registry and checkpoint loading."""

from audiomamba.models.audiomamba import AudioMamba, AudioMambaOutput, mean_over_shifts, steps_to_frames
from audiomamba.models.registry import UnknownModelError, create_model, list_models
from audiomamba.models.vmamba import VMamba, VMambaConfig

__all__ = ["AudioMamba", "AudioMambaOutput", "VMamba", "VMambaConfig", "create_model", "list_models",
           "UnknownModelError", "mean_over_shifts", "steps_to_frames"]
