"""``predict`` scores every clip at its own length, as the Tagger scores a file: the clips of a batch are never
padded to the batch's longest, and a short one is centred in silence exactly as ``Tagger`` does."""

import numpy as np
import pytest
import soundfile as sf
import torch

import audiomamba
from audiomamba import Tagger
from audiomamba.datasets import open_split
from audiomamba.evaluation.predict import predict

from conftest import write_manifest

SR = 32000
SECONDS = (0.7, 6.0, 2.0, 0.7)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    rng = np.random.default_rng(3)
    waves = [(0.2 * rng.standard_normal(int(s * SR))).astype(np.float32) for s in SECONDS]
    d = write_manifest(tmp_path_factory.mktemp("lengths"), "test", waves, SR,
                       ["Cat" if i % 2 else "Dog" for i in range(len(waves))], subtype="FLOAT")
    torch.manual_seed(0)
    model = audiomamba.create_model("audiomamba_nano", num_classes=2, layout="native").eval()
    return d, open_split(d, "test"), model


def test_scores_do_not_depend_on_the_batch_and_match_the_tagger(setup):
    d, cs, model = setup
    cpu = torch.device("cpu")
    together = predict(model, cs, 4, cpu, True, framewise=True)
    alone = predict(model, cs, 1, cpu, True, framewise=True)
    np.testing.assert_allclose(together["scores"], alone["scores"], atol=1e-5)
    tagger = Tagger(model, labels=["Dog", "Cat"])
    for i, clip in enumerate(cs.clips):
        r = tagger.detect(d / clip.path if not str(clip.path).startswith("/") else clip.path, threshold=0.5)
        np.testing.assert_allclose(together["scores"][i], r.scores, atol=1e-5)
        assert together["framewise"][i].shape == r.framewise.shape == (1 + int(SECONDS[i] * SR) // 320, 2)
        np.testing.assert_allclose(together["framewise"][i], r.framewise, atol=1e-5)


def test_min_input_zero_runs_each_clip_as_it_is(setup):
    _, cs, model = setup
    raw = predict(model, cs, 4, torch.device("cpu"), True, min_input_s=0)
    padded = predict(model, cs, 4, torch.device("cpu"), True)
    with torch.inference_mode():
        x, _ = sf.read(str(cs.clips[0].path), dtype="float32")
        want = torch.sigmoid(model(torch.from_numpy(x)[None]).logits[0]).numpy()
    np.testing.assert_allclose(raw["scores"][0], want, atol=1e-5)
    assert np.abs(raw["scores"][0] - padded["scores"][0]).max() > 1e-3  # the 0.7 s clip was centred in 2.5 s
    np.testing.assert_allclose(raw["scores"][1], padded["scores"][1], atol=1e-5)  # 6 s: left as it is


def test_short_clips_of_different_lengths_share_one_forward(setup):
    """0.7 s, 2.0 s and 0.7 s are all centred in 2.5 s: one pass for the three, one for the 6 s clip."""
    _, cs, model = setup
    shapes = []
    hook = model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    try:
        predict(model, cs, 4, torch.device("cpu"), True)
    finally:
        hook.remove()
    assert sorted(shapes) == [(1, 6 * SR), (3, int(2.5 * SR))]
