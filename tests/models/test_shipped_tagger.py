"""The tagger that ships inside the package: present, small, self-describing, and trained (not random)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiomamba.checkpoint import load, read_meta
from audiomamba.models.pretrained import DEFAULT_TAGGER, CheckpointError, list_pretrained, pretrained_path

PHONE = Path("/usr/share/sounds/freedesktop/stereo/phone-incoming-call.oga")  # Debian sound-theme-freedesktop


def test_default_tagger_ships_with_labels_provenance_and_metrics():
    assert DEFAULT_TAGGER in list_pretrained()
    path = pretrained_path()
    assert path.stat().st_size <= 30e6
    meta = read_meta(path)
    assert meta["model"]["name"] == "audiomamba_micro_v2" and meta["multi_label"] is True
    names = [lab["display_name"] for lab in meta["labels"]]
    assert len(names) == 53 and len(set(names)) == 53 and "Speech" in names
    prov = meta["provenance"]
    # stages 1 to 10, 12, 13, 15 and 16 (11 and 14 were not shipped), each initialised from the one before: from
    # stage 3 on with the bank's source augmentation, from stage 8 on with finer time steps, stage 12 on the bank with
    # Tux Paint's sounds, stage 13 with Hedgewars' and the desktop themes' sounds, stage 15 with Sonic Pi's and
    # Teeworlds', stage 16 (the weight average of two runs) with GCompris' and qABCs'
    assert prov["dtype"] == "float16" and prov["config"] == "configs/pretrain_micro_v2_augment.yaml"
    runs = [r["provenance"] for r in prov["training"]["averaged_from"]]
    assert len(runs) == 2 and sorted(r["config"]["train"]["seed"] for r in runs) == [19, 20]
    assert all(r["config"]["augment"]["source_speed"] > 0 and r["config"]["model"]["step_frames"] == 8 for r in runs)
    chain = [prov["initialised_from"]]
    while "initialised_from" in chain[-1]:
        chain.append(chain[-1]["initialised_from"])
    assert meta["model"]["args"]["step_frames"] == 8
    assert [c["config"] for c in chain] == ["configs/pretrain_micro_v2_augment.yaml"] * 11 + [
        "configs/pretrain_micro_v2_continue.yaml", "configs/pretrain_micro_v2.yaml"]
    assert 0 < prov["event_threshold"] < 1  # chosen on validation: the tagger's default for events
    assert prov["test_metrics"]["mAP"] > 0.5  # measured on the bank's held-out test sources
    assert sum(lic["recordings"] for lic in prov["data"]["licences"]) == prov["data"]["source_bank"]["recordings"]


def test_shipped_weights_load_as_float32_and_differ_from_an_initialised_model():
    import audiomamba

    model = load(pretrained_path())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    fresh = audiomamba.create_model(model.meta["model"]["name"], **model.meta["model"]["args"])
    trained, init = model.state_dict(), fresh.state_dict()
    assert trained.keys() == init.keys()
    moved = [k for k in trained if trained[k].is_floating_point() and trained[k].numel() > 1
             and not torch.allclose(trained[k], init[k].to(trained[k].dtype), atol=1e-3)]
    assert len(moved) > 0.9 * sum(1 for k in trained if trained[k].is_floating_point() and trained[k].numel() > 1)


@pytest.mark.skipif(not PHONE.is_file(), reason="needs Debian's sound-theme-freedesktop (scripts/setup_sources.sh)")
def test_shipped_tagger_recognises_a_ringing_phone():
    from audiomamba import Tagger

    result = Tagger.from_checkpoint(pretrained_path()).tag(PHONE)
    assert result.tags[0][0] == "Telephone bell ringing" and result.tags[0][1] > 0.5


def test_unknown_shipped_name_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="no shipped tagger named 'nope'"):
        pretrained_path("nope")
