"""audiomamba: Audio Mamba (VMamba SS2D state-space backbones) for audio tagging and sound event detection."""

__version__ = "0.1.0"

from audiomamba.models import AudioMamba, AudioMambaOutput, VMamba, create_model, list_models  # noqa: E402
from audiomamba.checkpoint import load, save_model  # noqa: E402
from audiomamba.inference import Event, Tagger, TagResult  # noqa: E402
from audiomamba import _compat  # noqa: E402,F401  (old module paths, deprecated)

__all__ = [
    "__version__",
    "create_model",
    "list_models",
    "load",
    "save_model",
    "Tagger",
    "TagResult",
    "Event",
    "AudioMamba",
    "AudioMambaOutput",
    "VMamba",
]
