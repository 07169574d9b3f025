"""Selective scan: the chunked PyTorch scan against the float64 sequential reference."""

import pytest
import torch

from audiomamba.ops import selective_scan, selective_scan_ref, selective_scan_torch


def make_inputs(batch, groups, e, state, length, dtype=torch.float64, decay_scale=1.0, requires_grad=False):
    c = groups * e
    g = torch.Generator().manual_seed(1000 * length + state)
    t = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    inputs = dict(
        u=t(batch, c, length),
        delta=t(batch, c, length) * 0.5 - 1.0,
        A=-(torch.rand(c, state, generator=g, dtype=dtype) * 4 + 0.1) * decay_scale,
        B=t(batch, groups, state, length),
        C=t(batch, groups, state, length),
        D=t(c),
        delta_bias=t(c) * 0.3,
    )
    if requires_grad:
        for v in inputs.values():
            v.requires_grad_(True)
    return inputs


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize(
    "batch,groups,e,state,length,chunk",
    [(1, 4, 3, 16, 37, 16), (2, 4, 5, 1, 100, 32), (3, 2, 4, 7, 129, 128), (1, 1, 2, 16, 1, 8), (2, 4, 2, 4, 257, 64)],
)
def test_torch_scan_matches_reference(batch, groups, e, state, length, chunk):
    x = make_inputs(batch, groups, e, state, length)
    ref = selective_scan_ref(**x)
    out = selective_scan_torch(**{k: v.float() for k, v in x.items()}, block=min(16, chunk), chunk=chunk)
    assert out.dtype == torch.float32 and out.shape == (batch, groups * e, length)
    assert rel_err(out, ref) < 2e-6


def test_reference_is_the_recurrence():
    # One channel, one state, by hand: h1 = d1 b1 u1; h2 = exp(d2 a) h1 + d2 b2 u2; y = c h + D u.
    u = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    d = torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    A = torch.tensor([[-2.0]], dtype=torch.float64)
    B = torch.tensor([[[[3.0, -1.0]]]], dtype=torch.float64)
    C = torch.tensor([[[[2.0, 4.0]]]], dtype=torch.float64)
    D = torch.tensor([0.1], dtype=torch.float64)
    y = selective_scan_ref(u, d, A, B, C, D, delta_softplus=False)
    h1 = 0.5 * 3.0 * 1.0
    h2 = torch.exp(torch.tensor(0.25 * -2.0)).item() * h1 + 0.25 * -1.0 * 2.0
    torch.testing.assert_close(y, torch.tensor([[[2 * h1 + 0.1, 4 * h2 + 0.2]]], dtype=torch.float64))


@pytest.mark.parametrize("decay_scale", [3.0, 40.0])
def test_strong_decay_stays_exact_with_finite_gradients(decay_scale):
    # Blocks decaying by tens to hundreds of nats: near the float32 limits of exp(+-E), or forcing smaller blocks.
    x64 = make_inputs(2, 4, 3, 16, 200, decay_scale=decay_scale, requires_grad=True)
    x32 = {k: v.detach().float().requires_grad_(True) for k, v in x64.items()}
    ref = selective_scan_ref(**x64)
    out = selective_scan_torch(**x32, block=64, chunk=128)
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < 2e-6
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w.float()).sum().backward()
    for k in x64:
        assert torch.isfinite(x32[k].grad).all(), k
        assert rel_err(x32[k].grad, x64[k].grad) < 1e-4, k


@pytest.mark.parametrize("state,length", [(16, 45), (1, 70)])
def test_torch_scan_gradients_match_reference(state, length):
    x64 = make_inputs(2, 4, 3, state, length, requires_grad=True)
    x32 = {k: v.detach().float().requires_grad_(True) for k, v in x64.items()}
    w = torch.randn(2, 12, length, dtype=torch.float64)
    (selective_scan_ref(**x64) * w).sum().backward()
    (selective_scan_torch(**x32, block=4, chunk=16) * w.float()).sum().backward()
    for k in x64:
        assert rel_err(x32[k].grad, x64[k].grad) < 1e-5, k


def test_low_precision_inputs_keep_float32_state():
    x = make_inputs(1, 4, 4, 16, 300)
    ref = selective_scan_ref(**x)
    out = selective_scan_torch(**{k: v.bfloat16() if k in ("u", "delta", "B", "C") else v.float() for k, v in x.items()})
    assert out.dtype == torch.bfloat16
    # Only the inputs and the output are rounded to bf16; the recurrence itself runs in float32.
    assert rel_err(out, ref) < 2e-2


def test_dispatch_and_errors():
    x = {k: v.float() for k, v in make_inputs(1, 4, 2, 4, 20).items()}
    torch.testing.assert_close(selective_scan(**x, backend="ref"), selective_scan(**x, backend="torch"), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        selective_scan(**x, backend="nope")
    bad = dict(x, B=x["B"][..., :-1])
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**bad)
    with pytest.raises(ValueError, match="groups"):
        selective_scan(**dict(x, B=x["B"][:, :3], C=x["C"][:, :3]))
