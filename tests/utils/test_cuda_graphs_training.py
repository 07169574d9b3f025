"""CUDA-graph training (train.cuda_graph): the replayed forward and backward against the eager model.

The graph tests need a CUDA device (run on the GPU machine); the checks of what cannot be graphed run anywhere.
"""

import contextlib

import pytest
import torch

from audiomamba import create_model
from audiomamba.training.step import AudioMambaLogits, check_graphable
from audiomamba.utils.cuda_graphs import GraphedTraining
from conftest import toy_train_raw

SR = 16000
SMALL = "audiomamba_graph_test"  # tiny_v2's blocks (d_state 1), one per stage: its scan kernels compile fast
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def small_variant(monkeypatch):
    from audiomamba.models.registry import AUDIOMAMBA_VARIANTS, AudioMambaVariant
    from audiomamba.models.vmamba import VMambaConfig

    cfg = VMambaConfig((1, 1, 1, 1), 16, 1, 1.0, 2.0, "v2", 0.0)
    monkeypatch.setitem(AUDIOMAMBA_VARIANTS, SMALL, AudioMambaVariant(cfg, "test: dim 16, v2 blocks, d_state 1"))


def _model(**kw):
    torch.manual_seed(0)
    args = dict(num_classes=7, layout="native", sample_rate=SR, spec_augment=False, drop_path_rate=0.0)
    args.update(kw)
    return create_model(SMALL, **args).cuda().train()


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@cuda
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_graphed_step_matches_eager_with_accumulation(dtype):
    """Two micro-batches through the graph accumulate the same gradients as two eager ones; logits too; and
    capture leaves BatchNorm's running statistics as they were."""
    model = _model()
    waves = [torch.randn(3, SR, device="cuda") * 0.1 for _ in range(3)]
    target = torch.rand(3, 7, device="cuda")
    bn = {k: v.clone() for k, v in model.bn0.state_dict().items()}
    g = GraphedTraining(AudioMambaLogits(model), (waves[0],), dtype)
    for k, v in model.bn0.state_dict().items():
        assert torch.equal(v, bn[k]), k

    def run(forward):
        model.zero_grad(set_to_none=True)
        outs = []
        for w in waves[1:]:  # values other than the capture's example
            logits = forward(w).float()
            torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
            outs.append(logits.detach().clone())
        return outs, _grads(model), {k: v.clone() for k, v in model.bn0.state_dict().items()}

    bn_before = {k: v.clone() for k, v in model.bn0.state_dict().items()}
    graph_out, graph_grads, graph_bn = run(g)
    model.bn0.load_state_dict(bn_before)

    def eager(w):
        with torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext():
            return model(w).logits

    eager_out, eager_grads, eager_bn = run(eager)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype is None else dict(rtol=2e-2, atol=2e-3)
    for a, b in zip(graph_out, eager_out):
        torch.testing.assert_close(a, b, **tol)
    assert graph_grads.keys() == eager_grads.keys() and len(graph_grads) > 15
    for n in eager_grads:
        scale = eager_grads[n].abs().max().clamp_min(1e-6)
        err = (graph_grads[n] - eager_grads[n]).abs().max() / scale
        assert err < (1e-3 if dtype is None else 5e-2), (n, float(err))
    for k in eager_bn:  # the graph updates the running statistics like the eager forward
        torch.testing.assert_close(graph_bn[k], eager_bn[k], rtol=1e-5, atol=1e-6)


@cuda
def test_graph_draws_fresh_randomness_each_replay():
    """SpecAugment's masks come from the CUDA generator: each replay draws new ones (a frozen mask would repeat)."""
    model = _model(spec_augment=True)
    wave = torch.randn(2, SR, device="cuda") * 0.1
    g = GraphedTraining(AudioMambaLogits(model), (wave,))
    a, b = g(wave).detach().clone(), g(wave).detach().clone()
    assert not torch.equal(a, b)


