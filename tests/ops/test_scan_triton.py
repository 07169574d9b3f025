"""Triton selective-scan kernels against the float64 reference: outputs and all seven gradients.

On a machine with CUDA and triton these run on the GPU.  Without CUDA they run under Triton's interpreter
(``TRITON_INTERPRET=1``, set here before triton is imported) on small shapes, so CI checks the kernels' logic
on CPU.  Skipped cleanly when triton is not installed.
"""

import contextlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
triton = pytest.importorskip("triton")

from audiomamba.ops import cross_selective_scan, scan_config, selective_scan, selective_scan_ref  # noqa: E402
from audiomamba.ops.triton import scan as scan_triton  # noqa: E402
from audiomamba.ops.cross_scan import cross_merge, cross_scan, cross_scan_k  # noqa: E402

GPU = torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"
if not GPU and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA and TRITON_INTERPRET is not 1", allow_module_level=True)


@pytest.fixture
def knobs():
    """``knobs(segments=3)`` sets scan knobs (:func:`audiomamba.ops.scan_config`) until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda **changes: stack.enter_context(scan_config(**changes))


def _rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.isfinite(a).all()
    return float((a - b).norm() / b.norm().clamp_min(1e-3))  # a zero reference (e.g. dA at L = 1): absolute


def _inputs(b, groups, e, n, length, gen, dtype=torch.float64):
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    u = r(b, groups * e, length)
    delta = r(b, groups * e, length) * 0.5 - 1.0
    A = -torch.rand(groups * e, n, generator=gen, dtype=torch.float64) * 2 - 0.1
    B, C = r(b, groups, n, length), r(b, groups, n, length)
    D, bias = r(groups * e), r(groups * e) * 0.5
    return u, delta, A, B, C, D, bias


def _cross_inputs(b, e, n, h, w, gen):
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    x = r(b, e, h, w)
    delta = r(b, 4, e, h, w) * 0.5 - 1.0
    A = -torch.rand(4 * e, n, generator=gen, dtype=torch.float64) * 2 - 0.1
    B, C = r(b, 4, n, h, w), r(b, 4, n, h, w)
    D, bias = r(4 * e), r(4 * e) * 0.5
    return x, delta, A, B, C, D, bias


def _cross_ref(x, delta, A, B, C, D, bias, softplus=True):
    b, e, h, w = x.shape
    xs = cross_scan(x).reshape(b, 4 * e, h * w)
    ds = cross_scan_k(delta).reshape(b, 4 * e, h * w)
    ys = selective_scan_ref(xs, ds, A, cross_scan_k(B), cross_scan_k(C), D, bias, softplus)
    return cross_merge(ys.view(b, 4, e, h * w), h, w)


def _grads(fn, tensors, gy):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    y = fn(*leaves)
    y.backward(gy.to(y.dtype))
    return y.detach(), [t.grad for t in leaves]


TOL_FWD = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}
TOL_BWD = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}

# (batch, groups, e, n, length): odd sizes, L not a power of two, N = 1 and 16, batch 1 and several
PLAIN = [(1, 1, 3, 1, 37), (2, 2, 3, 16, 21), (3, 2, 2, 4, 70), (1, 4, 3, 5, 1)]
CROSS = [(1, 3, 1, 5, 7), (2, 3, 16, 3, 5), (1, 2, 4, 7, 6), (3, 3, 2, 1, 1)]
if GPU:  # bigger, several chunks and channel blocks
    PLAIN += [(4, 4, 48, 16, 1000), (2, 4, 96, 1, 4097), (64, 1, 8, 2, 100)]
    CROSS += [(4, 96, 1, 33, 31), (2, 48, 16, 16, 65), (1, 40, 16, 16, 800), (8, 19, 3, 8, 8)]


@pytest.mark.parametrize("shape", PLAIN, ids=str)
@pytest.mark.parametrize("softplus", [True, False])
def test_plain_scan_forward_and_grads_fp32(shape, softplus):
    gen = torch.Generator().manual_seed(hash(shape) % 1000 + softplus)
    b, g, e, n, length = shape
    t64 = _inputs(b, g, e, n, length, gen)
    if not softplus:  # delta is used as is: keep delta + bias positive
        t64 = (t64[0], t64[1].abs() * 0.2, *t64[2:6], t64[6].abs() * 0.1)
    gy = torch.randn(b, g * e, length, generator=gen, dtype=torch.float64)
    ref_y, ref_g = _grads(lambda *a: selective_scan_ref(*a, delta_softplus=softplus), t64, gy)
    dev = [t.to(DEV, torch.float32) for t in t64]
    y, gr = _grads(lambda *a: scan_triton.selective_scan_triton(*a, delta_softplus=softplus), dev, gy.to(DEV))
    assert y.dtype == torch.float32
    assert _rel(y, ref_y) < TOL_FWD[torch.float32]
    for name, a, r in zip("u delta A B C D bias".split(), gr, ref_g):
        assert _rel(a, r) < TOL_BWD[torch.float32], name


@pytest.mark.parametrize("shape", CROSS, ids=str)
def test_cross_scan_forward_and_grads_fp32(shape):
    gen = torch.Generator().manual_seed(hash(shape) % 1000)
    b, e, n, h, w = shape
    t64 = _cross_inputs(b, e, n, h, w, gen)
    gy = torch.randn(b, e, h, w, generator=gen, dtype=torch.float64)
    ref_y, ref_g = _grads(_cross_ref, t64, gy)
    dev = [t.to(DEV, torch.float32) for t in t64]
    y, gr = _grads(scan_triton.cross_selective_scan_triton, dev, gy.to(DEV))
    assert y.shape == (b, e, h, w) and y.dtype == torch.float32
    assert _rel(y, ref_y) < TOL_FWD[torch.float32]
    for name, a, r in zip("x delta A B C D bias".split(), gr, ref_g):
        assert _rel(a, r) < TOL_BWD[torch.float32], name


@pytest.mark.parametrize("segments,n", [(3, 1), (1000, 3)])  # 1000: more segments than chunks (capped)
def test_segmented_forward_matches_reference(knobs, segments, n):
    """Streams split into segments (a summary pass, then each segment started from the carried state): outputs,
    and the gradients the backward computes from the chunk states the segmented forward saved."""
    knobs(segments=segments)
    gen = torch.Generator().manual_seed(segments + 10 * n)
    b, e, h, w = 1, 2, 5, 10  # rows: 5 lines of 2 chunks (padded); columns: 10 lines of 1 chunk
    t64 = _cross_inputs(b, e, n, h, w, gen)
    gy = torch.randn(b, e, h, w, generator=gen, dtype=torch.float64)
    ref_y, ref_g = _grads(_cross_ref, t64, gy)
    dev = [t.to(DEV, torch.float32) for t in t64]
    y, gr = _grads(scan_triton.cross_selective_scan_triton, dev, gy.to(DEV))
    assert _rel(y, ref_y) < TOL_FWD[torch.float32]
    for name, a, r in zip("x delta A B C D bias".split(), gr, ref_g):
        assert _rel(a, r) < TOL_BWD[torch.float32], name
    # plain mode: two groups, L = 30 (4 chunks, the last padded)
    u, delta, A, B, C, D, bias = _inputs(1, 2, 2, n, 30, gen)
    ref = selective_scan_ref(u, delta, A, B, C, D, bias, True)
    got = scan_triton.selective_scan_triton(*[t.to(DEV, torch.float32) for t in (u, delta, A, B, C, D, bias)])
    assert _rel(got, ref) < TOL_FWD[torch.float32]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cross_scan_half_inputs(dtype):
    gen = torch.Generator().manual_seed(7)
    b, e, n, h, w = (2, 3, 8, 5, 3) if not GPU else (4, 64, 16, 16, 33)
    t64 = _cross_inputs(b, e, n, h, w, gen)
    # the reference sees the same rounded inputs; parameters (A, D, bias) stay float32 as in SS2D
    rounded = [t.to(dtype).double() if i in (0, 1, 3, 4) else t.float().double() for i, t in enumerate(t64)]
    gy = torch.randn(b, e, h, w, generator=gen, dtype=torch.float64)
    ref_y, ref_g = _grads(_cross_ref, rounded, gy)
    dev = [t.to(DEV, dtype if i in (0, 1, 3, 4) else torch.float32) for i, t in enumerate(t64)]
    y, gr = _grads(scan_triton.cross_selective_scan_triton, dev, gy.to(DEV))
    assert y.dtype == dtype
    assert _rel(y, ref_y) < TOL_FWD[dtype]
    for name, a, r in zip("x delta A B C D bias".split(), gr, ref_g):
        assert _rel(a, r) < TOL_BWD[dtype], name


def test_non_contiguous_inputs_are_right():
    gen = torch.Generator().manual_seed(11)
    b, e, n, h, w = 2, 3, 2, 4, 5
    x, delta, A, B, C, D, bias = _cross_inputs(b, e, n, h, w, gen)
    ref = _cross_ref(x, delta, A, B, C, D, bias)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    dt = delta.to(DEV, torch.float32).transpose(3, 4).contiguous().transpose(3, 4)
    assert not xt.is_contiguous() and not dt.is_contiguous()
    y = scan_triton.cross_selective_scan_triton(
        xt.to(DEV, torch.float32), dt, *(t.to(DEV, torch.float32) for t in (A, B, C, D, bias))
    )
    assert _rel(y, ref) < 1e-5


@pytest.mark.parametrize("wide_offsets", [False, True])
def test_channels_last_model_layout(knobs, wide_offsets):
    """The layout SS2D passes on the GPU: x channels-last; delta, B and C strided slices of one projection output
    (B, H, W, 4 * E + 4 * 2N), so delta has unit channel stride and gaps between rows; whole channel blocks and
    chunks (the unmasked kernel variant).  ``wide_offsets`` forces the 64-bit offset variant used for tensors
    past 2^31 elements."""
    if wide_offsets:
        knobs(i64_span=1)
    gen = torch.Generator().manual_seed(13)
    b, e, n, h, w = 1, 64, 2, 8, 8
    x, delta, A, B, C, D, bias = _cross_inputs(b, e, n, h, w, gen)
    gy = torch.randn(b, e, h, w, generator=gen, dtype=torch.float64)
    ref_y, ref_g = _grads(_cross_ref, (x, delta, A, B, C, D, bias), gy)

    def run(x, delta, A, B, C, D, bias):
        xl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last
        bc = torch.cat([B, C], dim=2).permute(0, 3, 4, 1, 2)  # (B, H, W, 4, 2N)
        out = torch.cat([delta.permute(0, 3, 4, 1, 2).flatten(3), bc.flatten(3)], dim=-1)  # as F.linear makes it
        dl = out[..., : 4 * e].unflatten(-1, (4, e)).permute(0, 3, 4, 1, 2)
        bc = out[..., 4 * e:].unflatten(-1, (4, 2 * n))
        Bs, Cs = bc[..., :n].permute(0, 3, 4, 1, 2), bc[..., n:].permute(0, 3, 4, 1, 2)
        assert xl.stride(1) == 1 and dl.stride(2) == 1 and dl.stride(4) == 4 * (e + 2 * n) and not Bs.is_contiguous()
        y = scan_triton.cross_selective_scan_triton(xl, dl, A, Bs, Cs, D, bias)
        dl.register_hook(lambda g: strides.append(g.stride()))
        return y

    strides = []

    dev = [t.to(DEV, torch.float32) for t in (x, delta, A, B, C, D, bias)]
    y, gr = _grads(run, dev, gy.to(DEV))
    assert y.stride(1) == 1  # the output keeps x's channels-last layout (no copy for the next layer)
    assert strides == [(h * w * 4 * (e + 2 * n), e, 1, w * 4 * (e + 2 * n), 4 * (e + 2 * n))]  # written in place
    assert _rel(y, ref_y) < TOL_FWD[torch.float32]
    for name, a, r in zip("x delta A B C D bias".split(), gr, ref_g):
        assert _rel(a, r) < TOL_BWD[torch.float32], name


def test_optional_D_and_bias():
    gen = torch.Generator().manual_seed(5)
    u, delta, A, B, C, _, _ = _inputs(2, 2, 3, 4, 19, gen)
    ref = selective_scan_ref(u, delta, A, B, C, None, None, True)
    y = scan_triton.selective_scan_triton(*(t.to(DEV, torch.float32) for t in (u, delta, A, B, C)))
    assert _rel(y, ref) < 1e-5


def test_warp_reduce_is_for_compiled_kernels_with_4_to_16_states(monkeypatch):
    """The backward's warp reduce-scatter is PTX (shuffles): never under the CPU interpreter, whatever N; compiled,
    for 4 < N <= 16 only (N <= 4 keeps its per-chunk sums; the kernels take N <= 16)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not any(scan_triton.warp_reduce(n) for n in range(1, 17))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert [n for n in range(1, 18) if scan_triton.warp_reduce(n)] == list(range(5, 17))


