"""Static cost of the Triton scan kernels without a GPU: compile for sm_90 (H100) with Triton's bundled ptxas and
report registers, local-memory spills, SASS instructions per element, shuffles and the blocked layout chosen.

    TRITON_INTERPRET= PYTHONPATH=src python bench/dev/sass_stats.py [--warps 1,2] [--state 1] [--save]

The forward is issue-bound (docs/kernels.md, "Roofline"), so instructions per element (one thread's channel
and step; the loop body dominates the static count) is the proxy this reports.  Static counts alone do not
predict time: timing needs the GPU (bench/dev/scan_sweep.py).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget

from audiomamba.ops.triton import scan as scan_triton
from audiomamba.ops.triton import scan_kernels

BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
PTRS = {f"{n}_ptr": "*bf16" for n in ("x", "d", "B", "C", "y", "dy", "du", "dd")}


def compile_stats(fn, const: dict, warps: int) -> dict:
    names = list(inspect.signature(fn.fn).parameters)
    sig = {n: ("constexpr" if n in const else PTRS.get(n, "*fp32" if n.endswith("_ptr") else "i32")) for n in names}
    # as at a real launch: every pointer specialised as 16-byte aligned, integers as the kernel's
    # do_not_specialize list leaves them (the scan kernels specialise none)
    free = set(getattr(fn, "do_not_specialize", ()) or ())
    free |= {names[i] for i in free if isinstance(i, int)}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n not in const and n not in free}
    k = triton.compile(triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        res = subprocess.run([f"{BIN}/cuobjdump", "-res-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([f"{BIN}/nvdisasm", "-c", f.name], capture_output=True, text=True).stdout
    layout = re.search(r"sizePerThread = \[[^\]]*\], threadsPerWarp = \[[^\]]*\]", k.asm["ttgir"])
    return {"regs": int(re.search(r"REG:(\d+)", res).group(1)), "local": int(re.search(r"LOCAL:(\d+)", res).group(1)),
            "sass": len(re.findall(r"/\*[0-9a-f]{4,}\*/", sass)), "shfl": sass.count("SHFL"),
            "layout": layout.group(0) if layout else "?"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warps", default="1,2")
    ap.add_argument("--state", type=int, default=1)
    ap.add_argument("--save", action="store_true", help="forward with the chunk states saved (training)")
    args = ap.parse_args()
    n = args.state
    for kernel, name in ((scan_kernels.scan_fwd_kernel, "fwd"), (scan_kernels.scan_bwd_kernel, "bwd")):
        for warps in (int(w) for w in args.warps.split(",")):
            be = 32 * warps
            const = dict(N=n, BLOCK_E=be, CROSS=True, SOFTPLUS=True, HAS_D=True, HAS_BIAS=True, EVEN=True, I64=False)
            if name == "fwd":
                const.update(SAVE=args.save, SUMMARY=False)
            else:  # as the launcher picks it
                const.update(WARP_RED=scan_triton.warp_reduce(n))
            st = compile_stats(kernel, const, warps)
            # one loop body serves the four directions (backward ones walk negated strides): a chunk of CHUNK steps
            per_thread = scan_kernels.CHUNK
            print(f"{name} N {n} warps {warps}: regs {st['regs']} local {st['local']} sass {st['sass']} "
                  f"shfl {st['shfl']} -> {st['sass'] / per_thread:.0f} instr/element (upper bound); {st['layout']}",
                  flush=True)


if __name__ == "__main__":
    main()
