"""--io-log PATH (issue 8, section 1): one line per guest IO operation, in order, the same under
every coalescing policy; an unwritable path is a one-line usage error."""

from __future__ import annotations

import re

import pytest

from .helpers import GUESTS, assemble, mask_clock_reads, pykvmm

pytestmark = pytest.mark.kvm

LINE = re.compile(r"^(pio|mmio) 0x[0-9a-f]+ [rw] [1248] 0x[0-9a-f]+$")


def test_io_log_format_and_content(tmp_path):
    g = tmp_path / "g.bin"
    g.write_bytes(assemble("""
        mov dx, 0x3ff
        mov al, 0x5a
        out dx, al          ; scratch register write
        in al, dx           ; reads 0x5a back (16550 datasheet: SCR holds what was written)
        mov ax, 0xb000
        mov es, ax
        mov byte [es:7], 0x33   ; the memory-mapped 16550's scratch register
        mov al, [es:7]
        mov ax, 0x1234
        out 0xe0, ax        ; an unclaimed port, 16 bits
        mov al, 0
        out 0xf4, al
    """))
    log = tmp_path / "io.log"
    r = pykvmm(str(g), "--no-firmware", "--coalesce", "off", "--io-log", str(log), "--serial", "null")
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == [
        "pio 0x3ff w 1 0x5a",
        "pio 0x3ff r 1 0x5a",
        "mmio 0xb0007 w 1 0x33",
        "mmio 0xb0007 r 1 0x33",
        "pio 0xe0 w 2 0x1234",
        "pio 0xf4 w 1 0x0",
    ]


def test_io_log_is_the_same_under_every_policy(tmp_path):
    logs = {}
    for policy in ("off", "fig5", "fig7", "trace"):
        log = tmp_path / f"{policy}.log"
        r = pykvmm(str(GUESTS / "uart_spin.bin"), "--coalesce", policy, "--io-log", str(log),
                   "--serial", "null")
        assert r.returncode == 0, r.stderr
        logs[policy] = log.read_text()
    lines = logs["off"].splitlines()
    assert len(lines) > 100_000 and all(LINE.match(ln) for ln in lines[:1000])
    assert any(ln == "pio 0x70 w 1 0xc" for ln in lines[:100])  # the guest reads register C
    reference = mask_clock_reads(logs["off"])
    for policy, text in logs.items():
        assert mask_clock_reads(text) == reference, policy


def test_unwritable_io_log_is_a_usage_error(tmp_path):
    r = pykvmm(str(GUESTS / "uart_spin.bin"), "--io-log", str(tmp_path / "no" / "such" / "x.log"))
    assert r.returncode == 2
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"pykvmm: error: --io-log {tmp_path / 'no' / 'such' / 'x.log'}: cannot open it for writing: " \
           "No such file or directory" in err
