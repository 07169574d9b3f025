"""The HEAR API (audiomamba.hear): checked by the HEAR validator on small random checkpoints, and against the model
itself (scene embeddings are its clip embeddings; timestamps regular, any length, batch-independent)."""

import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

import audiomamba
from audiomamba import hear, hub
from audiomamba.audio import resample
from audiomamba.errors import CheckpointError

from conftest import SR


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native").eval()


@pytest.fixture(scope="module")
def forgetful():
    """audiomamba_nano whose scans forget quickly (a large step size delta).  A trained model's features are local;
    a random model's scans remember the whole input at random rates, which would swamp the local comparisons
    below (tests/inference/test_stream.py does the same)."""
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native").eval()
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "dt_projs_bias"):
                m.dt_projs_bias.fill_(2.0)
    return model


def waves(n: int, seconds: float, sr: int = SR, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, int(seconds * sr), generator=g) * 0.1


# ---------------------------------------------------------------------- the HEAR validator
@pytest.fixture()
def validator(monkeypatch):
    """hearvalidator's ValidateModel.  The validator imports tensorflow at module level but only uses it for
    TensorFlow models (``isinstance(model, tf.Module)``); where tensorflow is not installed, a stand-in module with
    an unrelated ``Module`` class takes its place in sys.modules, so the PyTorch path runs as written.  It has a
    module spec: torch imports its compiler lazily (a tensor made on the meta device can trigger it), and that import
    looks up optional libraries, tensorflow among them, with ``importlib.util.find_spec``, which refuses a module
    in sys.modules without one."""
    if importlib.util.find_spec("tensorflow") is None:
        stand_in = types.ModuleType("tensorflow")
        stand_in.__spec__ = importlib.machinery.ModuleSpec("tensorflow", None)
        stand_in.Module = type("Module", (), {})
        monkeypatch.setitem(sys.modules, "tensorflow", stand_in)
    validate = pytest.importorskip("hearvalidator.validate")
    return validate.ValidateModel


@pytest.mark.parametrize("sample_rate", [16000, 32000, "shipped"])
def test_hear_validator_accepts_the_module(validator, sample_rate, tmp_path, monkeypatch, capsys):
    """Small random checkpoints at 16 and 32 kHz, and the tagger shipped with the package (no path: the default)."""
    path = ""
    if sample_rate == "shipped":
        sample_rate = 32000
    else:
        torch.manual_seed(0)
        model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout="native", sample_rate=sample_rate)
        path = str(audiomamba.save_model(model, tmp_path / "nano.safetensors", labels=["a", "b", "c"]))
    if sample_rate not in validator.ACCEPTABLE_SAMPLE_RATE:
        # The validator installable on Python >= 3.9 predates HEAR's 32 kHz datasets; its later releases (Python < 3.9
        # only) and the benchmark accept 16, 22.05, 32, 44.1 and 48 kHz.
        monkeypatch.setattr(validator, "ACCEPTABLE_SAMPLE_RATE", [16000, 22050, 32000, 44100, 48000])
    validator("audiomamba.hear", path, device="cpu")()
    out = capsys.readouterr().out
    assert f"Model sample rate is: {sample_rate}" in out and "Interval between timestamps is 50.0ms" in out


# ---------------------------------------------------------------------- against the model
@pytest.mark.parametrize("layout,seconds", [("native", 2.0), ("native", 7.5), ("fold", 3.0), ("fold", 13.0)])
def test_scene_embedding_is_the_models_clip_embedding(layout, seconds):
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3, layout=layout).eval()
    hm = hear.HearModel(model)
    x = waves(2, seconds)
    scene = hear.get_scene_embeddings(x, hm)
    with torch.no_grad():
        expected = model(x).embedding
    assert scene.dtype == torch.float32 and scene.shape == (2, model.num_features) == (2, hm.scene_embedding_size)
    torch.testing.assert_close(scene, expected, atol=1e-5, rtol=1e-5)


def test_timestamps_any_length_and_batch_independent(nano):
    hm = hear.HearModel(nano, hop_ms=25.0)
    for seconds, expected_k in [(0.01, 1), (1.0, 41), (2.005, 81)]:
        x = waves(3, seconds)
        emb, ts = hear.get_timestamp_embeddings(x, hm)
        assert emb.shape == (3, expected_k, hm.timestamp_embedding_size) and ts.shape == (3, expected_k)
        assert emb.dtype == ts.dtype == torch.float32 and torch.isfinite(emb).all()
        np.testing.assert_allclose(ts[1].numpy(), np.arange(expected_k) * 25.0)
        assert ts[0, -1] <= seconds * 1000
    alone, _ = hear.get_timestamp_embeddings(x[1:2], hm)
    torch.testing.assert_close(alone[0], emb[1], atol=1e-5, rtol=1e-5)


