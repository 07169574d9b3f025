"""The Triton LayerNorm against torch.nn.functional.layer_norm in float64: outputs, dx, dweight, dbias.

On a machine with CUDA these run on the GPU; without, under Triton's interpreter (``TRITON_INTERPRET=1``).
"""

import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from audiomamba.models.layers import LayerNorm  # noqa: E402
from audiomamba.ops import layer_norm  # noqa: E402
from audiomamba.ops.triton import layer_norm as lnt  # noqa: E402

GPU = torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"
if not GPU and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA and TRITON_INTERPRET is not 1", allow_module_level=True)

TOL = {torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.isfinite(a).all()
    return float((a - b).norm() / b.norm())


def _case(shape, affine, gen):
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 1.5  # an offset mean: cancellation matters
    c = shape[-1]
    w = torch.randn(c, generator=gen, dtype=torch.float64) if affine else None
    b = torch.randn(c, generator=gen, dtype=torch.float64) if affine else None
    dy = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, w, b, dy


def _run(fn, x, w, b, dy):
    leaves = [None if t is None else t.detach().clone().requires_grad_(True) for t in (x, w, b)]
    y = fn(*leaves)
    y.backward(dy.to(y.dtype))
    return y.detach(), [None if t is None else t.grad for t in leaves]


# (shape, affine): C a power of two or not, rows not a multiple of the block, one row, 3-d and 4-d inputs
CASES = [((5, 96), True), ((3, 7, 48), True), ((2, 3, 4, 130), False), ((1, 1000), True), ((700, 24), True)]


@pytest.mark.parametrize("shape,affine", CASES, ids=str)
@pytest.mark.parametrize("dtype,out_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                             (torch.float32, torch.bfloat16), (torch.float16, torch.float32)],
                         ids=str)
def test_forward_and_grads_match_pytorch(shape, affine, dtype, out_dtype):
    gen = torch.Generator().manual_seed(hash(shape) % 1000)
    x, w, b, dy = _case(shape, affine, gen)
    xd = x.to(DEV, dtype)  # the reference sees the same rounded input and output gradient
    dy = dy.to(out_dtype).double()
    ref_y, ref_g = _run(lambda x, w, b: F.layer_norm(x, (shape[-1],), w, b, 1e-5), xd.double().cpu(), w, b, dy)
    wd, bd = (None if t is None else t.to(DEV, torch.float32) for t in (w, b))
    y, g = _run(lambda x, w, b: lnt.layer_norm_triton(x, w, b, 1e-5, out_dtype), xd, wd, bd, dy.to(DEV))
    assert y.dtype == out_dtype and y.shape == x.shape
    assert _rel(y, ref_y) < TOL[out_dtype]
    assert g[0].dtype == dtype
    assert _rel(g[0], ref_g[0]) < TOL[dtype] * 2
    for name, a, r in zip(("weight", "bias"), g[1:], ref_g[1:]):
        if r is None:
            assert a is None
        else:
            assert a.dtype == torch.float32 and _rel(a, r) < 1e-5, name


def test_backward_sums_across_programs():
    """More row blocks than programs: each program loops over several blocks and the column sums of dweight and
    dbias are folded across programs."""
    gen = torch.Generator().manual_seed(3)
    rows = lnt.row_blocks(96)[0] * (lnt.backward_programs(torch.device(DEV)) * 2 + 3)
    x, w, b, dy = _case((rows, 96), True, gen)
    ref_y, ref_g = _run(lambda x, w, b: F.layer_norm(x, (96,), w, b, 1e-5), x, w, b, dy)
    y, g = _run(lambda x, w, b: lnt.layer_norm_triton(x, w, b, 1e-5, torch.float32),
                *(t.to(DEV, torch.float32) for t in (x, w, b)), dy.to(DEV))
    assert _rel(y, ref_y) < 1e-6
    for a, r in zip(g, ref_g):
        assert _rel(a, r) < 1e-5


def test_strided_rows_are_read_in_place_and_permuted_inputs_copied():
    gen = torch.Generator().manual_seed(4)
    wide = torch.randn(6, 5, 80, generator=gen).to(DEV)
    w, b = torch.randn(48, generator=gen).to(DEV), torch.randn(48, generator=gen).to(DEV)
    for x in (wide[..., :48], wide[..., :48].transpose(0, 1)):  # gapped rows; rows that cannot be flattened
        y = lnt.layer_norm_triton(x, w, b, 1e-6, torch.float32)
        assert _rel(y, F.layer_norm(x.double(), (48,), w.double(), b.double(), 1e-6)) < 2e-6


def test_unsupported_inputs_fall_back():
    wide = torch.randn(2, lnt.MAX_CHANNELS + 1)
    assert not lnt.supports(wide, None, None)
    assert not lnt.supports(torch.randn(2, 8, dtype=torch.float64), None, None)
    assert not lnt.supports(torch.randn(0, 8), None, None)
    # the public function takes the PyTorch path for them (and on CPU) and is right
    x = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(layer_norm(x, None, None, 1e-5), F.layer_norm(x, (8,), eps=1e-5))
    assert layer_norm(x, None, None, 1e-5, torch.float32).dtype == torch.float32


def test_module_keeps_layernorm_names_and_cpu_results():
    torch.manual_seed(0)
    ref = torch.nn.LayerNorm(24)
    torch.nn.init.normal_(ref.weight)
    mod = LayerNorm(24, cast_output=True)
    mod.load_state_dict(ref.state_dict(), strict=True)
    assert list(mod.state_dict()) == ["weight", "bias"] and "cast_output=True" in repr(mod)
    x = torch.randn(4, 5, 24)
    torch.testing.assert_close(mod(x), ref(x), rtol=0, atol=0)


@pytest.mark.skipif(not GPU, reason="the module's Triton dispatch and autocast output dtype need CUDA")
def test_module_on_cuda_follows_autocast():
    torch.manual_seed(1)
    ref = torch.nn.LayerNorm(96).cuda()
    torch.nn.init.normal_(ref.weight)
    torch.nn.init.normal_(ref.bias)
    cast, plain = LayerNorm(96, cast_output=True).cuda(), LayerNorm(96).cuda()
    cast.load_state_dict(ref.state_dict())
    plain.load_state_dict(ref.state_dict())
    x = torch.randn(64, 32, 32, 96, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        r, yc, yp = ref(x), cast(x), plain(x)
    assert r.dtype == torch.float32 and yp.dtype == torch.float32 and yc.dtype == torch.bfloat16
    assert _rel(yp, r) < 2e-6 and _rel(yc, r) < 1e-2
    assert _rel(plain(x), ref(x)) < 2e-6