def test_unsupported_inputs_are_refused_or_fall_back():
    gen = torch.Generator().manual_seed(2)
    x, delta, A, B, C, D, bias = (t.float() for t in _cross_inputs(1, 2, 17, 3, 4, gen))  # d_state 17
    with pytest.raises(ValueError):
        scan_triton.cross_selective_scan_triton(x, delta, A, B, C, D, bias)
    assert not scan_triton.supports(x.cpu(), delta, A, B, C, D, bias)  # CPU tensors
    assert not scan_triton.supports(
        x.double().flatten(2), x.double().flatten(2), A, B.flatten(3)[:, :1], C.flatten(3)[:, :1]
    )
    # auto on CPU (or an unsupported shape) takes the PyTorch path and is right
    y = cross_selective_scan(x, delta, A, B, C, D, bias, backend="auto")
    assert _rel(y, _cross_ref(*(t.double() for t in (x, delta, A, B, C, D, bias)))) < 1e-5
    if not GPU:
        with pytest.raises(ValueError):
            cross_selective_scan(x, delta, A, B, C, D, bias, backend="triton")


@pytest.mark.skipif(not GPU, reason="dispatch to the kernel needs CUDA tensors")
def test_auto_dispatch_uses_triton_on_cuda():
    gen = torch.Generator().manual_seed(4)
    t64 = _cross_inputs(2, 8, 4, 6, 7, gen)
    dev = [t.to("cuda", torch.float32) for t in t64]
    y_auto = cross_selective_scan(*dev, backend="auto")
    y_torch = cross_selective_scan(*dev, backend="torch")
    assert _rel(y_auto, y_torch.double()) < 1e-5
    u, delta, A, B, C, D, bias = (t.to("cuda", torch.float32) for t in _inputs(2, 4, 3, 16, 50, gen))
    assert _rel(selective_scan(u, delta, A, B, C, D, bias, backend="triton"),
                selective_scan(u, delta, A, B, C, D, bias, backend="torch").double()) < 1e-5


