import json

import numpy as np
import pytest
import torch

import audiomamba
from audiomamba import Tagger
from audiomamba.audio import AudioDecodeError
from audiomamba.checkpoint import CheckpointError
from audiomamba.inference.tagger import FileError

from conftest import SR, noise


def model_probs(model, wave):
    with torch.inference_mode():
        out = model(torch.from_numpy(wave)[None])
    fw = None if out.framewise_logits is None else torch.sigmoid(out.framewise_logits[0]).numpy()
    return torch.sigmoid(out.logits[0]).numpy(), fw, out.embedding[0].numpy()


def centred(wave, seconds, step):
    """``wave`` in the middle of zeros lasting ``seconds``, its start on a multiple of ``step`` samples."""
    total = int(round(seconds * SR)) - len(wave)
    left = (total // 2) // step * step
    return np.concatenate([np.zeros(left, np.float32), wave, np.zeros(total - left, np.float32)]), left


def test_tag_matches_model_forward(tagger):
    """A short input is the model's forward on it centred in 2.5 s of silence, its framewise output cut back to the
    input's own frames."""
    wave = noise(1.3)
    assert tagger.min_input_s == 2.5
    result = tagger.tag(wave, sample_rate=SR, top_k=2)
    hop = tagger.model.frontend.cfg.hop_length
    padded, left = centred(wave, 2.5, hop * tagger.model.step_frames)
    assert left > 0 and left % (hop * tagger.model.step_frames) == 0
    scores, fw, emb = model_probs(tagger.model, padded)
    fw = fw[left // hop : left // hop + 1 + len(wave) // hop]
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    assert [lab for lab, _ in result.tags] == [tagger.labels[i] for i in np.argsort(-scores)[:2]]
    assert result.duration_s == pytest.approx(1.3)
    d = result.to_dict()
    assert set(d) == {"file", "duration_s", "tags", "events"} and set(d["tags"][0]) == {"label", "score"}
    json.dumps(d)
    det = tagger.detect(wave, sample_rate=SR, threshold=0.0)
    assert det.framewise.shape == (1 + len(wave) // 320, 3)
    np.testing.assert_allclose(det.framewise, fw, atol=1e-5)
    assert {e.label for e in det.events} == set(tagger.labels)  # threshold 0: every class active throughout
    np.testing.assert_allclose(tagger.embed(torch.from_numpy(wave), sample_rate=SR), emb, atol=1e-5)


def test_short_inputs_padding_options(tagger):
    """min_input_s=0 runs the input as it is; an input at least min_input_s long is never padded; events of a
    padded input keep the input's own time line; the option is checked."""
    wave = noise(1.3)
    raw = Tagger(tagger.model, min_input_s=0)
    scores, fw, _ = model_probs(tagger.model, wave)
    np.testing.assert_allclose(raw.tag(wave, sample_rate=SR).scores, scores, atol=1e-5)
    assert np.abs(tagger.tag(wave, sample_rate=SR).scores - scores).max() > 1e-3  # the padding changes them
    longer = noise(2.2, seed=9)
    two = Tagger(tagger.model, min_input_s=2.0)
    np.testing.assert_allclose(two.tag(longer, sample_rate=SR).scores, model_probs(tagger.model, longer)[0], atol=1e-5)
    loud = np.zeros(int(1.3 * SR), np.float32)
    loud[int(0.4 * SR): int(0.9 * SR)] = 0.5 * noise(0.5, seed=2)
    det = tagger.detect(loud, sample_rate=SR, threshold=0.0)
    assert det.framewise.shape == (1 + len(loud) // 320, 3) and det.duration_s == pytest.approx(1.3)
    assert all(0.0 <= e.onset <= e.offset <= 1.3 + 1e-6 for e in det.events)
    assert Tagger(tagger.model, mode="windowed", window_s=1.0, hop_s=0.5).min_input_s == 0.0
    saved_meta = tagger.model.meta
    try:  # a model trained on 1 s clips takes 1 s inputs as they are
        tagger.model.meta = dict(saved_meta, provenance={"config": {"data": {"clip_seconds": 1.0}}})
        assert Tagger(tagger.model).min_input_s == 1.0
    finally:
        tagger.model.meta = saved_meta
    assert Tagger(tagger.model, chunk_s=2.0, chunk_overlap_s=0.5).min_input_s == 2.0
    with pytest.raises(ValueError, match="min_input_s"):
        Tagger(tagger.model, min_input_s=-1.0)
    with pytest.raises(ValueError, match="min_input_s"):
        Tagger(tagger.model, chunk_s=3.0, chunk_overlap_s=1.0, min_input_s=4.0)


def test_shifted_passes_are_averaged_with_each_framewise_output_moved_back(tagger):
    """shifts=3, shift_frames=5: the mean of the model's logits over the input rolled by 0, 5 and 10 frames, each
    framewise output rolled back by as many frames before the mean (the reference is the model's own forward)."""
    wave = noise(1.3)
    hop = tagger.model.frontend.cfg.hop_length
    logits, fws = [], []
    with torch.inference_mode():
        for k in (0, 5, 10):
            out = tagger.model(torch.from_numpy(np.roll(wave, k * hop))[None])
            logits.append(out.logits[0])
            fws.append(torch.roll(out.framewise_logits[0], -k, dims=0))
    shifted = Tagger(tagger.model, labels=tagger.labels, shifts=3, shift_frames=5, min_input_s=0)
    det = shifted.detect(wave, sample_rate=SR, threshold=0.5)
    np.testing.assert_allclose(det.scores, torch.sigmoid(sum(logits) / 3).numpy(), atol=1e-5)
    np.testing.assert_allclose(det.framewise, torch.sigmoid(sum(fws) / 3).numpy(), atol=1e-5)
    one = Tagger(tagger.model, labels=tagger.labels, min_input_s=0)
    assert np.abs(det.framewise - one.detect(wave, sample_rate=SR).framewise).max() > 1e-3  # not one pass
    with pytest.raises(ValueError, match="shifts and shift_frames must be >= 1"):
        Tagger(tagger.model, shifts=0)


def test_shifted_passes_of_a_padded_input(tagger):
    """Shifts and padding together: the shifted passes run on the centred input, and the mean framewise output
    is cut back to the input's own frames."""
    wave = noise(1.1, seed=7)
    hop = tagger.model.frontend.cfg.hop_length
    padded, left = centred(wave, tagger.min_input_s, hop * tagger.model.step_frames)
    logits, fws = [], []
    with torch.inference_mode():
        for k in (0, 4):
            out = tagger.model(torch.from_numpy(np.roll(padded, k * hop))[None])
            logits.append(out.logits[0])
            fws.append(torch.roll(out.framewise_logits[0], -k, dims=0))
    det = Tagger(tagger.model, shifts=2, shift_frames=4).detect(wave, sample_rate=SR, threshold=0.5)
    first = left // hop
    np.testing.assert_allclose(det.scores, torch.sigmoid(sum(logits) / 2).numpy(), atol=1e-5)
    want = torch.sigmoid(sum(fws) / 2).numpy()[first : first + 1 + len(wave) // hop]
    np.testing.assert_allclose(det.framewise, want, atol=1e-5)


def test_single_label_checkpoint_uses_softmax(tmp_path):
    torch.manual_seed(1)
    model = audiomamba.create_model("audiomamba_nano", num_classes=4, layout="native", head="linear")
    path = audiomamba.save_model(model, tmp_path / "sl.safetensors", multi_label=False)
    t = Tagger.from_checkpoint(path)
    r = t.tag(noise(0.5), sample_rate=SR, top_k=4)
    assert r.scores.sum() == pytest.approx(1.0, abs=1e-5)
    assert r.labels == [f"class_{i}" for i in range(4)]
    with pytest.raises(ValueError, match="linear head"):
        t.detect(noise(0.5), sample_rate=SR)


def test_resampled_stereo_file_and_integer_arrays(tagger, audio_dir):
    r = tagger.tag(audio_dir / "sub" / "other.flac")
    assert r.duration_s == pytest.approx(1.5, abs=1e-3) and r.file.endswith("other.flac")
    pcm = (noise(0.6, 16000) * 32767).astype(np.int16)
    a = tagger.tag(pcm, sample_rate=16000)
    b = tagger.tag(pcm.astype(np.float32) / 32768, sample_rate=16000)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    stereo = np.stack([pcm, pcm])  # (channels, samples)
    np.testing.assert_allclose(tagger.tag(stereo, sample_rate=16000).scores, a.scores, atol=1e-6)


def test_bad_inputs_have_clear_messages(tagger, audio_dir, tmp_path):
    with pytest.raises(ValueError, match="sample_rate is required"):
        tagger.tag(noise(0.5))
    bad = noise(0.5)
    bad[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tagger.tag(bad, sample_rate=SR)
    with pytest.raises(ValueError, match="empty"):
        tagger.tag(np.zeros(0, np.float32), sample_rate=SR)
    with pytest.raises(ValueError, match="empty"):
        tagger.tag(audio_dir / "empty.wav")
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        tagger.tag(tmp_path / "nope.wav")
    with pytest.raises(AudioDecodeError, match="corrupt.wav"):
        tagger.tag(audio_dir / "corrupt.wav")
    with pytest.raises(AudioDecodeError, match="directory"):
        tagger.tag(audio_dir)
    with pytest.raises(TypeError, match="path, a numpy array or a torch tensor"):
        tagger.tag([0.0] * 1000)
    with pytest.raises(ValueError, match="channel axis"):
        tagger.tag(np.zeros((100, 100), np.float32), sample_rate=SR)
    r = tagger.tag(audio_dir / "silent.wav")
    assert any("silent" in w for w in r.warnings)
    short = tagger.tag(noise(0.005), sample_rate=SR)  # 160 samples < the STFT's 513: padded, with a warning
    assert any("zero-padded" in w for w in short.warnings)


def test_checkpoint_config_weights_mismatch(nano_ckpt, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(nano_ckpt), framework="pt") as f:
        meta = json.loads(f.metadata()["audiomamba"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["model"]["args"]["num_classes"] = 5
    meta["labels"] = [{"index": i, "mid": "", "display_name": str(i)} for i in range(5)]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"audiomamba": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not match|in the file but"):
        Tagger.from_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        Tagger.from_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        Tagger.from_checkpoint(junk)


@pytest.mark.parametrize("frames", [1, 300, 30000, 30001, 95999, 180001])
def test_native_chunks_tile_the_input(tagger, frames):
    t = Tagger(tagger.model, mode="native", chunk_s=100.0, chunk_overlap_s=5.0)
    pieces = t.plan.pieces(frames)
    covered = np.zeros(frames, int)
    for start, length, keep_a, keep_b in pieces:
        assert 0 <= start and start + length <= frames and start <= keep_a < keep_b <= start + length
        covered[keep_a:keep_b] += 1
        if len(pieces) > 1:  # equal lengths: they batch together; overlap context on inner sides
            assert length == t.chunk_frames
            assert keep_a == 0 or keep_a - start >= t.overlap_frames
            assert keep_b == frames or start + length - keep_b >= t.overlap_frames
    assert (covered == 1).all()


def test_native_chunked_long_input_runs_and_single_pass_agrees(tagger):
    wave = noise(3.0)
    one = Tagger(tagger.model, mode="native", min_input_s=0).detect(wave, sample_rate=SR, threshold=0.0)
    chunked = Tagger(tagger.model, mode="native", chunk_s=1.5, chunk_overlap_s=0.4)
    assert len(chunked.plan.pieces(301)) == 4  # cores of 70 frames, the last absorbs a tail shorter than the overlap
    r = chunked.detect(wave, sample_rate=SR, threshold=0.0)
    assert r.framewise.shape == one.framewise.shape
    assert np.isfinite(r.framewise).all() and np.isfinite(r.scores).all()
    # every chunk's centre is the model's own framewise output on that chunk
    spec = chunked.spectrogram(wave)
    with torch.inference_mode():
        s, n, a, b = chunked.plan.pieces(301)[1]
        out = chunked.model.forward_head(*chunked.model.forward_features(spec[None, s : s + n]), n)
    np.testing.assert_allclose(r.framewise[a:b], torch.sigmoid(out.framewise_logits[0, a - s : b - s]).numpy(), atol=1e-5)


def test_native_mode_runs_a_fold_model_without_switching_its_layout():
    """The layout is an argument of the forward: a tagger in native mode leaves a shared fold model as it is."""
    torch.manual_seed(5)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3).eval()  # fold layout
    seen = []
    model.head.register_forward_hook(lambda *_: seen.append(model.layout))
    t = Tagger(model, mode="native")
    assert t.layout == "native" and model.layout == "fold"
    r = t.detect(noise(1.5, seed=6), sample_rate=SR, threshold=0.5)
    assert seen and set(seen) == {"fold"} and model.layout == "fold"
    with torch.inference_mode():
        want = model(torch.from_numpy(noise(1.5, seed=6))[None], layout="native")
    np.testing.assert_allclose(r.scores, torch.sigmoid(want.logits[0]).numpy(), atol=1e-5)
    np.testing.assert_allclose(r.framewise, torch.sigmoid(want.framewise_logits[0]).numpy(), atol=1e-5)


def test_windowed_mean_and_max(tagger):
    wave = noise(2.5, seed=3)
    mean = Tagger(tagger.model, mode="windowed", window_s=1.0, hop_s=0.5)
    mx = Tagger(tagger.model, mode="windowed", window_s=1.0, hop_s=0.5, aggregate="max")
    starts = [s for s, *_ in mean.plan.pieces(251)]
    assert starts == [0, 50, 100, 150, 151]  # the last window flush with the end
    spec = mean.spectrogram(wave)
    with torch.inference_mode():
        logits = torch.stack([tagger.model.forward_head(*tagger.model.forward_features(spec[None, s : s + 100]), 100).logits[0] for s in [0, 50, 100, 150, 151]])
    r_mean, r_max = mean.tag(wave, sample_rate=SR), mx.tag(wave, sample_rate=SR)
    np.testing.assert_allclose(r_mean.scores, torch.sigmoid(logits.mean(0)).numpy(), atol=1e-5)
    np.testing.assert_allclose(r_max.scores, torch.sigmoid(logits.max(0).values).numpy(), atol=1e-5)


def test_windowed_reproduces_fold_models_own_long_input_inference(tmp_path):
    """window 10.24 s / hop 5.12 s = what a fold-layout model does by itself (HTS-AT)."""
    torch.manual_seed(2)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3)  # fold layout, the paper's
    t = Tagger(model, mode="windowed", window_s=10.24, hop_s=5.12)
    wave = noise(11.0, seed=4)
    scores, fw, _ = model_probs(model, wave)
    r = t.detect(wave, sample_rate=SR, threshold=0.5)
    np.testing.assert_allclose(r.scores, scores, atol=1e-5)
    np.testing.assert_allclose(r.framewise, fw, atol=1e-5)


def test_tag_files_batched_in_order_with_errors(tagger, audio_dir):
    paths = [audio_dir / "good.wav", audio_dir / "corrupt.wav", audio_dir / "missing.wav", audio_dir / "sub" / "other.flac", audio_dir / "good.wav"]
    out = list(tagger.tag_files(paths, batch_size=3, events=True, threshold=0.5))
    assert [type(o).__name__ for o in out] == ["TagResult", "FileError", "FileError", "TagResult", "TagResult"]
    assert out[1].kind == "decode" and "corrupt.wav" in out[1].message
    assert out[2].kind == "not_found"
    single = tagger.tag(audio_dir / "good.wav")
    np.testing.assert_allclose(out[0].scores, single.scores, atol=1e-5)
    np.testing.assert_allclose(out[4].scores, single.scores, atol=1e-5)
    assert out[0].framewise is not None and out[0].embedding is None
    emb = next(iter(tagger.embed_files([audio_dir / "good.wav"])))
    np.testing.assert_allclose(emb.embedding, tagger.embed(audio_dir / "good.wav"), atol=1e-5)


def test_tag_files_in_worker_processes_match_in_process(tagger, audio_dir):
    """Decoding in DataLoader workers (waves come back as shared-memory tensors) changes nothing, errors included."""
    paths = [audio_dir / "good.wav", audio_dir / "corrupt.wav", audio_dir / "sub" / "other.flac"]
    here = list(tagger.tag_files(paths, events=True, num_workers=0))
    there = list(tagger.tag_files(paths, events=True, num_workers=2))
    assert [type(o).__name__ for o in there] == ["TagResult", "FileError", "TagResult"]
    for a, b in zip(here, there):
        if isinstance(a, FileError):
            assert (a.file, a.kind) == (b.file, b.kind)
            continue
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.framewise, b.framewise)
        assert a.duration_s == b.duration_s and a.events == b.events


def test_cuda_request_without_cuda_is_clear(nano_ckpt):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Tagger.from_checkpoint(nano_ckpt, device="cuda")


def test_cuda_graph_needs_a_cuda_device(tagger):
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device; this tagger runs on cpu"):
        Tagger(tagger.model, device="cpu", cuda_graph=True)


def test_keep_freed_memory_context_allocates_and_restores():
    from audiomamba.utils.memory import keep_freed_memory

    for enabled in (True, False):
        with keep_freed_memory(enabled):
            big = torch.ones(50_000_000 // 4)  # above glibc's largest mmap threshold (32 MB)
            assert float(big.sum()) == big.numel()
            del big
    after = torch.ones(50_000_000 // 4)  # malloc works as before once the context is left
    assert float(after.sum()) == after.numel()


def test_default_window_holds_a_ten_second_clip_in_one_piece():
    """10.0 s at 32 kHz is 1001 frames: one 10.24 s window (1024 frames, what the fold layout holds), not two."""
    torch.manual_seed(3)
    model = audiomamba.create_model("audiomamba_nano", num_classes=3).eval()  # fold layout: windowed by default
    t = Tagger(model)
    assert t.mode == "windowed" and (t.window_frames, t.hop_frames) == (1024, 512)
    assert t.plan.pieces(1001) == [(0, 1001, 0, 1001)] and len(t.plan.pieces(1024)) == 1
    assert len(t.plan.pieces(1025)) == 2
    wave = noise(10.0, seed=7)
    scores, _, _ = model_probs(model, wave)  # the fold model's own forward: one pass over 1001 frames
    np.testing.assert_allclose(t.tag(wave, sample_rate=SR).scores, scores, atol=1e-5)
    # an input that was one piece under the old default (10.0 s / 5.0 s) gives the same result as before
    old = Tagger(model, window_s=10.0, hop_s=5.0)
    short = noise(4.0, seed=8)
    np.testing.assert_array_equal(t.tag(short, sample_rate=SR).scores, old.tag(short, sample_rate=SR).scores)


def test_event_threshold_defaults_to_the_models_own(nano_ckpt):
    """A checkpoint whose provenance names an event threshold (chosen on validation data) gets it as the events'
    default; one without gets 0.5."""
    from audiomamba.checkpoint import load

    wave = noise(3.0)
    plain = Tagger.from_checkpoint(nano_ckpt)
    assert plain.event_threshold == 0.5
    probs = plain.detect(wave, SR, threshold=1.0).framewise
    own = float(np.quantile(probs, 0.95))  # some frames above it, most below
    model = load(nano_ckpt)
    model.meta = {**model.meta, "provenance": {**(model.meta.get("provenance") or {}), "event_threshold": own}}
    tagger = Tagger(model)
    assert tagger.event_threshold == own
    events = tagger.detect(wave, SR).events
    assert events and events == tagger.detect(wave, SR, threshold=own).events
    assert events != tagger.detect(wave, SR, threshold=0.5).events
