"""Model registry in the manner of timm: one config per variant, ``create_model(name, **overrides)``."""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from audiomamba.errors import UnknownModelError
from audiomamba.models.audiomamba import AudioMamba
from audiomamba.models.vmamba import VMAMBA_CONFIGS, VMamba, VMambaConfig



@dataclass(frozen=True)
class AudioMambaVariant:
    backbone: VMambaConfig
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


# Audio Mamba sizes. nano/micro follow Audio Mamba (Lin & Hu, 2024; dims 48/64, vanilla SS2D); micro_v2 is micro's
# width with VMamba's v2 block (d_state 1, ssm_ratio 1, an MLP per block), the design of tiny_v2 at 0.42x its
# parameters, small enough to ship in float16 (< 30 MB); the others reuse the ImageNet configurations so that the
# official checkpoints initialise them.
AUDIOMAMBA_VARIANTS: dict[str, AudioMambaVariant] = {
    "audiomamba_nano": AudioMambaVariant(VMambaConfig((2, 2, 2, 2), 48, 16, 2.0, 0.0, "v0", 0.1), "dim 48, depths 2-2-2-2, vanilla SS2D"),
    "audiomamba_micro": AudioMambaVariant(VMambaConfig((2, 2, 9, 2), 64, 16, 2.0, 0.0, "v0", 0.1), "dim 64, depths 2-2-9-2, vanilla SS2D"),
    "audiomamba_micro_v2": AudioMambaVariant(VMambaConfig((2, 2, 8, 2), 64, 1, 1.0, 4.0, "v2", 0.1),
                                             "dim 64, depths 2-2-8-2, VMamba-v2 SS2D (d_state 1) with MLPs"),
    "audiomamba_tiny": AudioMambaVariant(VMAMBA_CONFIGS["vmamba_tiny_v0"], "VMamba vanilla-tiny backbone (the paper's)"),
    "audiomamba_tiny_v2": AudioMambaVariant(VMAMBA_CONFIGS["vmamba_tiny_s1l8"], "VMamba tiny s1l8 backbone"),
    "audiomamba_small": AudioMambaVariant(VMAMBA_CONFIGS["vmamba_small_v0"], "VMamba vanilla-small backbone"),
    "audiomamba_base": AudioMambaVariant(VMAMBA_CONFIGS["vmamba_base_v0"], "VMamba vanilla-base backbone"),
}


def list_models(pattern: str | None = None) -> list[str]:
    """All registered model names, optionally filtered by a shell-style ``pattern`` (e.g. ``"audiomamba_*"``)."""
    names = sorted(VMAMBA_CONFIGS) + sorted(AUDIOMAMBA_VARIANTS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def _check_overrides(name: str, fn, overrides: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    allowed = set(inspect.signature(fn).parameters) - {"self", "cfg", "backbone"} | set(extra)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {unknown}; accepted: {sorted(allowed)}")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model.

    ``vmamba_*`` (ImageNet classifiers): overrides ``in_chans``, ``num_classes``, ``drop_path_rate``.
    ``audiomamba_*``: overrides ``num_classes``, ``head``, ``layout``, ``extra_transformer_blocks``,
    ``drop_path_rate``, ``sample_rate``, ``spec_augment``, and ``pretrained_backbone=PATH`` (an official
    ImageNet VMamba checkpoint) with ``stem_adapt="mean"|"sum"``.
    The built model carries ``model.config = {"name": ..., "args": {...}}``, enough to rebuild it.
    """
    if name in VMAMBA_CONFIGS:
        _check_overrides(name, VMamba.__init__, overrides)
        model = VMamba(VMAMBA_CONFIGS[name], **overrides)
    elif name in AUDIOMAMBA_VARIANTS:
        from audiomamba.models.pretrained import init_backbone_from_imagenet

        _check_overrides(name, AudioMamba.__init__, overrides, ("pretrained_backbone", "stem_adapt"))
        variant = AUDIOMAMBA_VARIANTS[name]
        pretrained = overrides.pop("pretrained_backbone", None)
        stem_adapt = overrides.pop("stem_adapt", "mean")
        args = {**variant.defaults, **overrides}
        args.setdefault("drop_path_rate", variant.backbone.drop_path_rate)
        model = AudioMamba(variant.backbone, **args)
        if pretrained is not None:
            model.pretrained_report = init_backbone_from_imagenet(model, pretrained, stem_adapt=stem_adapt)
        overrides = args
    else:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model.config = {"name": name, "args": dict(overrides)}
    return model
