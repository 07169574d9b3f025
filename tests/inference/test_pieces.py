"""The piece planner and the stitcher (audiomamba.inference.pieces) against plans and results worked out by hand."""

import pytest
import torch

from audiomamba.inference.pieces import Piece, PiecePlan


@pytest.mark.parametrize(
    "frames, starts",
    [(80, [0]), (100, [0]), (101, [0, 1]), (251, [0, 50, 100, 150, 151]), (300, [0, 50, 100, 150, 200])],
)
def test_windows_every_hop_the_last_flush_with_the_end(frames, starts):
    pieces = PiecePlan.windowed(100, 50).pieces(frames)
    assert [p.start for p in pieces] == starts
    if frames <= 100:  # a short input is one window of its own length
        assert pieces == [Piece(0, frames, 0, frames)]
    else:
        assert all(p.length == 100 and (p.keep_from, p.keep_to) == (p.start, p.start + 100) for p in pieces)


def test_fold_models_windows():
    assert PiecePlan.windowed(1024, 512).pieces(1201) == [Piece(0, 1024, 0, 1024), Piece(177, 1024, 177, 1201)]


def test_native_chunks_keep_centres_that_tile_the_input():
    # chunks of 150 frames with 40 of context: centres of 70; the tail of 21 frames (< 40) joins the last centre
    assert PiecePlan.native(150, 40).pieces(301) == [
        Piece(0, 150, 0, 70), Piece(30, 150, 70, 140), Piece(100, 150, 140, 210), Piece(151, 150, 210, 301)
    ]
    assert PiecePlan.native(4, 1).pieces(7) == [Piece(0, 4, 0, 2), Piece(1, 4, 2, 4), Piece(3, 4, 4, 6), Piece(3, 4, 6, 7)]
    assert PiecePlan.native(150, 40).pieces(150) == [Piece(0, 150, 0, 150)]


def test_plans_refuse_bad_settings():
    with pytest.raises(ValueError, match="hop"):
        PiecePlan.windowed(10, 11)
    with pytest.raises(ValueError, match="overlap"):
        PiecePlan.native(10, 5)
    with pytest.raises(ValueError, match="aggregate"):
        PiecePlan.windowed(10, 5, aggregate="median")
    with pytest.raises(ValueError, match="mode"):
        PiecePlan("tiled", 10)
    with pytest.raises(ValueError, match="at least one frame"):
        PiecePlan.windowed(10, 5).pieces(0)


def _windowed_outputs(batch: tuple[int, ...] = ()):
    """Windows of 3 frames every 2 over 5 frames: pieces (0..2) and (2..4), with made-up outputs."""
    plan = PiecePlan.windowed(3, 2)
    pieces = plan.pieces(5)
    assert [p.start for p in pieces] == [0, 2]
    ones = torch.ones(*batch, 1)
    logits = [torch.tensor([1.0, 2.0]) * ones, torch.tensor([3.0, 6.0]) * ones]
    emb = [torch.tensor([1.0]) * ones, torch.tensor([3.0]) * ones]
    fw = [torch.tensor([[1.0], [2.0], [3.0]]) * ones[..., None], torch.tensor([[10.0], [20.0], [30.0]]) * ones[..., None]]
    return pieces, logits, emb, fw


@pytest.mark.parametrize("batch", [(), (2,)])
def test_windowed_mean_and_max(batch):
    pieces, logits, emb, fw = _windowed_outputs(batch)
    kept = [t.clone() for t in logits + emb + fw]
    for aggregate, want_logits, want_fw in [
        ("mean", [2.0, 4.0], [1.0, 2.0, 6.5, 20.0, 30.0]),  # frame 2 is in both windows: (3 + 10) / 2
        ("max", [3.0, 6.0], [1.0, 2.0, 10.0, 20.0, 30.0]),
    ]:
        st = PiecePlan.windowed(3, 2, aggregate).stitcher(5)
        for p, lg, e, f in zip(pieces, logits, emb, fw):
            st.add(p, lg, e, f)
        got_logits, got_fw, got_emb = st.result()
        assert got_logits.shape == (*batch, 2) and got_fw.shape == (*batch, 5, 1) and got_emb.shape == (*batch, 1)
        torch.testing.assert_close(got_logits, torch.tensor(want_logits).expand(*batch, 2))
        torch.testing.assert_close(got_fw[..., 0], torch.tensor(want_fw).expand(*batch, 5))
        torch.testing.assert_close(got_emb, torch.tensor([2.0]).expand(*batch, 1))  # embeddings: always the mean
    assert all(torch.equal(a, b) for a, b in zip(kept, logits + emb + fw))  # the pieces' outputs are left as they are


