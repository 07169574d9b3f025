"""The one table of scan backends: what "auto" picks, export mode, named backends, the low-rank delta."""

import pytest
import torch

from audiomamba.ops import (
    available_backends,
    cross_selective_scan,
    expand_delta,
    export_mode,
    exporting,
    resolve_backend,
    selective_scan,
)


def _plain(gen):
    u = torch.randn(1, 4, 12, generator=gen)
    A = -torch.rand(4, 3, generator=gen) - 0.1
    return u, torch.randn(1, 4, 12, generator=gen) - 1, A, torch.randn(1, 2, 3, 12, generator=gen), torch.randn(1, 2, 3, 12, generator=gen)


def _cross(gen, b=2, e=3, n=4, h=5, w=6, r=2):
    x = torch.randn(b, e, h, w, generator=gen)
    factors = torch.randn(b, 4, r, h, w, generator=gen)
    delta_proj = torch.randn(4, e, r, generator=gen)
    A = -torch.rand(4 * e, n, generator=gen) * 3
    B, C = torch.randn(b, 4, n, h, w, generator=gen), torch.randn(b, 4, n, h, w, generator=gen)
    D, bias = torch.randn(4 * e, generator=gen), torch.randn(4 * e, generator=gen)
    return x, factors, delta_proj, A, B, C, D, bias


def test_table_lists_every_backend():
    assert set(available_backends()) == {"triton", "cpu", "blocked", "torch", "ref"}
    assert available_backends().index("triton") < available_backends().index("torch")  # preference order


def test_auto_on_cpu_tensors():
    gen = torch.Generator().manual_seed(0)
    u, delta, A, B, C = _plain(gen)
    assert resolve_backend("auto", u, delta, A, B, C).name == "torch"  # 1D: "cpu" has no 1D scan
    x, factors, proj, A4, B4, C4, D, bias = _cross(gen)
    delta4 = expand_delta(factors, proj)
    fused = "cpu" if _numba() else "torch"
    with torch.no_grad():
        assert resolve_backend("auto", x, delta4, A4, B4, C4, D, bias, cross=True).name == fused
    x.requires_grad_(True)
    assert resolve_backend("auto", x, delta4, A4, B4, C4, D, bias, cross=True).name == "torch"  # a gradient


def test_export_mode_picks_blocked_and_the_fused_kernels_step_aside():
    gen = torch.Generator().manual_seed(1)
    u, delta, A, B, C = _plain(gen)
    x, factors, proj, A4, B4, C4, D, bias = _cross(gen)
    assert not exporting()
    with export_mode(), torch.no_grad():
        assert exporting()
        assert resolve_backend("auto", u, delta, A, B, C).name == "blocked"
        assert resolve_backend("auto", x, factors, A4, B4, C4, D, bias, cross=True, delta_proj=proj).name == "blocked"
        assert resolve_backend("torch", u, delta, A, B, C).name == "torch"  # a named backend stays as named
    assert not exporting()


def test_named_backends_and_their_errors():
    gen = torch.Generator().manual_seed(2)
    u, delta, A, B, C = _plain(gen)
    with pytest.raises(ValueError, match="unknown selective-scan backend 'nope'"):
        selective_scan(u, delta, A, B, C, backend="nope")
    with pytest.raises(ValueError, match="cross_selective_scan"):
        selective_scan(u, delta, A, B, C, backend="cpu")  # the fused CPU kernel has no 1D scan
    with pytest.raises(ValueError, match="backend='triton' needs the triton package and CUDA tensors"):
        selective_scan(u, delta, A, B, C, backend="triton")  # CPU tensors
    x, factors, proj, A4, B4, C4, D, bias = _cross(gen)
    with pytest.raises(ValueError, match="backend='triton' needs"):
        cross_selective_scan(x, expand_delta(factors, proj), A4, B4, C4, D, bias, backend="triton")
    with pytest.raises(ValueError, match="unknown selective-scan backend"):
        cross_selective_scan(x, expand_delta(factors, proj), A4, B4, C4, D, bias, backend="nope")


@pytest.mark.parametrize("backend", ["auto", "torch", "blocked", "ref", "cpu"])
def test_low_rank_delta_is_the_expanded_delta(backend):
    """``delta_proj``: delta given as rank-R factors is the same scan as the expanded delta, whether the backend
    projects the factors itself (the fused CPU kernel) or gets them expanded."""
    if backend == "cpu" and not _numba():
        pytest.skip("numba is not installed")
    gen = torch.Generator().manual_seed(3)
    x, factors, proj, A, B, C, D, bias = _cross(gen)
    with torch.no_grad():
        full = cross_selective_scan(x, expand_delta(factors, proj), A, B, C, D, bias, backend="torch")
        low = cross_selective_scan(x, factors, A, B, C, D, bias, backend=backend, delta_proj=proj)
    assert ((low - full).norm() / full.norm()) < 1e-5


def test_fused_cpu_kernel_reads_ss2d_rows_in_place_or_copies():
    """B, C and the delta factors as adjacent slices of one (B, H, W, 4, R + 2N) projection (SS2D's layout) are
    read in place; as separate tensors they are copied into such rows: the same result."""
    if not _numba():
        pytest.skip("numba is not installed")
    from audiomamba.ops import scan_cpu

    gen = torch.Generator().manual_seed(4)
    b, e, n, h, w, r = 1, 64, 16, 3, 5, 4  # batch 1: size-1 dimensions' strides must not matter
    x, factors, proj, A, B, C, D, bias = _cross(gen, b, e, n, h, w, r)
    rows = torch.cat([t.permute(0, 3, 4, 1, 2) for t in (factors, B, C)], dim=-1)  # (B, H, W, 4, R + 2N)
    grid = [rows[..., s].permute(0, 3, 4, 1, 2) for s in (slice(0, r), slice(r, r + n), slice(r + n, None))]
    assert scan_cpu.token_rows(*grid).data_ptr() == rows.data_ptr()
    assert torch.equal(scan_cpu.token_rows(factors, B, C), rows)
    assert not torch.equal(scan_cpu.token_rows(grid[0], grid[2], grid[1]), rows)  # B and C swapped: a copy
    with torch.no_grad():
        in_place = cross_selective_scan(x, grid[0], A, grid[1], grid[2], D, bias, backend="cpu", delta_proj=proj)
        copied = cross_selective_scan(x, factors, A, B, C, D, bias, backend="cpu", delta_proj=proj)
    torch.testing.assert_close(in_place, copied, rtol=0, atol=0)


def _numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True
