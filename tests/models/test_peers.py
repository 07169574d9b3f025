"""Peer taggers (models/peers.py): the CNN here; the timm peers where timm is installed."""

import pytest
import torch

import audiomamba
from audiomamba.checkpoint import load, save_model
from audiomamba.models.peers import PEERS, timm_available
from audiomamba.models.registry import model_description
from audiomamba.training.step import AudioMambaLogits, check_graphable

SR = 32000
needs_timm = pytest.mark.skipif(not timm_available(), reason="timm is not installed")


def _small_cnn(**kw):
    return audiomamba.create_model("cnn14_panns_like", num_classes=5, layout="native", width=0.0625, **kw)


def test_cnn14_parameter_count_is_cnn14s():
    """PANNs' CNN14 has 80.8M parameters with its 527-class head (Kong et al. 2020); ours, with the token-semantic
    head, about as many, and with PANNs' own head within 0.5%."""
    with torch.device("meta"):
        tscam = audiomamba.create_model("cnn14_panns_like")
        panns = audiomamba.create_model("cnn14_panns_like", head="linear")
    n_panns = sum(p.numel() for p in panns.parameters())
    assert abs(n_panns / 80.8e6 - 1) < 0.005
    assert 75e6 < sum(p.numel() for p in tscam.parameters()) < 85e6


@pytest.mark.parametrize("head", ["tscam", "linear"])
def test_cnn_trains_like_audiomamba(head):
    """Same forward API as Audio Mamba: mixup weights, outputs, gradients for every parameter, the tensor-only
    forward that the CUDA-graph training records."""
    torch.manual_seed(0)
    model = _small_cnn(head=head, extra_transformer_blocks=1 if head == "tscam" else 0).train()
    wave = torch.randn(2, SR) * 0.1
    out = model(wave, mixup_lambda=torch.tensor([0.3, 0.7]), check_finite=False)
    assert out.logits.shape == (2, 5) and out.embedding.shape == (2, model.num_features)
    if head == "tscam":
        assert out.framewise_logits.shape == (2, 101, 5)
        # clip logits are the mean of the step logits over the valid steps
        assert torch.allclose(out.step_logits.mean(2), out.logits, atol=1e-5)
    else:
        assert out.framewise_logits is None
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, torch.rand(2, 5)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert AudioMambaLogits(model)(wave).shape == (2, 5)
    check_graphable(model, 10 * SR)


