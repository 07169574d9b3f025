"""Parity with the official VMamba code (MzeroMiko/VMamba), checked against committed fixtures.

Each fixture in ``fixtures/official_vmamba/`` holds an official-format state dict, input images and the logits the
official model computed for them in float64 (see that folder's README.md).  No official code is needed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audiomamba.models import vmamba as vmamba_mod
from audiomamba.models.vmamba import VMamba, VMambaConfig

safetensors_torch = pytest.importorskip("safetensors.torch")

FIXTURES = Path(__file__).parents[1] / "fixtures" / "official_vmamba"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def _load(name: str):
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    tensors = safetensors_torch.load_file(str(FIXTURES / f"{name}.safetensors"))
    prefix = "state_dict."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    cases = [(tensors[f"images_{i}"], tensors[f"logits_{i}"]) for i in range(2)]
    return meta, state, cases


def _build(meta: dict, state: dict, dtype: torch.dtype) -> VMamba:
    c = meta["config"]
    cfg = VMambaConfig(
        depths=tuple(c["depths"]),
        dim=c["dim"],
        d_state=c["d_state"],
        ssm_ratio=c["ssm_ratio"],
        mlp_ratio=c["mlp_ratio"],
        version=c["version"],
        drop_path_rate=c["drop_path_rate"],
    )
    model = VMamba(cfg, in_chans=meta["in_chans"], num_classes=meta["num_classes"]).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    return model.eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_fixtures_present():
    assert len(NAMES) >= 2, f"official VMamba fixtures missing from {FIXTURES}"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_format_matches_official(name):
    meta, state, _ = _load(name)
    model = _build(meta, state, torch.float32)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    official = {k: tuple(v.shape) for k, v in state.items()}
    assert ours == official


@pytest.mark.parametrize("name", NAMES)
def test_float32_logits_match_official(name):
    meta, state, cases = _load(name)
    model = _build(meta, state, torch.float32)
    for images, logits in cases:
        with torch.no_grad():
            out = model(images.float())
        assert out.shape == logits.shape
        assert _rel(out, logits) < 1e-4, f"{name} {tuple(images.shape)}: rel err {_rel(out, logits):.3e}"


@pytest.mark.parametrize("name", NAMES)
def test_float64_logits_match_official(name, monkeypatch):
    """In float64 with the sequential reference scan, our model reproduces the official float64 logits to ~1e-10."""
    original = vmamba_mod.cross_selective_scan

    def ref_scan(*args, **kwargs):
        kwargs["backend"] = "ref"
        return original(*args, **kwargs)

    monkeypatch.setattr(vmamba_mod, "cross_selective_scan", ref_scan)
    meta, state, cases = _load(name)
    model = _build(meta, state, torch.float64)
    for images, logits in cases:
        with torch.no_grad():
            out = model(images.double())
        assert out.dtype == torch.float64
        assert _rel(out, logits) < 1e-10, f"{name} {tuple(images.shape)}: rel err {_rel(out, logits):.3e}"