def test_native_centres_and_frame_weighted_mean():
    plan = PiecePlan.native(4, 1)
    pieces = plan.pieces(7)  # centres 0-1, 2-3, 4-5, 6: 2, 2, 2 and 1 frames
    st = plan.stitcher(7)
    for k, p in enumerate(pieces):
        # piece k's framewise output at input frame f is 100 k + f: the stitched frame shows which piece gave it
        fw = (100.0 * k + torch.arange(p.start, p.start + p.length, dtype=torch.float32))[:, None]
        st.add(p, torch.tensor([float(k)]), torch.tensor([float(k), 1.0]), fw)
    logits, fw, emb = st.result()
    torch.testing.assert_close(fw[:, 0], torch.tensor([0.0, 1.0, 102.0, 103.0, 204.0, 205.0, 306.0]))
    torch.testing.assert_close(logits, torch.tensor([(0 * 2 + 1 * 2 + 2 * 2 + 3 * 1) / 7]))
    torch.testing.assert_close(emb, torch.tensor([9 / 7, 1.0]))


def test_without_framewise_and_empty():
    plan = PiecePlan.windowed(3, 2)
    st = plan.stitcher(5)
    with pytest.raises(ValueError, match="no piece"):
        st.result()
    for p in plan.pieces(5):
        st.add(p, torch.zeros(2), torch.zeros(1))
    assert st.result()[1] is None


def test_centre_padding_centres_on_the_step_grid():
    from audiomamba.inference.pieces import MIN_INPUT_S, centre_padding, default_min_input_s

    assert centre_padding(1000, 1000) == (0, 0) and centre_padding(5000, 1000, 7) == (0, 0)
    assert centre_padding(100, 1000) == (450, 450)
    left, right = centre_padding(100, 1000, 320)  # half of 900 is 450: the step below it is 320
    assert (left, right) == (320, 580)
    for n in range(1, 3000, 37):
        left, right = centre_padding(n, 3000, 256)
        assert left % 256 == 0 and left + n + right == 3000 and 0 <= (3000 - n) // 2 - left < 256
    assert default_min_input_s("native") == MIN_INPUT_S > 0 and default_min_input_s("fold") == 0.0
    with pytest.raises(ValueError, match="align"):
        centre_padding(10, 100, 0)


def test_default_padding_never_exceeds_the_training_clip_length():
    from audiomamba.inference.pieces import MIN_INPUT_S, default_min_input_s, trained_clip_seconds

    trainer_saved = {"provenance": {"config": {"data": {"clip_seconds": 1.0}}}}
    shipped = {"provenance": {"training": {"config": {"data": {"clip_seconds": 10.0}}}}}
    assert trained_clip_seconds(trainer_saved) == 1.0 and trained_clip_seconds(shipped) == 10.0
    for meta in (None, {}, {"provenance": "text"}, {"provenance": {"config": {"data": {"clip_seconds": "x"}}}},
                 {"provenance": {"config": {"data": {"clip_seconds": True}}}}):
        assert trained_clip_seconds(meta) is None
    assert default_min_input_s("native", 1.0) == 1.0 and default_min_input_s("native", 10.0) == MIN_INPUT_S
    assert default_min_input_s("native", None) == MIN_INPUT_S and default_min_input_s("fold", 1.0) == 0.0
