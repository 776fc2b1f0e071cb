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
