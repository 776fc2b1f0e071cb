"""Shared helpers for the KVM tests: assemble snippets with nasm and run them."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "guests"


def assemble(source: str) -> bytes:
    """nasm a 16-bit snippet (org 0x7C00) into a flat binary."""
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "t.asm", Path(d) / "t.bin"
        src.write_text("bits 16\norg 0x7C00\n" + source + "\n")
        subprocess.run(["nasm", "-f", "bin", "-o", str(out), str(src)], check=True)
        return out.read_bytes()


def pykvmm(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pykvmm", *args], capture_output=True, cwd=ROOT,
                          timeout=timeout, **kw)


# CMOS registers whose value follows the host's wall clock (MC146818 datasheet: time and date
# 0x00-0x09, register A's UIP, register C's PF/AF/UF flags; IBM's century byte 0x32).  Their reads
# differ between any two runs of the same guest, whatever the policy: comparisons of IO logs
# mask them.
CMOS_CLOCK_REGS = set(range(0x0A)) | {0x0A, 0x0C, 0x32}


def mask_clock_reads(text: str) -> list[str]:
    out, index = [], None
    for ln in text.splitlines():
        if ln.startswith("pio 0x70 w 1 "):
            index = int(ln.rsplit(" ", 1)[1], 16) & 0x7F  # bit 7 is the NMI mask
        elif ln.startswith("pio 0x71 r 1 ") and index in CMOS_CLOCK_REGS:
            ln = "pio 0x71 r 1 <clock>"
        out.append(ln)
    return out
