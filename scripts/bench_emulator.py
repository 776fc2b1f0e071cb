#!/usr/bin/env python3
"""Emulator speed: ns per emulated instruction on three workloads, after warm-up.

  (a) uart_spin: the polled-UART loop (IN from a 16550-like LSR reporting THRE, TEST, JZ,
      load a byte, OUT to THR, LOOP) with a real PortBus and a fake device in the loop;
  (b) alu: an ALU- and flag-heavy loop (ADD ADC SUB SBB XOR AND SHL ROR CMP INC DEC, Jcc);
  (c) guest: the whole of guests/uart_spin.bin (line generation and the unrolled polled
      output) in the emulator alone, with the real 16550 and an output sink to /dev/null, in
      runs of 4096 instructions, IO window 1000 and a 2 ms deadline (what --coalesce trace
      --extent auto asks of it): what coalescing costs per printed byte without any exit.

Usage: python scripts/bench_emulator.py [--insns N] [--repeat R]
Prints, over R runs of N instructions each, the best and the median CPU time per instruction
(thread CPU time, so other processes on a shared host distort it less than wall time) and the
best wall time; for (c), R whole runs of the guest, each with its CPU time per instruction and per
printed byte: the first builds its blocks (compiling them unless the code cache on disk has them;
PYKVMM_CODE_CACHE=off for a cold start), the others find them built.
Issue 4 target: <= 150 ns/insn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pykvmm.machine.bus import MmioBus, PortBus  # noqa: E402
from pykvmm.machine.memory import GuestMemory  # noqa: E402
from pykvmm.x86 import CpuState, Emulator  # noqa: E402

LOAD = 0x7C00
LSR_THRE_TEMT = 0x60  # LSR bits 5 and 6: transmitter holding register and shifter empty


class FakeUart:
    """Reports THRE on LSR (offset 5), swallows THR writes (offset 0)."""

    def __init__(self) -> None:
        self.sent = 0

    def read(self, offset: int) -> int:
        return LSR_THRE_TEMT if offset == 5 else 0

    def write(self, offset: int, value: int) -> None:
        if offset == 0:
            self.sent += 1


UART_SPIN = bytes.fromhex(
    "be 00 7e"   # mov si, 0x7e00            (text)
    "b9 ff ff"   # mov cx, 0xffff
    # top:
    "ba fd 03"   # mov dx, 0x3fd             LSR
    "ec"         # in al, dx
    "a8 20"      # test al, 0x20             THRE?
    "74 f8"      # jz top
    "ba f8 03"   # mov dx, 0x3f8             THR
    "8a 04"      # mov al, [si]
    "46"         # inc si
    "ee"         # out dx, al
    "e2 ef"      # loop top
    "eb ea"      # jmp (reload cx via mov cx) -> back to mov cx
)
ALU_LOOP = bytes.fromhex(
    "b8 34 12 bb 78 56 b9 bc 9a ba f0 de"  # mov ax,bx,cx,dx
    # top:
    "01 d8"      # add ax, bx
    "11 ca"      # adc dx, cx
    "29 c3"      # sub bx, ax
    "19 d1"      # sbb cx, dx
    "31 c8"      # xor ax, cx
    "21 da"      # and dx, bx
    "d1 e0"      # shl ax, 1
    "d1 cb"      # ror bx, 1
    "39 d0"      # cmp ax, dx
    "72 01"      # jb +1
    "40"         # inc ax
    "4a"         # dec dx
    "75 e8"      # jnz top
    "eb e6"      # jmp top
)


class DirectPorts:
    """For comparison only: the same fake UART without PortBus (no routing, no io_ops)."""

    def __init__(self, dev: FakeUart) -> None:
        self.dev = dev

    def read(self, port: int, size: int) -> int:
        return self.dev.read(port - 0x3F8)

    def write(self, port: int, size: int, value: int) -> None:
        self.dev.write(port - 0x3F8, value)


def setup(code: bytes, direct: bool = False):
    mem = GuestMemory(16 << 20)
    mem.load(LOAD, code)
    mem.load(0x7E00, bytes(range(32, 127)) * 200)
    uart = FakeUart()
    if direct:
        pio = DirectPorts(uart)
    else:
        pio = PortBus()
        pio.register(0x3F8, 8, uart, "uart")
    emu = Emulator(mem, pio, MmioBus())
    cpu = CpuState(ip=LOAD, esp=0x7C00)
    return emu, cpu


def bench(code: bytes, insns: int, repeat: int, direct: bool = False) -> tuple[float, float, float, str]:
    emu, cpu = setup(code, direct)
    emu.run(cpu, max_insns=2000)  # warm-up: compile every instruction
    cpu_samples = []
    wall_samples = []
    stop = None
    for _ in range(repeat):
        w0 = time.perf_counter_ns()
        t0 = time.thread_time_ns()
        stop = emu.run(cpu, max_insns=insns)
        dt = time.thread_time_ns() - t0
        dw = time.perf_counter_ns() - w0
        assert stop.insns == insns, stop
        cpu_samples.append(dt / insns)
        wall_samples.append(dw / insns)
    return min(cpu_samples), statistics.median(cpu_samples), min(wall_samples), repr(stop)


def bench_guest(repeat: int) -> list[tuple[float, float, int]]:
    """(c): [(ns per instruction, us per byte, instructions)] of each whole run of the guest."""
    from pykvmm.devices.uart16550 import Uart16550
    from pykvmm.machine.sinks import Sink

    image = (Path(__file__).resolve().parent.parent / "guests" / "uart_spin.bin").read_bytes()
    out = []
    for _ in range(repeat):
        mem = GuestMemory(16 << 20)
        mem.load(LOAD, image)
        sink = Sink(os.open(os.devnull, os.O_WRONLY), owns=True)
        pio = PortBus()
        pio.register(0x3F8, 8, Uart16550(sink), "com1")
        emu = Emulator(mem, pio, MmioBus())
        # past the guest's MOV SS (whose interrupt shadow stops the emulator): segments are 0
        cpu = CpuState(ip=LOAD + 9, esp=0x7C00)
        n = 0
        t0 = time.thread_time_ns()
        while True:
            stop = emu.run(cpu, max_insns=4096, io_window=1000,
                           deadline_ns=time.monotonic_ns() + 2_000_000)
            n += stop.insns
            if stop.reason not in ("budget", "deadline", "extent"):
                break
        dt = time.thread_time_ns() - t0
        assert stop.reason == "halt" and sink.count == 66624, (stop, sink.count)
        sink.close()
        out.append((dt / n, dt / sink.count / 1000, n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--insns", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    for name, code, direct in (("uart_spin", UART_SPIN, False), ("alu", ALU_LOOP, False),
                               ("uart_spin without PortBus (for comparison)", UART_SPIN, True)):
        best, med, wall, stop = bench(code, args.insns, args.repeat, direct)
        print(f"{name:10} cpu best {best:6.1f} ns/insn, median {med:6.1f}; wall best {wall:6.1f} "
              f"({args.repeat} x {args.insns} insns; {stop})")
    runs = bench_guest(args.repeat)
    print("guest uart_spin.bin, whole runs (the first builds its blocks): " + "; ".join(
        f"{ns:.0f} ns/insn {us:.2f} us/byte" for ns, us, _ in runs) + f" ({runs[0][2]} insns)")


if __name__ == "__main__":
    main()
