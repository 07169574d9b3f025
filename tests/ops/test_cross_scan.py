"""Cross-scan orders, the merge (its adjoint), and SS2D's core against a per-direction reference."""

import pytest
import torch

from audiomamba.ops import cross_merge, cross_scan, cross_scan_k, cross_selective_scan, selective_scan_ref


def test_scan_orders():
    h, w = 3, 5
    x = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    xs = cross_scan(x)[0, :, 0]
    row_major = [r * w + c for r in range(h) for c in range(w)]
    col_major = [r * w + c for c in range(w) for r in range(h)]
    assert xs[0].tolist() == row_major
    assert xs[1].tolist() == col_major
    assert xs[2].tolist() == row_major[::-1]
    assert xs[3].tolist() == col_major[::-1]


def test_cross_scan_k_reads_each_direction_from_its_own_map():
    x = torch.randn(2, 4, 3, 5, 7)
    out = cross_scan_k(x)
    for k in range(4):
        torch.testing.assert_close(out[:, k], cross_scan(x[:, k])[:, k])


def test_merge_is_adjoint_and_round_trip():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    y = torch.randn(2, 4, 3, 35, dtype=torch.float64)
    torch.testing.assert_close((cross_scan(x) * y).sum(), (x * cross_merge(y, 5, 7)).sum())
    torch.testing.assert_close(cross_merge(cross_scan(x), 5, 7), 4 * x)


def test_cross_selective_scan_matches_direction_by_direction_reference():
    b, e, n, h, w = 2, 3, 4, 5, 6
    g = torch.Generator().manual_seed(3)
    x = torch.randn(b, e, h, w, generator=g, dtype=torch.float64)
    delta = torch.randn(b, 4, e, h, w, generator=g, dtype=torch.float64) - 1
    B = torch.randn(b, 4, n, h, w, generator=g, dtype=torch.float64)
    C = torch.randn(b, 4, n, h, w, generator=g, dtype=torch.float64)
    A = -torch.rand(4 * e, n, generator=g, dtype=torch.float64) * 3
    D = torch.randn(4 * e, generator=g, dtype=torch.float64)
    bias = torch.randn(4 * e, generator=g, dtype=torch.float64)
    out = cross_selective_scan(x.float(), delta.float(), A.float(), B.float(), C.float(), D.float(), bias.float())

    # Reference: build each direction's sequence by explicit index lists, scan it alone, scatter back.
    expected = torch.zeros(b, e, h * w, dtype=torch.float64)
    orders = [[r * w + c for r in range(h) for c in range(w)], [r * w + c for c in range(w) for r in range(h)]]
    orders += [o[::-1] for o in orders]
    for k, order in enumerate(orders):
        idx = torch.tensor(order)
        sl = slice(k * e, (k + 1) * e)
        y = selective_scan_ref(
            x.flatten(2)[..., idx], delta[:, k].flatten(2)[..., idx], A[sl],
            B[:, k : k + 1].flatten(3)[..., idx], C[:, k : k + 1].flatten(3)[..., idx], D[sl], bias[sl],
        )
        expected[..., idx] += y
    rel = (out.double().flatten(2) - expected).norm() / expected.norm()
    assert rel < 2e-6


def test_fused_cpu_kernel_matches_torch_path():
    pytest.importorskip("numba")
    g = torch.Generator().manual_seed(5)
    for b, e, n, h, w in [(2, 3, 16, 5, 7), (1, 4, 1, 8, 3), (3, 2, 5, 1, 9)]:
        x = torch.randn(b, e, h, w, generator=g)
        delta = torch.randn(b, 4, e, h, w, generator=g) - 1
        B = torch.randn(b, 4, n, h, w, generator=g)
        C = torch.randn(b, 4, n, h, w, generator=g)
        A = -torch.rand(4 * e, n, generator=g) * 3
        D, bias = torch.randn(4 * e, generator=g), torch.randn(4 * e, generator=g)
        with torch.no_grad():
            # D as a Parameter, as the model passes it: the kernel must still accept it
            fused = cross_selective_scan(x, delta, A, B, C, torch.nn.Parameter(D), bias, backend="cpu")
            plain = cross_selective_scan(x, delta, A, B, C, D, bias, backend="torch")
            # without softplus (delta kept positive so that the states decay)
            fused_lin = cross_selective_scan(x, delta.abs(), A, B, C, D, bias.abs(), False, backend="cpu")
            plain_lin = cross_selective_scan(x, delta.abs(), A, B, C, D, bias.abs(), False, backend="torch")
        assert ((fused - plain).norm() / plain.norm()) < 1e-5
        assert ((fused_lin - plain_lin).norm() / plain_lin.norm()) < 1e-5
    with pytest.raises(ValueError, match="no gradient"):
        cross_selective_scan(x.requires_grad_(), delta, A, B, C, D, bias, backend="cpu")


def test_cpu_kernel_exp_and_softplus_are_float32_accurate():
    numba = pytest.importorskip("numba")
    import numpy as np

    from audiomamba.ops import scan_cpu

    @numba.njit
    def apply(f, a):
        out = np.empty_like(a)
        for i in range(a.shape[0]):
            out[i] = f(a[i])
        return out

    z = np.linspace(-126, 0, 200_001, dtype=np.float32)
    got = apply(scan_cpu.exp2_f32, z).astype(np.float64)
    want = np.exp2(z.astype(np.float64))
    assert np.max(np.abs(got - want) / want) < 3e-7
    assert apply(scan_cpu.exp2_f32, np.array([-1e4, -200.0], np.float32)).max() < 2e-38  # clamped, not garbage
    x = np.linspace(-80, 80, 200_001, dtype=np.float32)
    got = apply(scan_cpu.softplus_f32, x).astype(np.float64)
    want = np.logaddexp(0.0, x.astype(np.float64))
    err = np.abs(got - want)
    # for x < 0 the float32 rounding of x log2(e) (~6e-8 |x|) dominates the relative error
    assert np.max(err[x > -2] / want[x > -2]) < 3e-7
    assert np.max(err / want) < 1e-5


@pytest.mark.parametrize(
    "d_model, d_state, use_z, hw",
    [(64, 16, True, (3, 4)), (48, 16, True, (4, 9)), (40, 16, True, (3, 5)), (32, 1, False, (2, 7))],
)
def test_ss2d_fused_cpu_path_matches_torch_path(d_model, d_state, use_z, hw):
    """SS2D's CPU inference path (channels-last, dt projection inside the numba kernel) against the plain path.
    With batch 2 the kernel's channel blocks are 128, 96, 32 (80 channels padded to 96) and 64."""
    pytest.importorskip("numba")
    from audiomamba.models.vmamba import SS2D

    torch.manual_seed(0)
    m = SS2D(d_model, d_state, use_z=use_z, conv_bias=use_z).eval()
    with torch.no_grad():
        m.dt_projs_bias.add_(torch.randn_like(m.dt_projs_bias) * 3)  # deltas from ~0 to beyond softplus's linear range
        m.A_logs.add_(torch.randn_like(m.A_logs))
        x = torch.randn(2, *hw, d_model)
        fused = m(x)
        plain = m(x, scan_backend="torch")
    assert ((fused - plain).norm() / plain.norm()) < 1e-5
