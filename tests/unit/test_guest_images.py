"""Each committed guest and firmware image is what its source assembles to."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("nasm") is None, reason="needs nasm (apt-get install -y nasm)")
def test_committed_images_match_a_fresh_build():
    r = subprocess.run([sys.executable, "scripts/build_guests.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_boot_sector_guests_fit_and_carry_the_signature():
    for name in ("uart_spin", "out_loop"):
        data = (ROOT / "guests" / f"{name}.bin").read_bytes()
        assert len(data) == 512 and data[510:] == b"\x55\xaa", name
