"""CUDA-graph inference (audiomamba.utils.cuda_graphs, Tagger(cuda_graph=True)) against the eager path.

GPU only, but for the batch padding rule: CUDA graphs have no CPU counterpart.  The CPU suite checks that asking for
them without CUDA is refused (tests/inference/test_tagger.py, tests/cli/test_tag.py)."""

import numpy as np
import pytest
import torch

import audiomamba
from audiomamba import Tagger
from audiomamba.utils.cuda_graphs import GraphedInference, graph_rows

from conftest import SR, noise

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


@pytest.mark.parametrize("rows, limit, padded", [(1, 64, 1), (2, 64, 8), (8, 64, 8), (9, 64, 64), (64, 64, 64),
                                                 (3, 4, 4), (9, 48, 48), (65, 512, 512), (1, 1, 1)])
def test_graph_rows_pads_to_the_next_power_of_eight_within_the_limit(rows, limit, padded):
    assert graph_rows(rows, limit) == padded


@pytest.mark.parametrize("rows, limit", [(0, 8), (9, 8)])
def test_graph_rows_refuses_rows_outside_the_batch(rows, limit):
    with pytest.raises(ValueError, match="rows must be in"):
        graph_rows(rows, limit)


def _fn(w):
    def fn(x):
        h = torch.tanh(x @ w)
        return h.sum(-1), None, h * 2

    return fn


@gpu
def test_replays_match_eager_and_results_are_not_overwritten():
    w = torch.randn(16, 8, device="cuda")
    g = GraphedInference(_fn(w), max_graphs=2)
    xs = [torch.randn(4, 16, device="cuda") for _ in range(4)]
    outs = [g(x) for x in xs]
    assert (g.captures, g.replays) == (1, 3)  # the first call of a shape runs eagerly, the second captures
    for x, (a, none, b) in zip(xs, outs):  # the earlier results survive the later replays
        ra, _, rb = _fn(w)(x)
        assert none is None
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(b, rb)
    w.mul_(-1)  # a graph reads the tensors it captured where they live: weights updated in place are seen
    torch.testing.assert_close(g(xs[0])[0], _fn(w)(xs[0])[0])


@gpu
def test_one_graph_per_shape_and_variant_least_recently_used_dropped():
    w = torch.randn(16, 8, device="cuda")
    g = GraphedInference(_fn(w), max_graphs=2)
    shapes = [(2, 16), (3, 16), (2, 16), (3, 16), (5, 16), (5, 16), (2, 16)]
    for s in shapes:
        x = torch.randn(*s, device="cuda")
        torch.testing.assert_close(g(x)[2], _fn(w)(x)[2])
    assert sorted(k[0] for k in g._graphs) == [(2, 16), (5, 16)]  # (3, 16) was the least recently used
    g(torch.randn(2, 16, device="cuda"), variant="other")
    assert g.captures == 4  # 2, 3, 5, then 2 again after eviction; a new variant first runs eagerly
    with pytest.raises(ValueError, match="not a CUDA device"):
        g(torch.randn(2, 16))


@gpu
def test_graphs_share_one_memory_pool_and_replay_in_any_order():
    """All graphs draw from one pool: replays of other shapes in any order, and captures after them, leave every
    result the caller holds as eager computes it."""
    w = torch.randn(16, 8, device="cuda")
    g = GraphedInference(_fn(w))
    rows = [2, 3, 5, 3, 2, 5, 7, 2, 7, 5, 3, 7]  # each shape's second call captures; the rest replay
    xs = [torch.randn(r, 16, device="cuda") for r in rows]
    outs = [g(x) for x in xs]
    assert (g.captures, g.replays) == (4, 8)
    assert len({graph.graph.pool() for graph in g._graphs.values()}) == 1
    for x, (a, _, b) in zip(xs, outs):
        ra, _, rb = _fn(w)(x)
        torch.testing.assert_close(a, ra)
        torch.testing.assert_close(b, rb)


@gpu
@pytest.mark.parametrize("mode, dtype", [("windowed", torch.float32), ("native", torch.float32), ("windowed", torch.bfloat16)])
def test_tagger_with_cuda_graph_matches_eager(mode, dtype):
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=5, layout="native").cuda()
    eager = Tagger(model, mode=mode, dtype=dtype, window_s=1.0, hop_s=0.5, chunk_s=2.0, chunk_overlap_s=0.4, batch_size=3)
    graphed = Tagger(model, mode=mode, dtype=dtype, window_s=1.0, hop_s=0.5, chunk_s=2.0, chunk_overlap_s=0.4,
                     batch_size=3, cuda_graph=True)
    # 6.3 s: windowed, 12 windows = 4 batches of 3 (the graph is captured at the second); native, 5 chunks
    waves = [noise(6.3, seed=1), noise(6.3, seed=2), noise(1.7, seed=3)]
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    for wave in waves:
        a = eager.detect(wave, sample_rate=SR, threshold=0.5)
        b = graphed.detect(wave, sample_rate=SR, threshold=0.5)
        np.testing.assert_allclose(b.scores, a.scores, **tol)
        np.testing.assert_allclose(b.framewise, a.framewise, **tol)
        np.testing.assert_allclose(graphed.embed(wave, sample_rate=SR), eager.embed(wave, sample_rate=SR), **tol)
    assert graphed.cuda_graphs.captures >= 1 and graphed.cuda_graphs.replays >= 3


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_files_on_one_grid_replayed_from_a_graph_match_eager(tmp_path, dtype):
    """Files of different lengths that the model pads to the same grid length share a batch and, on CUDA, a graph;
    finer steps, so that each file's framewise output comes from its own steps."""
    import soundfile as sf

    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=5, layout="native", step_frames=8).cuda()
    paths = []
    for i, s in enumerate([3.0, 3.1, 3.19, 3.0, 3.1, 3.19, 3.05]):  # all pad to 320 frames
        paths.append(tmp_path / f"f{i}.wav")
        sf.write(paths[-1], noise(s, seed=i), SR, subtype="FLOAT")
    eager = Tagger(model, dtype=dtype, batch_size=4)
    graphed = Tagger(model, dtype=dtype, batch_size=4, cuda_graph=True)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    for _ in range(2):  # the second round replays the graph captured in the first
        got = list(graphed.tag_files(paths, batch_size=8, events=True, threshold=0.5))
        for p, b in zip(paths, got):
            a = eager.detect(p, threshold=0.5)
            np.testing.assert_allclose(b.scores, a.scores, **tol)
            np.testing.assert_allclose(b.framewise, a.framewise, **tol)
    assert graphed.cuda_graphs.replays >= 1
    assert {key[0][0] for key in graphed.cuda_graphs._graphs} <= {1, 4}  # batches padded by graph_rows
