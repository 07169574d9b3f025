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
    """All registered model names, optionally filtered by a shell-style ``pattern`` (e.g. ``"audiomamba_*"``).
    The timm peers (:mod:`audiomamba.models.peers`) are listed only where timm is installed."""
    from audiomamba.models.peers import PEERS, timm_available

    has_timm = timm_available()
    peers = sorted(n for n, (_, needs_timm, _) in PEERS.items() if has_timm or not needs_timm)
    names = sorted(VMAMBA_CONFIGS) + sorted(AUDIOMAMBA_VARIANTS) + peers
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def model_description(name: str) -> str:
    """One line describing a registered model (for ``audiomamba models``)."""
    from audiomamba.models.peers import PEERS

    if name in AUDIOMAMBA_VARIANTS:
        return AUDIOMAMBA_VARIANTS[name].description
    if name in PEERS:
        return PEERS[name][2]
    if name in VMAMBA_CONFIGS:
        return "ImageNet-1K classifier (official layout)"
    raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")


def _peers() -> dict:
    from audiomamba.models.peers import PEERS

    return PEERS


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
    Peers (``swin_t_htsat_like``, ``vit_b_ast_like``, ``cnn14_panns_like``; :mod:`audiomamba.models.peers`): the
    same arguments but the ImageNet ones, plus their own (e.g. the CNN's ``dropout``).
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
    elif name in _peers():
        cls = _peers()[name][0]
        _check_overrides(name, cls.__init__, overrides)
        model = cls(**overrides)
    else:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model.config = {"name": name, "args": dict(overrides)}
    return model
