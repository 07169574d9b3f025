"""Every compile-time variant of the Triton kernels passes Triton's compiler front end for Hopper (sm_90), and
the variants the models launch compile all the way to machine code (ptxas included).

The interpreter (which runs the kernels' numerics on CPU in the other tests) accepts code the compiler rejects:
a helper returning 32-bit offsets on one constexpr branch and 64-bit ones on the other ran under the
interpreter but failed to compile for the GPU.  Neither stage needs a GPU, so these tests run
them in a subprocess (``@triton.jit`` picks interpreter or compiler once per process, and the other test modules
turn the interpreter on).
"""

import itertools
import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")


def _variants():
    """(kernel name, constexprs, num_warps) for every flag combination the launchers can pick."""
    from audiomamba.ops.triton import layer_norm as ln
    from audiomamba.ops.triton import layer_norm_kernels as lnk
    from audiomamba.ops.triton import scan_kernels as sk

    out = []
    # every (EVEN, I64, CROSS) for d_state 1 (B and C preloaded per chunk) and 16 (loaded per step)
    for n in (1, 16):
        for even, i64, cross in itertools.product((False, True), repeat=3):
            flags = dict(N=n, CROSS=cross, SOFTPLUS=True, HAS_D=True, HAS_BIAS=True, EVEN=even, I64=i64)
            out.append((sk.scan_fwd_kernel, dict(flags, BLOCK_E=64, SAVE=True, SUMMARY=False), 2))
            out.append((sk.scan_fwd_kernel, dict(flags, BLOCK_E=64, SAVE=False, SUMMARY=True), 2))
            out.append((sk.scan_bwd_kernel, dict(flags, BLOCK_E=32, WARP_RED=False), 1))
            if n > 4:  # the warp reduce-scatter of the B / C gradients (compiled kernels with 4 < N <= 16)
                out.append((sk.scan_bwd_kernel, dict(flags, BLOCK_E=32, WARP_RED=True), 1))
    out.append((sk.sum4_kernel, dict(BLOCK=1024), 4))
    for c in (96, 1000):
        bm, bc, warps = ln.row_blocks(c)
        for affine in (False, True):
            out.append((lnk.ln_fwd_kernel, dict(BLOCK_M=bm, BLOCK_C=bc, HAS_W=affine, HAS_B=affine), warps))
            out.append((lnk.ln_bwd_kernel, dict(BLOCK_M=bm, BLOCK_C=bc, HAS_W=affine), warps))
    return out


def _model_variants():
    """The scan variants a d_state-1 model (tiny_v2) launches: forward (inference, training) and backward, with
    and without masks."""
    from audiomamba.ops.triton import scan_kernels as sk

    out = []
    for even in (False, True):
        flags = dict(N=1, CROSS=True, SOFTPLUS=True, HAS_D=True, HAS_BIAS=True, EVEN=even, I64=False)
        out += [(sk.scan_fwd_kernel, dict(flags, BLOCK_E=64, SAVE=save, SUMMARY=False), 2) for save in (False, True)]
        out.append((sk.scan_bwd_kernel, dict(flags, BLOCK_E=32, WARP_RED=False), 1))
    return out


def _compile_all(full: bool) -> None:
    """For sm_90: Triton's front end (Python AST -> TTIR, where type errors such as inconsistent returns are
    raised) for every variant, or (``full``) the whole pipeline to a cubin for the models' variants.  The full
    pipeline of a d_state-16 backward takes about a minute on a 2-core machine (its unrolled states make
    Triton's coalescing pass slow), so d_state 16 gets the front end only."""
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
    for fn, const, warps in _model_variants() if full else _variants():
        names = list(inspect.signature(fn.fn).parameters)
        ptr = lambda n: "*bf16" if n in ("x_ptr", "d_ptr", "y_ptr", "dy_ptr") else "*fp32"  # noqa: E731
        sig = {n: "constexpr" if n in const else ptr(n) if n.endswith("_ptr") else ("fp32" if n == "eps" else "i32")
               for n in names}
        src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=const)
        if full:
            kernel = triton.compile(src, target=target, options={"num_warps": warps})
            assert kernel.asm["cubin"], "no machine code"
        else:
            options = backend.parse_options({"num_warps": warps})
            context = ir.context()
            ir.load_dialects(context)
            backend.load_dialects(context)
            src.make_ir(target, options, backend.get_codegen_implementation(options), backend.get_module_map(),
                        context)
        print(f"ok {fn.fn.__name__} {const}", flush=True)


