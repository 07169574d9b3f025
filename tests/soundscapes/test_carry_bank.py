"""scripts/carry_bank.sh: the bank travels to the GPU machine without its test stream and with its index gzipped,
and comes back byte for byte; the copy trains and validates, and refuses the test split in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomamba.datasets import DatasetError, open_split
from audiomamba.soundscapes.bank import build_bank
from audiomamba.soundscapes.mixer import MixConfig
from audiomamba.soundscapes.sources import user_items

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "carry_bank.sh"
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "gzip", "sha256sum")),
                                reason="needs bash, gzip and sha256sum")
SR = 16000


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True)


def _bank(root: Path) -> None:
    rng = np.random.default_rng(0)
    src = root / "sources"
    for label, f in {"Dog": 440.0, "Piano": 880.0, "Bell": 1320.0}.items():
        (src / label).mkdir(parents=True)
        for i in range(6):
            t = np.arange(int(rng.uniform(0.3, 1.0) * SR)) / SR
            sf.write(src / label / f"{i}.wav", 0.3 * np.sin(2 * np.pi * f * (1 + 0.03 * i) * t), SR)
    items, _ = user_items(src)
    build_bank(items, root / ".bank", sample_rate=SR, max_seconds=1.0, jobs=1,
               mix=MixConfig(duration=2.0, sample_rate=SR, max_events=2, max_event_s=1.0),
               clips={"train": 8, "validation": 4, "test": 4})


def test_pack_then_unpack_elsewhere_restores_train_and_validation_and_refuses_a_damaged_copy(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    _bank(here)
    packed = _run(here, "pack")
    assert packed.returncode == 0, packed.stderr
    carry = here / ".bank_carry"
    assert sorted(p.name for p in carry.iterdir()) == ["SHA256SUMS", "bank.json.gz", "train.ogg", "validation.ogg"]
    assert (carry / "bank.json.gz").stat().st_size < (here / ".bank" / "bank.json").stat().st_size / 2

    there.mkdir()
    shutil.copytree(carry, there / ".bank_carry")  # what the device call carries
    (there / ".bank").mkdir()
    (there / ".bank" / "test.ogg").write_bytes(b"stale")  # left by an earlier bank: removed, not paired
    restored = _run(there, "unpack")
    assert restored.returncode == 0, restored.stderr
    for name in ("bank.json", "train.ogg", "validation.ogg"):
        assert (there / ".bank" / name).read_bytes() == (here / ".bank" / name).read_bytes()
    assert not (there / ".bank" / "test.ogg").exists()
    # the copy plans and renders the same validation clips; the test split is refused naming its stream
    for split in ("train", "validation"):
        a, b = open_split(here / ".bank", split), open_split(there / ".bank", split)
        assert [(c.targets, c.events) for c in a.clips] == [(c.targets, c.events) for c in b.clips]
    with pytest.raises(DatasetError, match=r"test\.ogg: missing; this copy of the bank holds only train, validation"):
        open_split(there / ".bank", "test")

    # a copy damaged on the way: a stream differs from the checksum, or the index does not decompress
    (there / ".bank_carry" / "validation.ogg").write_bytes(b"not the bank")
    assert _run(there, "unpack").returncode == 5
    shutil.rmtree(there / ".bank_carry")
    shutil.copytree(carry, there / ".bank_carry")
    gz = there / ".bank_carry" / "bank.json.gz"
    gz.write_bytes(gz.read_bytes()[:-20])
    damaged = _run(there, "unpack")
    assert damaged.returncode == 5 and "damaged" in damaged.stderr


def test_pack_without_a_bank_and_an_unknown_mode_are_errors(tmp_path):
    missing = _run(tmp_path, "pack", "nowhere")
    assert missing.returncode == 5 and "audiomamba data bank --out nowhere" in missing.stderr
    assert _run(tmp_path, "sideways").returncode == 2
    assert _run(tmp_path, "unpack").returncode == 5
