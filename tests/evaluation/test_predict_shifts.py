"""Test-time shifts in ``predict``: each shifted pass's framewise output is moved back into place before the
average, so a model that is exactly shift-equivariant gives the same framewise scores with any shifts."""

import numpy as np
import pytest
import torch
from torch import nn

from audiomamba.datasets import open_split
from audiomamba.evaluation.predict import predict
from audiomamba.models.audiomamba import AudioMambaOutput

from conftest import write_manifest

SR = 16000


class FrameEnergy(nn.Module):
    """A stand-in model whose framewise logits are each 10 ms frame's log energy and minus it (two classes):
    circularly shifting the input by whole frames shifts its output by as many frames, exactly."""

    def __init__(self):
        super().__init__()
        import audiomamba

        self.inner = audiomamba.create_model("audiomamba_nano", num_classes=2, layout="native", sample_rate=SR)
        self.frontend, self.sample_rate = self.inner.frontend, SR
        self.step_grid = self.inner.step_grid

    def forward(self, wave: torch.Tensor) -> AudioMambaOutput:
        hop = self.frontend.cfg.hop_length
        n = wave.shape[1] // hop
        e = wave[:, : n * hop].reshape(len(wave), n, hop).pow(2).mean(-1).add(1e-6).log()
        fw = torch.stack([e, -e], dim=-1)
        return AudioMambaOutput(logits=fw.mean(1), framewise_logits=fw, embedding=fw.mean(1),
                                step_logits=fw[:, :3].transpose(1, 2))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    rng = np.random.default_rng(0)
    waves = []
    for i in range(3):
        x = 0.01 * rng.standard_normal(2 * SR).astype(np.float32)
        on = int((0.3 + 0.4 * i) * SR)
        x[on: on + SR // 4] += np.sin(np.arange(SR // 4) * 0.3).astype(np.float32)  # a loud burst somewhere
        waves.append(x)
    d = write_manifest(tmp_path_factory.mktemp("shifts"), "train", waves, SR, ["Dog", "Cat", "Dog"])
    return open_split(d, "train")


def test_shifted_framewise_scores_are_moved_back_into_place(clips):
    model = FrameEnergy().eval()
    cpu = torch.device("cpu")
    one = predict(model, clips, 2, cpu, True, framewise=True)
    for shifts, spacing in ((4, 8), (3, 1), (2, 25)):
        many = predict(model, clips, 2, cpu, True, framewise=True, tta_shifts=shifts, tta_spacing=spacing)
        for i, f in one["framewise"].items():
            assert f.shape == many["framewise"][i].shape == (200, 2)
            np.testing.assert_allclose(many["framewise"][i], f, atol=1e-5)
            # the control: left where the shifted pass put it, the burst would be off by spacing frames
            assert np.abs(np.roll(f, spacing, axis=0) - f).max() > 0.1
        np.testing.assert_allclose(many["scores"], one["scores"], atol=1e-5)
        assert many["step_logits"] is None  # steps of 32 frames cannot be moved back by a few frames
    assert one["step_logits"] is not None and one["step_logits"][0].shape == (3, 2)
