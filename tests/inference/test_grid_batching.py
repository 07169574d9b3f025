"""Files of different lengths whose spectrograms a native-layout model pads to the same length (a multiple of 32
frames, the last frame repeated) go through the model in one batch, with the results of each file alone: the
model's own forward on the file is the reference, for Audio Mamba with coarse and with finer steps and for the
CNN peer."""

import numpy as np
import pytest
import soundfile as sf
import torch

import audiomamba
from audiomamba import Tagger

from conftest import SR, noise

# frames = 1 + samples // 320: 301, 311, 311, 320 frames pad to 320; 322 to 352; 2.55 s (256 frames) shares 256
# with the inputs under 2.5 s, which are centred in 2.5 s (251 frames) first
ATOL = 1e-4  # float32 rounding of batches of different sizes, amplified by the step logits scaled up 30 times
SECONDS = {"a": 3.0, "b": 3.1, "c": 3.1, "d": 3.19, "e": 3.21, "f": 2.55, "short": 1.0, "short2": 2.2}


def _model(kind: str):
    torch.manual_seed(0)
    if kind == "cnn14":
        return audiomamba.create_model("cnn14_panns_like", num_classes=5, layout="native", width=0.0625).eval()
    m = audiomamba.create_model("audiomamba_nano", num_classes=5, layout="native", sample_rate=SR,
                                step_frames=8 if kind == "fine" else 32).eval()
    with torch.no_grad():  # sizeable step logits: the framewise output varies within a step and near the ends
        m.head.tscam_conv.weight.mul_(30.0)
        if m.fine_steps is not None:
            m.fine_steps.out.weight.normal_(0.0, 0.3)
    return m


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    out = {}
    for i, (name, s) in enumerate(SECONDS.items()):
        x = noise(s, seed=i)
        x[int(0.3 * len(x)): int(0.5 * len(x))] *= 8  # a louder stretch: the outputs vary in time
        sf.write(d / f"{name}.wav", x, SR, subtype="FLOAT")
        out[name] = d / f"{name}.wav"
    return out


def _counted(tagger):
    calls = []
    inner = tagger._model_pass

    def counted(x, per_batch):
        calls.append(tuple(x.shape[:2]))
        return inner(x, per_batch)

    tagger._model_pass = counted
    return calls


@pytest.mark.parametrize("kind", ["fine", "coarse", "cnn14"])
def test_files_on_one_grid_share_a_forward_and_match_the_model_alone(files, kind):
    model = _model(kind)
    tagger = Tagger(model, device="cpu", batch_size=8)
    calls = _counted(tagger)
    paths = [files[k] for k in SECONDS]
    got = {r.file: r for r in tagger.tag_files(paths, batch_size=8, events=True, threshold=0.5, embeddings=True)}
    # one pass per grid length: 320 frames (a-d), 256 (f and the two centred short files); e alone, as it is
    assert sorted(calls) == [(1, 322), (3, 256), (4, 320)]
    for name, s in SECONDS.items():
        r = got[str(files[name])]
        if s < tagger.min_input_s:  # centred in silence: the per-file path (tested against the model elsewhere)
            want = tagger.detect(files[name])
            np.testing.assert_allclose(r.scores, want.scores, atol=ATOL)
            np.testing.assert_allclose(r.framewise, want.framewise, atol=ATOL)
            continue
        wave = torch.from_numpy(sf.read(files[name], dtype="float32")[0])[None]
        with torch.no_grad():
            out = model(wave)
        np.testing.assert_allclose(r.scores, torch.sigmoid(out.logits[0]).numpy(), atol=ATOL)
        np.testing.assert_allclose(r.embedding, out.embedding[0].numpy(), atol=1e-4, rtol=1e-4)
        assert r.framewise.shape == tuple(out.framewise_logits.shape[1:])
        np.testing.assert_allclose(r.framewise, torch.sigmoid(out.framewise_logits[0]).numpy(), atol=ATOL)
        if kind == "fine" and name == "a":  # finer steps: the model's steps past the file's own frames would move
            # its last frames, so the batch's framewise output must be spread from each file's own steps
            spec = model.spectrogram(wave)
            padded = torch.cat([spec, spec[:, -1:].expand(1, 320 - spec.shape[1], -1)], 1)
            with torch.no_grad():
                naive = model.forward_spectrogram(padded).framewise_logits[0, : spec.shape[1]]
            assert (naive - out.framewise_logits[0]).abs()[-8:].max() > 1e-3


