"""Audio Mamba taggers: sizes, outputs, both layouts, folding geometry, time alignment, bad input."""

import pytest
import torch

import audiomamba
from audiomamba.models.audiomamba import AudioMamba

SR = 32000
HTSAT_UNUSED_HEAD = 527 * 527 + 527  # HTS-AT builds an nn.Linear(527, 527) it never uses in tscam mode


@pytest.mark.parametrize("name,paper_millions", [("audiomamba_nano", 5.24), ("audiomamba_micro", 12.26)])
def test_parameter_counts_against_paper(name, paper_millions):
    with torch.device("meta"):
        model = audiomamba.create_model(name)
    n = sum(p.numel() for p in model.parameters())
    # The paper's counts come from HTS-AT's code, which includes a dead Linear(527, 527); ours leaves it out.
    assert abs((n + HTSAT_UNUSED_HEAD) / 1e6 / paper_millions - 1) < 0.003
    assert abs(n / 1e6 / paper_millions - 1) < 0.06


@pytest.mark.parametrize("name", audiomamba.list_models("audiomamba_*"))
def test_every_audiomamba_builds_and_runs(name):
    model = audiomamba.create_model(name, num_classes=7, layout="native").eval()
    with torch.no_grad():
        out = model(torch.randn(1, SR // 2) * 0.1)
    assert out.logits.shape == (1, 7) and out.framewise_logits.shape == (1, 51, 7)
    assert out.embedding.shape == (1, model.num_features)


@pytest.mark.parametrize("name", ["audiomamba_nano", "audiomamba_tiny_v2"])
@pytest.mark.parametrize("head", ["tscam", "linear"])
def test_forward_backward(name, head):
    model = audiomamba.create_model(name, num_classes=5, head=head, layout="native", extra_transformer_blocks=1).train()
    wave = torch.randn(2, SR) * 0.1
    out = model(wave, mixup_lambda=torch.tensor([0.3, 0.7]))
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, torch.rand(2, 5)).backward()
    assert (out.framewise_logits is None) == (head == "linear")
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_fold_layout_shapes_and_long_inputs():
    model = audiomamba.create_model("audiomamba_nano", num_classes=4).eval()
    with torch.no_grad():
        ten = model(torch.randn(1, 10 * SR) * 0.1)
        long = model(torch.randn(1, 12 * SR) * 0.1)  # windows of 1024 frames, hop 512
    assert ten.framewise_logits.shape == (1, 1001, 4)
    assert long.framewise_logits.shape == (1, 1201, 4) and torch.isfinite(long.framewise_logits).all()
    model.train()
    out = model(torch.randn(1, 11 * SR) * 0.1)  # random 1024-frame crop
    assert out.framewise_logits.shape == (1, 1024, 4)


def test_layout_is_an_argument_of_the_forward():
    """``layout=`` runs the same weights in the other layout for one call; the model's own is left as it is."""
    torch.manual_seed(7)
    fold = audiomamba.create_model("audiomamba_nano", num_classes=3).eval()
    native = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native").eval()
    native.load_state_dict(fold.state_dict())
    wave = torch.randn(2, 2 * SR) * 0.1
    with torch.no_grad():
        as_native, own, spec = fold(wave, layout="native"), fold(wave), fold.spectrogram(wave)
        torch.testing.assert_close(as_native.logits, native(wave).logits)
        torch.testing.assert_close(as_native.framewise_logits, native(wave).framewise_logits)
        torch.testing.assert_close(fold.forward_spectrogram(spec).logits, own.logits)
        torch.testing.assert_close(native.forward_spectrogram(spec, layout="fold").logits, own.logits)
        features, valid = fold.forward_features(spec, layout="native")
        torch.testing.assert_close(fold.forward_head(features, valid, spec.shape[1], layout="native").logits, as_native.logits)
    assert fold.layout == "fold" and native.layout == "native"
    with pytest.raises(ValueError, match="layout"):
        fold(wave, layout="spiral")


def test_fold_puts_frames_where_htsat_does():
    spec = torch.arange(1024 * 64, dtype=torch.float32).view(1, 1024, 64)  # value = frame * 64 + mel
    img = AudioMamba.fold(spec)[0, 0]
    assert img.shape == (256, 256)
    for chunk, mel, col in [(0, 0, 0), (1, 5, 17), (3, 63, 255), (2, 30, 128)]:
        frame = chunk * 256 + col
        assert img[chunk * 64 + mel, col] == frame * 64 + mel
    # Shorter inputs are stretched to 1024 frames (bicubic, align_corners): the ends stay in place.
    short = torch.arange(500, dtype=torch.float32).view(1, 500, 1).expand(1, 500, 64).contiguous()
    img = AudioMamba.fold(short)[0, 0]
    assert img[0, 0] == 0 and torch.isclose(img[3 * 64, 255], torch.tensor(499.0))


def test_unfold_map_orders_time_steps():
    # Backbone output 8x8: row = chunk * 2 + freq_row; time step = chunk * 8 + column.
    x = torch.zeros(1, 8, 8, 1)
    for r in range(8):
        for c in range(8):
            x[0, r, c, 0] = (r // 2) * 8 + c + 100 * (r % 2)
    m = AudioMamba.unfold_map(x)[0, :, :, 0]
    assert m.shape == (2, 32)
    assert m[0].tolist() == list(range(32)) and m[1].tolist() == [100 + t for t in range(32)]


class EnergyBackbone(torch.nn.Module):
    """Stand-in for VMamba with exact locality: each output token is the mean of its 32x32 image patch."""

    num_features = 1

    def forward_features(self, img):
        return torch.nn.functional.avg_pool2d(img, 32).permute(0, 2, 3, 1)


@pytest.mark.parametrize("layout,seconds", [("fold", 10), ("fold", 4), ("native", 10), ("native", 23)])
def test_click_shows_up_at_its_time(layout, seconds):
    model = audiomamba.create_model("audiomamba_nano", num_classes=1, layout=layout).eval()
    model.backbone = EnergyBackbone()
    model.head = type(model.head)(1, 1)
    with torch.no_grad():  # class logit = energy summed over the two frequency rows, centre tap only
        model.head.tscam_conv.weight.zero_()
        model.head.tscam_conv.weight[0, 0, :, 1] = 1.0
        model.head.tscam_conv.bias.zero_()
        model.head.norm = torch.nn.Identity()
    for click_s in (1.3, seconds * 0.71):
        wave = torch.randn(1, seconds * SR) * 1e-3
        i = int(click_s * SR)
        wave[0, i : i + 64] += 1.0
        with torch.no_grad():
            fw = model(wave).framewise_logits[0, :, 0]
        assert fw.shape[0] == 1 + seconds * SR // 320
        peak_s = fw.argmax().item() * 0.01
        # One output step covers 32 frames (0.32 s; 0.33 s on a stretched 4-s fold): the peak lies in that step.
        assert abs(peak_s - click_s) <= 0.33, (peak_s, click_s)


def test_bad_input_is_refused_clearly():
    model = audiomamba.create_model("audiomamba_nano", num_classes=3).eval()
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        model(torch.randn(SR))
    with pytest.raises(ValueError, match="16000 Hz differs"):
        model(torch.randn(1, SR), sample_rate=16000)
    with pytest.raises(ValueError, match="too short"):
        model(torch.zeros(1, 0))
    bad = torch.randn(1, SR)
    bad[0, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad)
    with pytest.raises(ValueError, match="layout"):
        audiomamba.create_model("audiomamba_nano", layout="spiral")
    with pytest.raises(TypeError, match="unknown argument"):
        audiomamba.create_model("audiomamba_nano", num_clases=3)
    with pytest.raises(KeyError, match="available"):
        audiomamba.create_model("audiomamba_giant")


def test_output_is_dict_like_and_config_rebuilds():
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native").eval()
    with torch.no_grad():
        out = model(torch.randn(1, SR))
    assert out["logits"] is out.logits
    again = audiomamba.create_model(model.config["name"], **model.config["args"]).eval()
    again.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(again(torch.ones(1, SR) * 0.1).logits, model(torch.ones(1, SR) * 0.1).logits)


@pytest.mark.parametrize("layout", ["native", "fold"])
@pytest.mark.parametrize("step_frames", [16, 8])
def test_finer_steps_start_as_the_coarse_model(layout, step_frames):
    """A model with finer steps, given a coarse model's weights (its correction starts at zero), has the coarse
    model's clip logits and embedding; its framewise logits are the same in fold layout (steps repeated) and, in
    native layout, differ only where the linear interpolation turns at a coarse step centre, which lies half a
    fine step from the fine nodes either side: by at most ``step_frames / 64`` of the largest jump between
    neighbouring coarse steps.  Its step logits are ``step_frames`` frames each, as step_grid says."""
    torch.manual_seed(3)
    coarse = audiomamba.create_model("audiomamba_nano", num_classes=4, layout=layout).eval()
    with torch.no_grad():  # sizeable step logits, so that the interpolation's corners are visible
        coarse.head.tscam_conv.weight.mul_(30.0)
    fine = audiomamba.create_model("audiomamba_nano", num_classes=4, layout=layout, step_frames=step_frames).eval()
    result = fine.load_state_dict(coarse.state_dict(), strict=False)
    assert sorted(result.missing_keys) == sorted(k for k in fine.state_dict() if k.startswith("fine_steps."))
    wave = torch.randn(2, 7 * SR) * 0.1
    with torch.no_grad():
        a, b = coarse(wave), fine(wave)
    torch.testing.assert_close(b.logits, a.logits)
    torch.testing.assert_close(b.embedding, a.embedding)
    steps, _ = fine.step_grid(wave.shape[1])
    assert b.step_logits.shape == (2, 4, steps)
    assert steps == (1024 // step_frames if layout == "fold" else -(-701 // step_frames))  # 7 s: 701 frames
    diff = (b.framewise_logits - a.framewise_logits).abs().max().item()
    if layout == "fold":
        assert diff < 1e-5
    else:
        jump = a.step_logits.diff(dim=-1).abs().max().item()
        assert 1e-3 < diff <= jump * step_frames / 64 + 1e-4, (diff, jump)


def test_finer_steps_place_a_click_within_their_own_step():
    """With the correction reading the earlier stage's map (here a stand-in whose tokens are the energy of their
    patch), a click is placed to within one fine step (8 frames) where the coarse steps could only place it within 32."""
    model = audiomamba.create_model("audiomamba_nano", num_classes=1, layout="native", step_frames=8).eval()

    class Stages(torch.nn.Module):
        num_features = 1

        def forward_features(self, img, keep_stage=None):
            return torch.nn.functional.avg_pool2d(img, 32).permute(0, 2, 3, 1), \
                torch.nn.functional.avg_pool2d(img, 8).permute(0, 2, 3, 1)

    model.backbone = Stages()
    model.head = type(model.head)(1, 1)
    model.fine_steps = type(model.fine_steps)(1, 1, rows=8, hidden=1)
    with torch.no_grad():  # coarse logits zero; the correction: energy summed over the rows, centre tap only
        model.head.tscam_conv.weight.zero_()
        model.head.tscam_conv.bias.zero_()
        f = model.fine_steps
        f.norm = torch.nn.Identity()
        f.mix.weight.zero_()
        f.mix.weight[0, 0, :, 1] = 1.0
        f.mix.bias.zero_()
        f.act = torch.nn.Identity()
        f.out.weight.zero_()
        f.out.weight[0, 0, 0, 1] = 1.0
    for click_s in (1.3, 4.77):
        wave = torch.randn(1, 7 * SR) * 1e-3
        i = int(click_s * SR)
        wave[0, i : i + 64] += 1.0
        with torch.no_grad():
            fw = model(wave).framewise_logits[0, :, 0]
        assert abs(fw.argmax().item() * 0.01 - click_s) <= 0.09, (fw.argmax().item(), click_s)


def test_finer_steps_are_checked():
    with pytest.raises(ValueError, match="step_frames must be one of"):
        audiomamba.create_model("audiomamba_nano", step_frames=12)
    with pytest.raises(ValueError, match="token-semantic head"):
        audiomamba.create_model("audiomamba_nano", head="linear", step_frames=8)


def test_frame_loss_trains_the_finer_steps():
    """The frame loss on the finer steps' logits reaches their correction through its zero-initialised output
    layer (and, until that moves, not its first layer); a step on the correction alone moves the framewise output
    and leaves the clip logits exactly as they were."""
    from audiomamba.training.step import frame_loss, frame_targets

    torch.manual_seed(5)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native", step_frames=8)
    wave = torch.randn(2, 3 * SR) * 0.1
    model.eval()
    with torch.no_grad():
        before = model(wave)
    steps, span = model.step_grid(wave.shape[1])
    events = torch.tensor([[[0, 0.1, 0.4], [-1, 0, 0]], [[2, 0.5, 0.9], [1, 0.0, 0.2]]])
    target = frame_targets(events, 3, steps, span)
    out = model(wave)
    assert out.step_logits.shape == target.shape == (2, 3, steps)
    frame_loss(out.step_logits, target, torch.ones(2, dtype=torch.bool)).backward()
    fine = model.fine_steps
    assert fine.out.weight.grad.abs().sum() > 0 and not fine.mix.weight.grad.any()
    with torch.no_grad():
        for p in fine.parameters():
            p -= 1.0 * p.grad
        after = model(wave)
    torch.testing.assert_close(after.logits, before.logits, rtol=0, atol=0)
    assert (after.framewise_logits - before.framewise_logits).abs().max() > 1e-3