def test_custom_op_is_consistent_for_compile():
    """The scan is a torch.library custom op (one opaque node for torch.compile / CUDA graphs): its shape
    function, autograd registration and schema must agree with the kernel."""
    gen = torch.Generator().manual_seed(9)
    x, delta, A, B, C, D, bias = (t.to(DEV, torch.float32) for t in _cross_inputs(2, 3, 2, 4, 5, gen))
    for args in ((x, delta, A, B, C, D, bias, True, True, True), (x, delta, A, B, C, None, None, False, True, False)):
        torch.library.opcheck(scan_triton.selective_scan_fwd_op, args,
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    # the backward's shape function gives delta's gradient the strides of a gapped delta, as the kernel does
    gapped = torch.cat([delta, delta], dim=2)[:, :, :3]
    _, hs = scan_triton.selective_scan_fwd_op(x, gapped, A, B, C, D, bias, True, True, True)
    dy = torch.randn(x.shape, generator=gen).to(DEV)
    torch.library.opcheck(scan_triton.selective_scan_bwd_op, (dy, x, gapped, A, B, C, D, bias, hs, True, True),
                          test_utils=("test_schema", "test_faketensor"))
    grads = scan_triton.selective_scan_bwd_op(dy, x, gapped, A, B, C, D, bias, hs, True, True)
    assert grads[1].stride() == gapped.stride()


def test_compiled_path_matches_eager():
    """Eager calls go through an autograd.Function, compiled ones through the custom ops: same outputs and
    gradients (``aot_eager`` traces the custom op and its registered backward without a C++ compiler)."""
    gen = torch.Generator().manual_seed(11)
    tensors = [t.to(DEV, torch.float32) for t in _cross_inputs(2, 4, 2, 5, 3, gen)]
    gy = torch.randn(2, 4, 5, 3, generator=gen).to(DEV)
    fn = scan_triton.cross_selective_scan_triton
    y_e, g_e = _grads(fn, tensors, gy)
    y_c, g_c = _grads(torch.compile(fn, backend="aot_eager", fullgraph=True), tensors, gy)
    assert _rel(y_c, y_e) < 1e-6
    for name, a, b in zip("x delta A B C D bias".split(), g_c, g_e):
        assert _rel(a, b) < 1e-6, name
