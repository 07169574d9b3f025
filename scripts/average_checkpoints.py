"""Average the weights of checkpoints fine-tuned from one starting point (a "model soup", Wortsman et al. 2022).

    python scripts/average_checkpoints.py --out SOUP.safetensors A.safetensors B.safetensors [C.safetensors ...]

Every input must describe the same model (name and arguments) and the same labels; floating-point tensors are
averaged in float32 and written in float32 whatever the inputs' dtype (a shipped float16 file may be one of them),
other tensors (counters such as batch norm's ``num_batches_tracked``) are the first input's.  Averaging only
makes sense for weights that share an initialisation (fine-tunes of one checkpoint); that is the caller's claim,
recorded in the soup's provenance together with each input's own provenance.  Errors name the file: one line,
exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from audiomamba.checkpoint import CheckpointError, load, read_meta, save_model


def average(paths: list[str]) -> torch.nn.Module:
    """The model of ``paths[0]`` holding the mean of all inputs' floating-point weights."""
    if len(paths) < 2:
        raise ValueError("give at least two checkpoints to average")
    first = load(paths[0])
    sums = {k: v.detach().to(torch.float32) if v.is_floating_point() else v.detach().clone()
            for k, v in first.state_dict().items()}
    for path in paths[1:]:  # one model in memory beside the first and the sums
        m = load(path)
        for key in ("model", "labels"):
            if m.meta[key] != first.meta[key]:
                raise ValueError(f"{path}: its {key} differ from those of {paths[0]}; only checkpoints of one model "
                                 "and one label set can be averaged")
        for k, v in m.state_dict().items():
            if v.is_floating_point():
                sums[k] += v.to(torch.float32)
    n = len(paths)
    first.load_state_dict({k: v / n if v.is_floating_point() else v for k, v in sums.items()})
    return first


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the averaged checkpoint (.safetensors)")
    ap.add_argument("checkpoints", nargs="+")
    a = ap.parse_args(argv)
    try:
        soup = average(a.checkpoints)
        meta = soup.meta
        provenance = {"averaged_from": [{"path": p, "provenance": read_meta(p).get("provenance", {})}
                                        for p in a.checkpoints]}
        save_model(soup, a.out, labels=meta["labels"], multi_label=meta.get("multi_label", True),
                   provenance=provenance)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.out}: the mean of {len(a.checkpoints)} checkpoints ({Path(a.out).stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