def test_grid_batching_stays_off_where_it_would_change_results(files):
    """Shifted passes roll each input by its own length, and a model that does not pad onto a grid cannot take
    padded inputs: there, files of different lengths run one length at a time, with the same results."""
    model = _model("coarse")
    paths = [files[k] for k in ("a", "b", "d")]
    shifted = Tagger(model, device="cpu", shifts=2, shift_frames=4)
    calls = _counted(shifted)
    got = list(shifted.tag_files(paths, batch_size=8))
    assert sorted(c[1] for c in calls) == sorted([301, 301, 311, 311, 320, 320])  # two passes per length
    for p, r in zip(paths, got):
        np.testing.assert_allclose(r.scores, shifted.tag(p).scores, atol=ATOL)

    model.native_grid_frames = None
    plain = Tagger(model, device="cpu")
    calls = _counted(plain)
    list(plain.tag_files(paths, batch_size=8))
    assert sorted(calls) == [(1, 301), (1, 311), (1, 320)]


def test_files_sorted_by_length_batch_together_and_come_back_in_input_order(files, tmp_path):
    """In small batches, files of alternating lengths share batches with files of their own length once sorted,
    so fewer passes run; the results come in input order, a file that cannot be read keeps its place as an error,
    and they match the unsorted run's and each file's alone."""
    model = _model("coarse")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    paths = [files[k] for k in ("a", "e", "b", "e", "c", "e")] + [broken] + [files[k] for k in ("d", "e")]
    tagger = Tagger(model, device="cpu")
    calls = _counted(tagger)
    got = list(tagger.tag_files(paths, batch_size=2))
    # one window of 16: batches (broken, a), (b, c), (d, e), (e, e), (e); a group of one length runs as it is
    assert sorted(calls) == [(1, 301), (1, 320), (1, 322), (1, 322), (2, 311), (2, 322)]
    calls.clear()
    plain = list(tagger.tag_files(paths, batch_size=2, sort_by_length=False))
    assert len(calls) == 8  # (a, e), (b, e), (c, e), (broken, d), (e): two lengths in each but the last two
    assert [r.file for r in got] == [str(p) for p in paths] == [r.file for r in plain]
    assert [type(r).__name__ for r in got] == ["TagResult"] * 6 + ["FileError"] + ["TagResult"] * 2
    for r, q, p in zip(got, plain, paths):
        if p != broken:
            np.testing.assert_allclose(r.scores, q.scores, atol=ATOL)
            np.testing.assert_allclose(r.scores, tagger.tag(p).scores, atol=ATOL)


def test_length_order_sorts_within_windows_of_files_and_of_seconds(files, tmp_path):
    from audiomamba.inference.tagger import _LengthOrder

    missing = str(tmp_path / "missing.wav")
    paths = [str(files[k]) for k in ("e", "a", "short", "d")] + [missing, str(files["f"])]
    assert list(_LengthOrder(paths, files=3, seconds=1e9)) == [2, 1, 0, 4, 5, 3]  # unreadable first in its window
    assert len(_LengthOrder(paths, 3, 1e9)) == 6
    # windows close at 6 s of audio: (e, a) = 6.21 s, then (short, d, missing, f) = 6.74 s
    assert list(_LengthOrder(paths, files=100, seconds=6.0)) == [1, 0, 4, 2, 5, 3]