@cuda
def test_capture_survives_another_thread_pinning_memory(monkeypatch):
    """A DataLoader's pin-memory thread allocates pinned blocks while the first batch is captured; in CUDA's
    global capture mode that invalidated the capture (an H200 run failed so); captures are thread-local now.

    Each capture, once begun, waits until another thread has allocated a pinned block while all earlier ones are
    still held (so the host allocator has no cached block to give and calls ``cudaHostAlloc``): every capture
    has one inside it."""
    import threading

    go, done, stop = threading.Event(), threading.Event(), threading.Event()
    held, failures = [], []
    begin = torch.cuda.CUDAGraph.capture_begin

    def capture_begin(self, *args, **kwargs):
        begin(self, *args, **kwargs)
        go.set()
        assert done.wait(timeout=30), "the pinning thread did not allocate"
        done.clear()

    def pin():
        while not stop.is_set():
            if not go.wait(timeout=0.1):
                continue
            go.clear()
            try:
                held.append(torch.empty(1 << 20, dtype=torch.uint8, pin_memory=True))
            except Exception as e:  # noqa: BLE001 - reported by the test below
                failures.append(repr(e))
            done.set()

    monkeypatch.setattr(torch.cuda.CUDAGraph, "capture_begin", capture_begin)
    t = threading.Thread(target=pin, daemon=True)
    t.start()
    try:
        for _ in range(3):
            model = _model()
            wave = torch.randn(2, SR, device="cuda") * 0.1
            g = GraphedTraining(AudioMambaLogits(model), (wave,))
            assert torch.isfinite(g(wave)).all()
    finally:
        stop.set()
        t.join()
    assert not failures, failures
    assert len(held) >= 6 and all(x.is_pinned() for x in held)  # forward and backward graph, three times


def test_graph_capture_mode_is_thread_local_inside_make_graphed_callables(monkeypatch):
    """make_graphed_callables opens torch.cuda.graph without a mode; GraphedTraining gives it the thread-local
    default for the call and restores torch.cuda.graph after it, also when the capture raises."""
    from audiomamba.utils import cuda_graphs

    seen = []

    class FakeGraph:
        def __init__(self, graph=None, **kw):
            seen.append(kw)

    def fake_make_graphed(module, sample_args, **kw):
        torch.cuda.graph("g", pool=None)
        raise RuntimeError("capture failed")

    monkeypatch.setattr(torch.cuda, "graph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_make_graphed)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    module = torch.nn.Linear(2, 2)  # on the CPU: its parameters are made to report a CUDA device
    monkeypatch.setattr(torch.nn.Parameter, "device", property(lambda self: torch.device("cuda", 0)), raising=False)
    with pytest.raises(RuntimeError, match="capture failed"):
        cuda_graphs.GraphedTraining(module, (torch.zeros(1, 2),))
    assert seen == [{"pool": None, "capture_error_mode": "thread_local"}]
    assert torch.cuda.graph is FakeGraph


@cuda
def test_graph_refuses_other_shapes_and_bad_modules():
    model = _model()
    wave = torch.randn(2, SR, device="cuda")
    g = GraphedTraining(AudioMambaLogits(model), (wave,))
    assert g.accepts(wave) and not g.accepts(wave[:1]) and not g.accepts(wave.double())
    with pytest.raises(ValueError, match="captured for inputs"):
        g(wave[:1])  # PyTorch's static-input copy would broadcast this batch of one silently
    with pytest.raises(ValueError, match="training mode"):
        GraphedTraining(AudioMambaLogits(_model()).eval(), (wave,))


@cuda
@pytest.mark.parametrize("frame_loss_weight", [0.0, 1.0], ids=["clip_loss", "frame_loss"])
def test_trainer_with_cuda_graph_matches_eager(tmp_path, frame_loss_weight):
    """train.cuda_graph trains to the same losses and weights as the eager trainer (fp32, accumulation 2); with
    the frame loss the graph returns the step logits too."""
    from safetensors.torch import load_file

    from audiomamba.soundscapes.toy import make_toy_dataset
    from audiomamba.training.config import load_config
    from audiomamba.training.trainer import train

    root = make_toy_dataset(tmp_path / "toy", {"train": 16}, seconds=0.5, sample_rate=SR)

    def cfg(out, graph):
        return load_config(raw=toy_train_raw(root, out, sample_rate=SR, model__name=SMALL, optim__lr=1e-3,
                                             optim__accumulate=2, train__epochs=2, train__device="cuda",
                                             train__cuda_graph=graph, train__frame_loss_weight=frame_loss_weight))

    eager = train(cfg(tmp_path / "eager", False))
    graph = train(cfg(tmp_path / "graph", True))
    assert eager["steps"] == graph["steps"] == 4
    assert graph["losses"] == pytest.approx(eager["losses"], rel=1e-4)
    a, b = load_file(tmp_path / "eager" / "final.safetensors"), load_file(tmp_path / "graph" / "final.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=2e-4), k


def test_fold_layout_long_clips_are_refused():
    """The fold layout crops clips longer than 1024 frames at a position drawn on the host: not graphable."""
    model = create_model("audiomamba_nano", num_classes=3, layout="fold")
    check_graphable(model, 10 * 32000)
    with pytest.raises(ValueError, match="train.cuda_graph"):
        check_graphable(model, 11 * 32000)
    check_graphable(create_model("audiomamba_nano", num_classes=3, layout="native"), 60 * 32000)
