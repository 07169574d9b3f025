"""Where the host's time goes in one eager forward (and training step) of a model: cProfile, sorted by own time.
The eager batch-64 numbers are host-bound (bench/dev/ab_models.sh prints host enqueue vs device time).

    PYTHONPATH=src python3 bench/dev/host_profile.py [--model audiomamba_tiny_v2] [--rows 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import torch

import audiomamba


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="audiomamba_tiny_v2")
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args()
    m = audiomamba.create_model(args.model, num_classes=527).cuda()
    spec = torch.randn(64, 1001, 64, device="cuda")

    def infer():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            m.forward_head(*m.forward_features(spec), spec.shape[1])

    def train():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m.forward_head(*m.forward_features(spec), spec.shape[1])
        out.logits.float().sum().backward()

    for name, fn, mode in (("inference", infer, m.eval), ("training step", train, m.train)):
        mode()
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(3):
            fn()
        prof.disable()
        torch.cuda.synchronize()
        print(f"== {name} (3 calls)")
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.rows)


if __name__ == "__main__":
    main()
