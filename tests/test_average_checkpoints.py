"""scripts/average_checkpoints.py: the mean of checkpoints' weights, against a mean computed here, and its refusals."""

from __future__ import annotations

import pytest
import torch

from conftest import load_script


def _save(tmp_path, name: str, seed: int, labels=("a", "b", "c"), dtype=None, **args):
    import audiomamba
    from audiomamba.checkpoint import save_model

    torch.manual_seed(seed)
    model = audiomamba.create_model("audiomamba_nano", num_classes=len(labels), layout="native", **args)
    for key, buf in model.named_buffers():
        if key.endswith("num_batches_tracked"):
            buf.fill_(10 * seed + 1)  # counters differ between runs
    return save_model(model, tmp_path / f"{name}.safetensors", labels=list(labels), dtype=dtype,
                      provenance={"run": name})


def test_soup_is_the_mean_of_the_weights_and_records_its_inputs(tmp_path):
    from safetensors.torch import load_file

    from audiomamba.checkpoint import load, read_meta

    paths = [_save(tmp_path, "a", 1), _save(tmp_path, "b", 2), _save(tmp_path, "c", 3, dtype=torch.float16)]
    out = tmp_path / "soup.safetensors"
    assert load_script("average_checkpoints").main(["--out", str(out), *map(str, paths)]) == 0
    states = [load_file(str(p)) for p in paths]
    soup = load_file(str(out))
    floats = [k for k, v in states[0].items() if v.is_floating_point()]
    assert floats
    for k in floats:
        want = sum(s[k].double() for s in states) / 3  # the float16 input counts as it is stored
        torch.testing.assert_close(soup[k].double(), want, rtol=0, atol=1e-6)
        assert soup[k].dtype == torch.float32
    counters = [k for k, v in states[0].items() if not v.is_floating_point()]
    assert counters
    for k in counters:  # not averaged: the first input's, with their dtype
        assert torch.equal(soup[k], states[0][k]) and soup[k].dtype == states[0][k].dtype
    differs = [k for k in floats if not torch.equal(states[0][k], states[1][k])]
    assert differs, "the inputs must differ for the mean to mean something"
    prov = read_meta(out)["provenance"]["averaged_from"]
    assert [p["provenance"]["run"] for p in prov] == ["a", "b", "c"]
    assert load(out)(torch.zeros(1, 32000)).logits.shape == (1, 3)  # a loadable model


@pytest.mark.parametrize("other", [dict(labels=("a", "b", "x")), dict(drop_path_rate=0.2)])
def test_different_models_or_labels_are_refused_naming_the_file(tmp_path, capsys, other):
    a = _save(tmp_path, "a", 1)
    b = _save(tmp_path, "b", 2, **other)
    out = tmp_path / "soup.safetensors"
    assert load_script("average_checkpoints").main(["--out", str(out), str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(b) in err
    assert not out.exists()


def test_one_checkpoint_is_refused(tmp_path, capsys):
    a = _save(tmp_path, "a", 1)
    assert load_script("average_checkpoints").main(["--out", str(tmp_path / "s.safetensors"), str(a)]) == 2
    assert "at least two" in capsys.readouterr().err