def _run(full: bool, expected: int, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile afresh, and leave the user's cache alone
    args = [sys.executable, __file__] + (["--full"] if full else [])
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    if proc.stdout.startswith("skip: "):
        pytest.skip(f"this Triton's internal compile stages differ: {proc.stdout.strip()}")
    assert proc.stdout.count("ok ") == expected


def test_every_kernel_variant_compiles_for_sm90(tmp_path):
    _run(False, len(_variants()), tmp_path)


def test_model_variants_compile_to_machine_code_for_sm90(tmp_path):
    _run(True, len(_model_variants()), tmp_path)


def _unspecialised_ints() -> None:
    """Print each scan kernel's integer arguments that Triton would specialise (none expected)."""
    import inspect

    from audiomamba.ops.triton import scan_kernels as sk

    for fn in (sk.scan_fwd_kernel, sk.scan_bwd_kernel):
        params = inspect.signature(fn.fn).parameters
        ints = {n for n, p in params.items() if not n.endswith("_ptr") and p.annotation is inspect.Parameter.empty}
        print(f"ok {fn.fn.__name__} {len(ints)} {sorted(ints - set(fn.do_not_specialize))}", flush=True)


def test_scan_kernels_specialise_no_integer_argument():
    """Sizes and strides are runtime values: otherwise each stage of a model (a stride of 1 or divisible by 16)
    compiles its own variant, seconds each, for the same code (bench/compile_time.py).  In a subprocess: under
    the interpreter (which other test modules turn on) the kernels carry no specialisation settings."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, __file__, "--ints"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.split("\n")
    for name in ("scan_fwd_kernel", "scan_bwd_kernel"):
        row = next(line.split(" ", 3) for line in lines if line.startswith(f"ok {name} "))
        assert int(row[2]) > 20 and row[3] == "[]", row


def _compile_time_module():
    """bench/compile_time.py, imported from its path (bench/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "compile_time.py"
    spec = importlib.util.spec_from_file_location("compile_time", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _split_variants() -> None:
    """bench/compile_time.py's variants of micro's native-layout stages, compiled whole and in 3 shares, with
    ``JITFunction.run`` faked to record a variant instead of compiling it: one JSON line per run."""
    from triton.runtime.jit import JITFunction

    from audiomamba.ops.triton import scan_kernels as sk

    ct = _compile_time_module()

    def record(self, *args, grid, warmup, **kw):
        key = (repr(sorted(kw.items())), tuple(str(a.dtype) for a in args if hasattr(a, "dtype")))
        self.device_caches[0][0].setdefault(key, None)

    JITFunction.run = record
    shapes = [(128, 16, 256, 16), (256, 8, 128, 16), (512, 4, 64, 16), (1024, 2, 32, 16)]
    for share in [(0, 1), (0, 3), (1, 3), (2, 3)]:
        for kern in (sk.scan_fwd_kernel, sk.scan_bwd_kernel, sk.sum4_kernel):
            kern.device_caches.clear()  # each share starts from an empty cache, as a fresh process does
        rows = ct.compile_variants(shapes, 128, "bf16", share)
        print("rows " + json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rows]), flush=True)


def test_compile_time_shares_split_the_variants_once_each():
    """``bench/compile_time.py --jobs 3`` (the GPU scripts' cache fill): the three processes together compile
    exactly the variants one process compiles, none twice, and each process gets some."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, __file__, "--split"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    whole, *shares = [json.loads(line[5:]) for line in proc.stdout.split("\n") if line.startswith("rows ")]
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    # the (un)masked forward with and without saved states and backward, the merge (the fake's keys have no
    # integer specialisation: the real compile makes two merge variants), and validation's float32 forward (masked
    # and not) and merge
    assert len(whole) == 10
    assert {r["EVEN"] for r in whole if r["kernel"] != "sum4_kernel"} == {True, False}
    fp32 = sorted((r["kernel"], r.get("EVEN"), r.get("SAVE")) for r in whole if r["dtype"] == "float32")
    assert fp32 == [("scan_fwd_kernel", False, False), ("scan_fwd_kernel", True, False), ("sum4_kernel", None, None)]
    assert all(shares) and sorted(key(r) for s in shares for r in s) == sorted(key(r) for r in whole)


def test_on_gpu_groups_cover_the_replayed_variants():
    """``--on-gpu`` runs one stage per variant group; the groups' masks are the launchers' EVEN flags of forward
    and backward (their channel blocks differ), and float32 joins only when validation's dtype differs from
    training's."""
    from audiomamba.ops.triton import scan as st

    ct = _compile_time_module()

    def even(e, h, w, kind):
        shape, block = (1, 4, e, h, w), st._config(kind)[0]
        return st._flags(torch.empty(4 * e, 16), None, None, True, True, shape, block, [torch.empty(1)])["EVEN"]

    micro = [(128, 16, 256, 16), (256, 8, 128, 16), (512, 4, 64, 16), (1024, 2, 32, 16)]  # native layout
    groups = ct.variant_groups(micro, "bf16")
    assert sorted(groups) == sorted((m, kind) for m in ((False, False), (True, True))
                                    for kind in ("train", "infer", "eval"))
    assert groups[((True, True), "train")] == micro[0] and groups[((False, False), "train")] == micro[2]
    assert sorted(ct.variant_groups(micro, "fp32")) == sorted((m, kind) for m in ((False, False), (True, True))
                                                              for kind in ("train", "infer"))
    # nano's 96 channels fill the backward's channel blocks, not the forward's: a group of its own
    nano = [(96, 64, 64, 16), (192, 32, 32, 16), (768, 8, 8, 16)]
    assert {m for m, _ in ct.variant_groups(nano, "bf16")} == {(False, True), (True, True)}
    for ((fwd, bwd), _), (e, h, w, _) in {**groups, **ct.variant_groups(nano, "bf16")}.items():
        assert (fwd, bwd) == (even(e, h, w, "fwd"), even(e, h, w, "bwd"))


if __name__ == "__main__":
    if "--ints" in sys.argv:
        _unspecialised_ints()
    elif "--split" in sys.argv:
        _split_variants()
    else:
        _compile_all(full="--full" in sys.argv)
