"""ScanConfig: the scan knobs, set for a block by scan_config, read by the backends; the segments rule."""

import pytest
import torch

from audiomamba.ops import ScanConfig, get_scan_config, plan_segments, scan_config, selective_scan_ref, selective_scan_torch


def test_scan_config_is_scoped_and_restored():
    default = get_scan_config()
    assert default == ScanConfig()
    with scan_config(segments=4) as outer:
        assert get_scan_config() is outer and outer.segments == 4
        with scan_config(triton_fwd_warps=4):
            assert get_scan_config() == ScanConfig(segments=4, triton_fwd_warps=4)  # changes stack
        with scan_config(ScanConfig(torch_block=8)):
            assert get_scan_config() == ScanConfig(torch_block=8)  # a whole config replaces
        assert get_scan_config() is outer
    assert get_scan_config() == default
    with pytest.raises(RuntimeError), scan_config(segments=2):
        raise RuntimeError("left on an error")
    assert get_scan_config() == default


def test_scan_config_refuses_bad_values():
    with pytest.raises(TypeError):
        with scan_config(no_such_knob=1):
            pass
    for bad in (dict(segments=0), dict(torch_block=0), dict(cpu_blocks=()), dict(cpu_blocks=((0, 4),))):
        with pytest.raises(ValueError):
            ScanConfig(**bad)
    with pytest.raises(Exception):  # frozen
        ScanConfig().segments = 2


def test_segments_rule():
    """``segments=None``: long streams of few walks (a batch of one long file) are split until about
    ``segment_walkers`` walks run; a full batch is not split; a segment keeps ``min_segment_chunks`` chunks."""
    cfg = ScanConfig(segments=None)
    target, min_chunks = cfg.segment_walkers, cfg.min_segment_chunks
    assert plan_segments(target, 10**6, cfg) == 1
    assert plan_segments(target // 64, 10**6, cfg) == 64
    assert plan_segments(target // 64 - 1, 10**6, cfg) == 65  # rounded up
    assert plan_segments(1, 10 * min_chunks, cfg) == 10
    assert plan_segments(1, min_chunks - 1, cfg) == 1
    with scan_config(segments=8):  # a fixed count, at most one segment per chunk
        assert plan_segments(target, 10**6) == 8 and plan_segments(1, 5) == 5
    assert plan_segments(target // 64, 10**6) == 64  # the default is the rule


def test_torch_scan_is_exact_whatever_its_knobs():
    """The PyTorch scan's block and chunk size come from the config; any of them gives the reference's result."""
    g = torch.Generator().manual_seed(0)
    u, delta = torch.randn(1, 4, 50, generator=g, dtype=torch.float64), torch.randn(1, 4, 50, generator=g, dtype=torch.float64)
    A = -torch.rand(4, 3, generator=g, dtype=torch.float64) - 0.1
    B, C = torch.randn(1, 2, 3, 50, generator=g, dtype=torch.float64), torch.randn(1, 2, 3, 50, generator=g, dtype=torch.float64)
    ref = selective_scan_ref(u, delta, A, B, C)
    for knobs in (dict(torch_block=4, torch_chunk_elements=1), dict(torch_block=64)):
        with scan_config(**knobs):
            out = selective_scan_torch(u.float(), delta.float(), A.float(), B.float(), C.float())
        assert ((out.double() - ref).norm() / ref.norm()) < 2e-6, knobs