def test_timestamp_embeddings_are_aligned_in_time(forgetful):
    """A sound delayed by 3.2 s (ten tokens) gives the same timestamp embeddings 3.2 s later, away from the edges."""
    hm = hear.HearModel(forgetful)
    sound = waves(1, 6.4, seed=2) * torch.linspace(0.1, 2.0, int(6.4 * SR))  # a crescendo: every moment differs
    delayed = torch.cat([1e-3 * waves(1, 3.2, seed=1), sound], dim=1)
    emb, ts = hear.get_timestamp_embeddings(sound, hm)
    emb_d, ts_d = hear.get_timestamp_embeddings(delayed, hm)
    inner = (ts[0] >= 1000) & (ts[0] <= 5400)
    shifted = torch.isin(ts_d[0], ts[0][inner] + 3200)
    assert inner.sum() == shifted.sum() == 89
    torch.testing.assert_close(emb_d[0, shifted], emb[0, inner], atol=2e-3, rtol=0)
    assert (emb[0, inner][1:] - emb[0, inner][:-1]).abs().max() > 0.01  # and they do change over time


def test_long_sounds_are_chunked_seamlessly(forgetful):
    """Chunks of 4 s with 1 s of context reproduce one pass over 12 s (where the model's memory is shorter than the
    context)."""
    model = forgetful
    x = waves(1, 12.0)
    whole, ts = hear.get_timestamp_embeddings(x, hear.HearModel(model))
    chunked, ts2 = hear.get_timestamp_embeddings(x, hear.HearModel(model, chunk_s=4.0, overlap_s=1.0))
    assert torch.equal(ts, ts2)
    torch.testing.assert_close(chunked, whole, atol=2e-3, rtol=0)
    torch.testing.assert_close(hear.get_scene_embeddings(x, hear.HearModel(model, chunk_s=4.0, overlap_s=1.0)),
                               hear.get_scene_embeddings(x, hear.HearModel(model)), atol=2e-3, rtol=0)


def test_other_input_rates_are_resampled(nano):
    x = waves(1, 2.0)
    x48 = torch.from_numpy(resample(x[0].numpy(), SR, 48000))[None]
    hm48 = hear.HearModel(nano, sample_rate=48000)
    assert hm48.sample_rate == 48000
    a, ta = hear.get_timestamp_embeddings(x, hear.HearModel(nano))
    b, tb = hear.get_timestamp_embeddings(x48, hm48)
    assert torch.equal(ta, tb)
    torch.testing.assert_close(b, a, atol=0.01, rtol=0)


# ---------------------------------------------------------------------- load_model
def test_load_model_from_checkpoint_folder_shipped_or_random(nano, tmp_path):
    from audiomamba.models.pretrained import DEFAULT_TAGGER

    shipped = hear.load_model(device="cpu")  # no path: the package's default tagger
    assert shipped.model.meta == hub.from_pretrained(DEFAULT_TAGGER).meta and shipped.sample_rate == SR
    emb, ts = hear.get_timestamp_embeddings(waves(1, 2.0), shipped)  # its finer steps leave the tokens as they are
    assert emb.shape == (1, ts.shape[1], shipped.timestamp_embedding_size) and torch.isfinite(emb).all()
    folder = hub.save_pretrained(nano, tmp_path / "nano", labels=["a", "b", "c"])
    for path in (folder, folder / "model.safetensors"):
        hm = hear.load_model(str(path), device="cpu", hop_ms=10.0)
        assert isinstance(hm, torch.nn.Module) and hm.sample_rate == SR and hm.hop_ms == 10.0
        assert hm.scene_embedding_size == hm.timestamp_embedding_size == nano.num_features
    torch.testing.assert_close(hm(waves(1, 1.0)), hear.get_scene_embeddings(waves(1, 1.0), hear.HearModel(nano)))
    untrained = hear.load_model(random_init="audiomamba_nano", device="cpu")
    assert untrained.scene_embedding_size == 384
    with pytest.raises(ValueError, match="not both"):
        hear.load_model(str(folder), random_init="audiomamba_nano")
    with pytest.raises(CheckpointError, match="model not found"):
        hear.load_model(str(tmp_path / "absent.safetensors"))
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_scene_embeddings(torch.zeros(SR), hm)
