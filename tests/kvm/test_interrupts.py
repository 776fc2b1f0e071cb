"""Interrupt delivery from the userspace PICs, the HLT sleep and device deadlines."""

import time

import psutil
import pytest

from pykvmm.machine.machine import Machine, MachineConfig

from .helpers import assemble

pytestmark = pytest.mark.kvm

# Program both PICs (IRQ0-7 -> 0x08, IRQ8-15 -> 0x70), unmask IRQ0 only, install an IRQ0 handler
# that counts into [0x500] and sends a non-specific EOI, then program PIT channel 0 in mode 2 with
# count COUNT, and sleep in `sti; hlt` until TICKS ticks have been counted.
TICK_GUEST = """
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    mov word [0x500], 0
    mov word [8*4], irq0
    mov word [8*4+2], 0
    mov al, 0x11
    out 0x20, al
    out 0xA0, al
    mov al, 0x08
    out 0x21, al
    mov al, 0x70
    out 0xA1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xA1, al
    mov al, 0x01
    out 0x21, al
    out 0xA1, al
    mov al, 0xFE
    out 0x21, al
    mov al, 0xFF
    out 0xA1, al
    mov al, 0x34
    out 0x43, al
    mov ax, COUNT
    out 0x40, al
    mov al, ah
    out 0x40, al
sleep:
    sti
    hlt
    cmp word [0x500], TICKS
    jb sleep
    cli
    xor al, al
    out 0xf4, al
irq0:
    inc word [0x500]
    push ax
    mov al, 0x20
    out 0x20, al
    pop ax
    iret
"""


def run_ticks(count: int, ticks: int):
    code = assemble(f"COUNT equ {count}\nTICKS equ {ticks}\n" + TICK_GUEST)
    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest(code)
        proc = psutil.Process()
        cpu0 = proc.cpu_times()
        t0 = time.monotonic()
        r = m.run(timeout=30)
        wall = time.monotonic() - t0
        cpu1 = proc.cpu_times()
        assert r.end == "debug-exit", r.detail
        return m, wall, (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)


def test_pit_irq0_is_delivered_at_the_programmed_rate():
    # 1193182 / 11932 = 100.0 Hz: 50 ticks take 0.5 s of host time.
    m, wall, _ = run_ticks(11932, 50)
    assert 0.45 <= wall <= 0.75
    assert m.irqs_injected >= 50


def test_hlt_sleep_uses_no_host_cpu_between_ticks():
    # 18.2 Hz, 10 ticks: about 0.55 s asleep; the process should use a small fraction of that.
    m, wall, cpu = run_ticks(0, 10)
    assert 0.45 <= wall <= 0.8
    assert cpu < 0.25 * wall
