"""--coalesce kvm-ring: KVM's coalesced IO ring gives the same output with fewer exits."""

from __future__ import annotations

import json

import pytest

from pykvmm.machine.coalesced_ring import USABLE_ENTRIES
from tests.kvm.helpers import GUESTS, assemble, pykvmm

pytestmark = pytest.mark.kvm


def _run(tmp_path, guest, policy, *extra):
    out, out2, js = tmp_path / f"{policy}.out", tmp_path / f"{policy}.out2", tmp_path / f"{policy}.json"
    p = pykvmm(str(guest), "--coalesce", policy, "--serial", f"file:{out}", "--serial2",
               f"file:{out2}", "--stats-json", str(js), *extra)
    assert p.returncode == 0, p.stderr.decode()
    return out.read_bytes(), out2.read_bytes(), json.loads(js.read_text())


def test_uart_spin_output_under_kvm_ring_equals_off(tmp_path):
    off, _, st_off = _run(tmp_path, GUESTS / "uart_spin.bin", "off")
    ring, _, st = _run(tmp_path, GUESTS / "uart_spin.bin", "kvm-ring")
    assert ring == off and len(off) == st["serial_bytes"] > 65536
    assert st["io_ops"] == st_off["io_ops"]
    co = st["coalesce"]
    assert co["policy"] == "kvm-ring"
    # every THR write went through the ring, so only the LSR reads (and setup IO) exit
    assert co["ring_writes"] == st["io_ops"]["by_port"]["0x3f8"]
    assert st["exits"]["io"] <= st_off["exits"]["io"] - co["ring_writes"] + 1


def test_mmio_uart_output_under_kvm_ring_equals_off(tmp_path):
    _, off2, st_off = _run(tmp_path, GUESTS / "mmio_uart.bin", "off", "--no-firmware")
    _, ring2, st = _run(tmp_path, GUESTS / "mmio_uart.bin", "kvm-ring", "--no-firmware")
    assert ring2 == off2 and off2
    assert st["coalesce"]["ring_writes"] == st["io_ops"]["mmio_by_addr"]["0xb0000"]
    assert st["exits"]["mmio"] < st_off["exits"]["mmio"]


def test_full_ring_falls_back_to_exits_in_order(tmp_path):
    """More THR writes than the ring holds, with no exit in between: KVM exits once the ring is
    full, and the drain before that exit keeps the bytes in order."""
    n = 3 * USABLE_ENTRIES + 7
    code = assemble(f"""
        mov dx, 0x3F8
        mov cx, {n}
        xor bx, bx
    again:
        mov al, bl
        and al, 0x3F
        add al, 0x30
        out dx, al
        inc bx
        loop again
        mov al, 0
        out 0xF4, al
        hlt
    """)
    guest = tmp_path / "burst.bin"
    guest.write_bytes(code)
    off, _, _ = _run(tmp_path, guest, "off", "--no-firmware")
    ring, _, st = _run(tmp_path, guest, "kvm-ring", "--no-firmware")
    assert ring == off == bytes(0x30 + (i & 0x3F) for i in range(n))
    assert st["coalesce"]["max_batch"] == USABLE_ENTRIES
