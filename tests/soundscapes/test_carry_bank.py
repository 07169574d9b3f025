"""scripts/carry_bank.sh: the bank travels to the GPU machine with its index gzipped and comes back byte for byte."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "carry_bank.sh"
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "gzip", "sha256sum")),
                                reason="needs bash, gzip and sha256sum")


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True)


def test_pack_then_unpack_elsewhere_restores_the_bank_and_refuses_a_damaged_copy(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    (here / ".bank").mkdir(parents=True)
    rows = ", ".join(f'["k{i}", "Bell"]' for i in range(3000))
    index = '{"format": "audiomamba-source-bank", "recordings": [' + rows + "]}"
    (here / ".bank" / "bank.json").write_text(index)
    (here / ".bank" / "bank.ogg").write_bytes(bytes(range(256)) * 64)
    packed = _run(here, "pack")
    assert packed.returncode == 0, packed.stderr
    carry = here / ".bank_carry"
    assert sorted(p.name for p in carry.iterdir()) == ["SHA256SUMS", "bank.json.gz", "bank.ogg"]
    assert (carry / "bank.json.gz").stat().st_size < len(index) / 4  # what makes the one-call carry fit

    there.mkdir()
    shutil.copytree(carry, there / ".bank_carry")  # what the device call carries
    restored = _run(there, "unpack")
    assert restored.returncode == 0, restored.stderr
    for name in ("bank.json", "bank.ogg"):
        assert (there / ".bank" / name).read_bytes() == (here / ".bank" / name).read_bytes()

    # a copy damaged on the way: the ogg differs from the checksum, or the index does not decompress
    (there / ".bank_carry" / "bank.ogg").write_bytes(b"not the bank")
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
