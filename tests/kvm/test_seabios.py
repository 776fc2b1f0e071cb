"""Debian's SeaBIOS, a firmware no one here wrote, boots under pykvmm to "No bootable device".

SeaBIOS prints its log on the Bochs/QEMU debug console (port 0x402) once it has read 0xE9 there.
With no disk it ends in "No bootable device.  Retrying in 60 seconds.", so the test stops pykvmm
with SIGTERM as soon as that text is on the console instead of waiting out the retry.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import GUESTS, ROOT

pytestmark = pytest.mark.kvm

SEABIOS = Path("/usr/share/seabios/bios.bin")  # Debian's `seabios` package (.ci/run installs it)
BANNER = b"SeaBIOS (version "  # SeaBIOS's first line on the debug console
NO_BOOT = b"No bootable device"
LIMIT_S = 60


@pytest.fixture
def seabios() -> Path:
    if not SEABIOS.exists():
        pytest.fail(f"{SEABIOS} is missing: apt-get install -y seabios (CI installs it in .ci/run)")
    return SEABIOS


def test_seabios_reaches_no_bootable_device(tmp_path, seabios):
    con = tmp_path / "debugcon.txt"
    stats = tmp_path / "stats.json"
    # Any guest will do: SeaBIOS never enters it (it looks for disks, and there are none).
    p = subprocess.Popen([sys.executable, "-m", "pykvmm", "--bios", str(seabios), "--debugcon", str(con),
                          "--serial", "null", "--stats-json", str(stats), "--timeout", str(LIMIT_S),
                          str(GUESTS / "uart_spin.bin")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start = time.monotonic()
    try:
        # SeaBIOS gets there in 6 to 12 s here.  pykvmm's file sinks are block buffered, so the
        # text may only reach the file when the run ends (at --timeout) and pykvmm flushes it; a
        # SIGTERM is sent only when the text shows clearly before that, never into the ending.
        while p.poll() is None and time.monotonic() - start < LIMIT_S - 5:
            if con.exists() and NO_BOOT in con.read_bytes():
                p.send_signal(signal.SIGTERM)
                break
            time.sleep(0.2)
        _, err = p.communicate(timeout=LIMIT_S + 30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = con.read_bytes()
    assert text.startswith(BANNER), (text[:200], err)
    assert NO_BOOT in text, (text[-500:], err)
    # It got there by itself: a SIGTERM (143) or the --timeout (124) ended the run, not a fault.
    assert p.returncode in (143, 124), err
    s = json.loads(stats.read_text())
    assert s["end"] in ("interrupt", "timeout")
    # The text came through port 0x402 one byte per OUT.
    assert s["io_ops"]["by_port"].get("0x402", 0) >= len(text)
