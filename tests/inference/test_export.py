"""Export: the conv1d-DFT front end and the loop-free scan against the originals; ONNX in onnxruntime and
TorchScript against PyTorch on a clip (CI: a generated music-like clip; set AUDIOMAMBA_TEST_CLIP to a real
recording to use that instead)."""

import os

import numpy as np
import pytest
import torch

import audiomamba
from audiomamba import Tagger
from audiomamba.inference.export import ExportableTagger, reference_outputs, selective_scan_blocked
from audiomamba.models.features import FrontendConfig, LogMel
from audiomamba.ops import selective_scan_ref, selective_scan_torch

SR = 32000


def music_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Notes with harmonics and vibrato, a noise burst and clicks: broadband, varying, realistic levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.4):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        env = np.exp(-np.clip(t - start, 0, None) * 4) * (t >= start)
        phase = 2 * np.pi * f0 * t + 0.3 * np.sin(2 * np.pi * 5 * t)
        x += env * sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    x[int(0.3 * len(x)) : int(0.4 * len(x))] += rng.standard_normal(int(0.4 * len(x)) - int(0.3 * len(x))) * 0.05
    x[:: SR // 3] += 0.5
    return (x / np.abs(x).max() * 0.7).astype(np.float32)


def real_or_generated_clip(seconds: float) -> torch.Tensor:
    path = os.environ.get("AUDIOMAMBA_TEST_CLIP")
    if path:
        from audiomamba.audio import load_audio

        wave, _ = load_audio(path, SR)
        wave = np.resize(wave, int(seconds * SR))  # loop/crop to the exported length
    else:
        wave = music_like(seconds)
    return torch.from_numpy(wave)[None]


@pytest.mark.parametrize("sr", [32000, 16000])
def test_conv_logmel_matches_torch_stft(sr):
    fe = LogMel(FrontendConfig.for_sample_rate(sr))
    wave = torch.from_numpy(np.stack([music_like(0.7, 1), music_like(0.7, 2) * 1e-3]))[:, : int(0.7 * sr)]
    want, got = fe(wave), LogMel(fe.cfg, stft="conv")(wave)
    assert got.shape == want.shape
    loud = want > -60  # well above float32 rounding of the DFT sums
    assert (got - want)[loud].abs().max() < 1e-3
    assert (got - want).abs().max() < 0.5


def test_exportable_tagger_leaves_the_callers_model_alone():
    """The wrapper runs a copy of the model in the layout asked for; the caller's model keeps its layout, mode and
    weights, and the wrapper's outputs match the model's own forward in that layout."""
    torch.manual_seed(6)
    model = audiomamba.create_model("audiomamba_nano", num_classes=4).train()  # fold layout, training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapper = ExportableTagger(model, multi_label=True, layout="native")
    assert (model.layout, model.training, wrapper.layout, wrapper.model.training) == ("fold", True, "native", False)
    assert wrapper.model is not model and wrapper.frontend.stft == "conv"
    clip = real_or_generated_clip(1.5)
    with torch.inference_mode():
        got = [t.numpy() for t in wrapper(clip)]
    want = reference_outputs(wrapper.model, clip, multi_label=True, layout="native")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-3)
    assert (model.layout, model.training) == ("fold", True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_blocked_scan_matches_reference_including_strong_decay():
    torch.manual_seed(0)
    b, ch, g, n = 2, 8, 4, 5
    for length, dscale, ascale in [(1, 1.0, 1.0), (7, 1.0, 1.0), (130, 3.0, 30.0), (257, 0.5, 2.0)]:
        u = torch.randn(b, ch, length, dtype=torch.float64)
        delta = torch.randn(b, ch, length, dtype=torch.float64) * dscale
        A = -torch.rand(ch, n, dtype=torch.float64) * ascale
        B, C = torch.randn(b, g, n, length, dtype=torch.float64), torch.randn(b, g, n, length, dtype=torch.float64)
        D, bias = torch.randn(ch, dtype=torch.float64), torch.randn(ch, dtype=torch.float64)
        ref = selective_scan_ref(u, delta, A, B, C, D, bias)
        got = selective_scan_blocked(*(t.float() for t in (u, delta, A, B, C, D, bias)))
        assert torch.isfinite(got).all()
        assert (got.double() - ref).abs().max() <= 1e-4 * (1 + ref.abs().max()), length
        fast = selective_scan_torch(*(t.float() for t in (u, delta, A, B, C, D, bias)))
        assert (got - fast).abs().max() <= 1e-4 * (1 + ref.abs().max())


@pytest.fixture(scope="module")
def fold_ckpt(tmp_path_factory):
    torch.manual_seed(3)
    model = audiomamba.create_model("audiomamba_nano", num_classes=10)  # the paper's fold layout
    return audiomamba.save_model(model, tmp_path_factory.mktemp("exp") / "fold.safetensors", labels=[f"c{i}" for i in range(10)])


def test_onnx_fold_layout_matches_pytorch_in_onnxruntime(fold_ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    from audiomamba.cli import main
    from audiomamba.inference.export import verify_onnx

    out = tmp_path / "m.onnx"
    assert main(["export", "-c", str(fold_ckpt), "--format", "onnx", "--out", str(out), "--seconds", "3"]) == 0
    assert "onnxruntime vs PyTorch" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["sample_rate"] == "32000" and meta["num_samples"] == "96000" and '"c9"' in meta["labels"]
    model = audiomamba.load(fold_ckpt)
    clip = real_or_generated_clip(3.0)
    diff = verify_onnx(out, model, torch.cat([clip, clip * 0.1]), multi_label=True)  # batch of 2: dynamic batch
    assert diff["scores"] < 1e-3 and diff["framewise"] < 1e-3, diff


@pytest.mark.parametrize("step_frames", [32, 8])
def test_onnx_native_and_torchscript(tmp_path, step_frames):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from audiomamba.inference.export import export_onnx, export_torchscript, verify_onnx

    torch.manual_seed(4)
    model = audiomamba.create_model("audiomamba_nano", num_classes=4, layout="native", step_frames=step_frames).eval()
    if step_frames != 32:
        with torch.no_grad():  # a correction from the finer steps that the exported graph must carry
            model.fine_steps.out.weight.normal_(0.0, 0.3)
    clip = real_or_generated_clip(2.0)
    export_onnx(model, tmp_path / "n.onnx", seconds=2.0, verify=False)
    diff = verify_onnx(tmp_path / "n.onnx", model, clip)  # the centring read back from the file's metadata
    assert diff["scores"] < 1e-3 and diff["framewise"] < 1e-3, diff
    report = export_torchscript(model, tmp_path / "n.pt", seconds=2.0)
    assert "reloaded vs PyTorch" in report and "centred in 2.5 s" in report
    # 2.0 s is shorter than the native model's 2.5 s: both graphs give what the Tagger gives for the clip
    want = Tagger(model).detect(clip[0].numpy(), sample_rate=32000)
    loaded = torch.jit.load(str(tmp_path / "n.pt"))
    ort = pytest.importorskip("onnxruntime").InferenceSession(str(tmp_path / "n.onnx"))
    with torch.inference_mode():
        traced = [t.numpy() for t in loaded(clip)]
    for scores, framewise, _ in (traced, ort.run(None, {"waveform": clip.numpy()})):
        np.testing.assert_allclose(np.asarray(scores)[0], want.scores, atol=1e-3)
        assert np.asarray(framewise).shape[1:] == want.framewise.shape
        np.testing.assert_allclose(np.asarray(framewise)[0], want.framewise, atol=1e-3)
    with torch.inference_mode():
        raw = torch.sigmoid(model(clip).logits)[0].numpy()
    assert np.abs(raw - want.scores).max() > 3e-3  # the centring moves the scores past the tolerance: this can fail

    export_torchscript(model, tmp_path / "raw.pt", seconds=2.0, min_input_s=0)  # off: the input as it is
    with torch.inference_mode():
        np.testing.assert_allclose(torch.jit.load(str(tmp_path / "raw.pt"))(clip)[0][0].numpy(), raw, atol=1e-3)


def test_export_cli_errors(tmp_path, capsys):
    from audiomamba.cli import main

    assert main(["export", "-c", str(tmp_path / "x.safetensors"), "--out", str(tmp_path / "x.onnx")]) == 3
    assert "checkpoint not found" in capsys.readouterr().err
