"""Cross-scan orders, the merge (its adjoint), and SS2D's core against a per-direction reference."""

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
