"""Every compile-time variant of the Triton kernels passes Triton's compiler front end for an H100 (sm_90).

The interpreter (which runs the kernels' numerics on CPU in the other tests) accepts code the compiler rejects:
a helper returning 32-bit offsets on one constexpr branch and 64-bit ones on the other ran under the
interpreter but failed to compile on the GPU (found 2026-11-25).  The front end needs no GPU, so this test runs
it for each variant in a subprocess (``@triton.jit`` picks interpreter or compiler once per process, and the
other test modules turn the interpreter on).
"""

import itertools
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")


def _variants():
    """(kernel name, constexprs, num_warps) for every flag combination the launchers can pick."""
    from audiomamba.ops import layer_norm_triton as ln
    from audiomamba.ops import scan_triton as st

    out = []
    # every (EVEN, I64, CROSS) for d_state 1 (B and C preloaded per chunk) and 16 (loaded per step)
    for n in (1, 16):
        for even, i64, cross in itertools.product((False, True), repeat=3):
            flags = dict(N=n, CROSS=cross, SOFTPLUS=True, HAS_D=True, HAS_BIAS=True, EVEN=even, I64=i64)
            out.append((st._scan_fwd_kernel, dict(flags, BLOCK_E=64, SAVE=True), 2))
            out.append((st._scan_bwd_kernel, dict(flags, BLOCK_E=32), 1))
    out.append((st._sum4_kernel, dict(BLOCK=1024), 4))
    for c in (96, 1000):
        bm, bc, warps = ln._blocks(c)
        for affine in (False, True):
            out.append((ln._ln_fwd_kernel, dict(BLOCK_M=bm, BLOCK_C=bc, HAS_W=affine, HAS_B=affine), warps))
            out.append((ln._ln_bwd_kernel, dict(BLOCK_M=bm, BLOCK_C=bc, HAS_W=affine), warps))
    return out


def _compile_all() -> None:
    """Triton's front end (Python AST -> TTIR, where type errors such as inconsistent returns are raised) for
    every variant, for sm_90.  The backend passes (TTGIR, LLVM, ptxas) are left out: they take minutes per
    variant on a 2-core CI machine, and the kernels' launches on the GPU exercise them."""
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import compiler

    try:  # Triton internals (stable from 3.3 to 3.9): the first stage of triton.compile, on its own
        from triton._C.libtriton import ir

        target = GPUTarget("cuda", 90, 32)
        backend = compiler.make_backend(target)
    except (ImportError, AttributeError) as exc:
        print(f"skip: {exc!r}")
        return
    for fn, const, warps in _variants():
        names = list(inspect.signature(fn.fn).parameters)
        ptr = lambda n: "*bf16" if n in ("x_ptr", "d_ptr", "y_ptr", "dy_ptr") else "*fp32"  # noqa: E731
        sig = {n: "constexpr" if n in const else ptr(n) if n.endswith("_ptr") else ("fp32" if n == "eps" else "i32")
               for n in names}
        options = backend.parse_options({"num_warps": warps})
        context = ir.context()
        ir.load_dialects(context)
        backend.load_dialects(context)
        src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=const)
        src.make_ir(target, options, backend.get_codegen_implementation(options), backend.get_module_map(), context)
        print(f"ok {fn.fn.__name__} {const}", flush=True)


def test_every_kernel_variant_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    if proc.stdout.startswith("skip: "):
        pytest.skip(f"this Triton's internal compile stages differ: {proc.stdout.strip()}")
    assert proc.stdout.count("ok ") == len(_variants())


if __name__ == "__main__":
    _compile_all()