def test_cnn_any_length_and_padding_is_neutral():
    """Native layout: any length; frames past the last multiple of 32 are covered by the padded step."""
    model = _small_cnn().eval()
    with torch.no_grad():
        for seconds in (0.5, 1.0, 2.37):
            n = int(seconds * SR)
            out = model(torch.randn(1, n) * 0.1)
            assert out.framewise_logits.shape == (1, 1 + n // 320, 5)
            assert torch.isfinite(out.framewise_logits).all()


def test_cnn_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    model = _small_cnn().eval()
    path = save_model(model, tmp_path / "cnn.safetensors", labels=list("abcde"))
    again = load(path)
    x = torch.randn(1, SR) * 0.1
    with torch.no_grad():
        assert torch.equal(again(x).logits, model(x).logits)
    assert again.meta["model"] == {"name": "cnn14_panns_like", "args": model.config["args"]}


def test_peers_refuse_what_they_cannot_do():
    with pytest.raises(ValueError, match="layout"):
        audiomamba.create_model("cnn14_panns_like", layout="fold")
    with pytest.raises(TypeError, match="unknown argument"):
        audiomamba.create_model("cnn14_panns_like", pretrained_backbone="x.pth")
    with pytest.raises(ValueError, match="num_classes"):
        audiomamba.create_model("cnn14_panns_like", num_classes=0)


def test_registry_lists_and_describes_peers():
    names = audiomamba.list_models("*_like")
    assert "cnn14_panns_like" in names
    assert ("swin_t_htsat_like" in names) == timm_available() == ("vit_b_ast_like" in names)
    for name in PEERS:
        assert model_description(name).startswith("peer:")


def test_trainer_trains_the_cnn_peer(tmp_path, monkeypatch):
    """`audiomamba train` with model.name: cnn14_panns_like on a tiny folder data set: a validated checkpoint that
    loads for evaluation (a narrow CNN registered under the name keeps the test fast)."""
    import numpy as np
    import soundfile as sf

    from audiomamba.models.peers import CNN14Like
    from audiomamba.training import load_config, train

    class NarrowCNN(CNN14Like):
        def __init__(self, num_classes=527, head="tscam", layout="native", extra_transformer_blocks=0,
                     drop_path_rate=0.0, sample_rate=32000, spec_augment=True):
            super().__init__(num_classes, head, layout, extra_transformer_blocks, drop_path_rate, sample_rate,
                             spec_augment, width=0.0625)

    monkeypatch.setitem(PEERS, "cnn14_panns_like", (NarrowCNN, False, "peer: narrow test CNN"))
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR
    for label in ("tone", "noise"):
        (root / label).mkdir(parents=True)
        for k in range(4):
            x = 0.3 * np.sin(2 * np.pi * 440 * t) if label == "tone" else 0.1 * rng.standard_normal(t.size)
            sf.write(root / label / f"{k}.wav", x.astype(np.float32), SR)
    cfg = load_config(raw={
        "model": {"name": "cnn14_panns_like", "layout": "native"},
        "data": {"format": "folder", "root": str(root), "val_fraction": 0.25, "clip_seconds": 0.5},
        "train": {"output_dir": str(tmp_path / "run"), "epochs": 1, "batch_size": 2, "device": "cpu",
                  "progress": False, "tensorboard": False}})
    result = train(cfg)
    model = load(tmp_path / "run" / "best.safetensors")
    assert result["steps"] >= 1 and isinstance(model, NarrowCNN) and model.num_classes == 2


@needs_timm
@pytest.mark.parametrize("name,head", [("swin_t_htsat_like", "tscam"), ("swin_t_htsat_like", "linear")])
def test_swin_peer(name, head):
    model = audiomamba.create_model(name, num_classes=3, head=head, layout="fold").train()
    out = model(torch.randn(1, SR) * 0.1)
    assert out.logits.shape == (1, 3)
    assert (out.framewise_logits is None) == (head == "linear")
    out.logits.sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    with pytest.raises(ValueError, match="layout"):
        audiomamba.create_model(name, layout="native")


@needs_timm
def test_swin_parameter_count():
    with torch.device("meta"):
        model = audiomamba.create_model("swin_t_htsat_like")
    # Swin-T (27.5M without its classifier) + the token-semantic head (768 * 527 * 6)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 29.95) < 0.1


@needs_timm
def test_vit_peer_small(tmp_path):
    """The AST-like ViT's structure at a small width (ViT-B itself is too slow for a CPU test): 12 x 101 patch
    tokens + the class token; a checkpoint round trip."""
    from audiomamba.models.peers import ViTASTLike

    torch.manual_seed(0)
    model = ViTASTLike(num_classes=4, dim=32, depth=2, heads=2).train()
    assert model.pos.shape == (1, 12 * 101 + 1, 32)
    out = model(torch.randn(2, SR) * 0.1, mixup_lambda=torch.tensor([0.5, 0.5]))
    assert out.logits.shape == (2, 4) and out.framewise_logits is None
    out.logits.sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.eval()
    with torch.no_grad():
        long = model(torch.randn(1, 12 * SR) * 0.1)  # > 1024 frames: windows
    assert long.logits.shape == (1, 4)
    with torch.device("meta"):
        full = audiomamba.create_model("vit_b_ast_like")
    assert abs(sum(p.numel() for p in full.parameters()) / 1e6 - 86.6) < 0.5
    with pytest.raises(ValueError, match="head"):
        audiomamba.create_model("vit_b_ast_like", head="tscam")
