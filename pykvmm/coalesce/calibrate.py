"""``--extent auto``: an extent calibrated to this host.

The patent leaves the extent to the hardware ("the more powerful the processor, the greater number
of lines").  Coalescing one more IO instruction d instructions after the last one saves one exit
round trip (c_exit) and costs d instructions of emulation instead of native execution
(d * (c_emu - c_native)).  It pays while d < c_exit / (c_emu - c_native): that bound is the extent.

The three costs are measured at start-up in a scratch VM (a few milliseconds) and cached per host
(kernel release, CPU model, Python version) in ~/.cache/pykvmm/, since they do not change between
runs of the same machine.  On this development host an exit costs about 7-8 us, KVM's in-kernel
emulator about 0.41 us per real-mode instruction, and pykvmm's emulator about 0.1-0.5 us.

A fourth figure prices cold code: the first emulation of a basic block decodes it (capstone),
generates Python source and compiles it, several hundred microseconds here, the price of a hundred
exits.  It is the warm-up's price of buying a site (see rental.py): a site is emulated only once
the exits it would have saved add up to that much.  A cache file written before this figure existed lacks it and is measured again.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import os
import platform
import sys
import time
from pathlib import Path

from ..kvm import ioctls as K
from ..kvm._libc import ioctl

MIN_EXTENT = 1
MAX_EXTENT = 1000
# The figures a usable cache file must hold (an older file without one is measured again).
FIELDS = frozenset({"exit_us", "native_ns_per_insn", "emulated_ns_per_insn", "compile_us",
                    "extent"})
_LOOP = 4000  # instructions in the native and emulated loops
_EXITS = 300
_CODE = 0x1000


def _host_key() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ident = f"{platform.release()}|{cpu}|{sys.version.split()[0]}|{os.cpu_count()}"
    return hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pykvmm" / f"calibration-{_host_key()}.json"


def _scratch_vm(kvm, code: bytes):
    vm = kvm.create_vm()
    mem = mmap.mmap(-1, 0x10000, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mem[_CODE:_CODE + len(code)] = code
    vm.set_memory_region(0, 0x10000, ctypes.addressof(ctypes.c_char.from_buffer(mem)))
    vm.set_tss_addr(0xFFFBD000)
    vcpu = vm.create_vcpu(0)
    sregs = vcpu.get_sregs()
    for name in ("cs", "ds", "es", "fs", "gs", "ss"):
        seg = getattr(sregs, name)
        seg.selector, seg.base, seg.limit = 0, 0, 0xFFFF
    sregs.cr0 &= ~1
    vcpu.set_sregs(sregs)
    regs = vcpu.get_regs()
    regs.rip, regs.rsp, regs.rflags = _CODE, 0x800, 2
    vcpu.set_regs(regs)
    return vm, mem, vcpu


def _time_exits(kvm, code: bytes, n: int) -> float:
    """Seconds per KVM_RUN round trip of a guest that loops on ``code`` ending in an OUT."""
    vm, mem, vcpu = _scratch_vm(kvm, code)
    try:
        fd = vcpu.fd
        for _ in range(3):  # warm up
            ioctl(fd, K.KVM_RUN, 0)
        t = time.perf_counter()
        for _ in range(n):
            ioctl(fd, K.KVM_RUN, 0)
        return (time.perf_counter() - t) / n
    finally:
        vm.close()
        try:
            mem.close()
        except BufferError:
            pass


def _measure(kvm) -> dict:
    # 1. An exit round trip: `out 0xE0, al; jmp short back` (two instructions per exit).
    exit_s = _time_exits(kvm, bytes([0xE6, 0xE0, 0xEB, 0xFC]), _EXITS)
    # 2. Native instructions: the same, with `mov cx, N; loop $` (N + 1 more instructions).
    loop_n = 400
    code = bytes([0xB9, loop_n & 0xFF, loop_n >> 8, 0xE2, 0xFE, 0xE6, 0xE0, 0xEB, 0xF7])
    loop_s = _time_exits(kvm, code, 30)
    native_s = max(0.0, (loop_s - exit_s) / (loop_n + 1))
    # 3. pykvmm's emulator on an ALU loop of the same shape as guest glue code.
    from ..machine.bus import MmioBus, PortBus
    from ..machine.memory import GuestMemory
    from ..x86.emulator import Emulator
    from ..x86.state import CpuState

    mem = GuestMemory(2 * 1024 * 1024)
    try:
        # l: add ax, bx / inc bx / xor dx, ax / loop l
        mem.load(_CODE, bytes([0x01, 0xD8, 0x43, 0x31, 0xC2, 0xE2, 0xF9, 0xF4]))
        emu = Emulator(mem, PortBus(), MmioBus())
        cpu = CpuState(ecx=_LOOP // 4, ip=_CODE)
        emu.run(cpu, max_insns=_LOOP)  # compile and warm up
        cpu = CpuState(ecx=_LOOP // 4, ip=_CODE)
        t = time.perf_counter()
        stop = emu.run(cpu, max_insns=_LOOP)
        emu_s = (time.perf_counter() - t) / max(1, stop.insns)
        compile_s = _time_compile(mem, Emulator, CpuState)
    finally:
        mem.close()
    return {"exit_us": round(exit_s * 1e6, 3), "native_ns_per_insn": round(native_s * 1e9, 1),
            "emulated_ns_per_insn": round(emu_s * 1e9, 1), "compile_us": round(compile_s * 1e6, 1)}


# A UART polling loop, the commonest shape of a coalesced site: wait for THRE, write a byte, loop.
#   l: mov dx, 0x3FD / in al, dx / test al, 0x20 / jz l / mov dx, 0x3F8 / mov al, bl / out dx, al
#      inc bx / loop l / hlt
_SITE_CODE = bytes([0xBA, 0xFD, 0x03, 0xEC, 0xA8, 0x20, 0x74, 0xF8, 0xBA, 0xF8, 0x03, 0x88, 0xD8,
                    0xEE, 0x43, 0xE2, 0xF0, 0xF4])
_COMPILE_COPIES = 3  # fresh emulators and fresh addresses: the median is kept


def _time_compile(mem, Emulator, CpuState) -> float:
    """Seconds of cold-code cost per compiled function: the first run of _SITE_CODE in a fresh
    emulator (decode, source generation, compile) minus a second, warm run of the same, divided
    by the functions the first run compiled."""
    from ..machine.bus import MmioBus, PortBus

    per: list[float] = []
    for i in range(_COMPILE_COPIES):
        at = _CODE + 0x100 * (i + 1)
        mem.load(at, _SITE_CODE)
        emu = Emulator(mem, PortBus(), MmioBus())
        t = time.perf_counter()
        emu.run(CpuState(ecx=8, ip=at), max_insns=200)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        emu.run(CpuState(ecx=8, ip=at), max_insns=200)
        warm = time.perf_counter() - t
        per.append(max(0.0, cold - warm) / max(1, emu.compiled))
    return sorted(per)[len(per) // 2]


def choose_extent(figures: dict) -> int:
    """The largest distance between two IO instructions at which emulating still pays."""
    exit_ns = figures["exit_us"] * 1000
    extra = figures["emulated_ns_per_insn"] - figures["native_ns_per_insn"]
    if extra <= 0:
        return MAX_EXTENT  # emulating is no dearer than native execution: go as far as allowed
    return max(MIN_EXTENT, min(MAX_EXTENT, int(exit_ns / extra)))


def calibrate(kvm, use_cache: bool = True) -> dict:
    """The calibration figures and the chosen extent (``cached`` tells where they came from)."""
    path = _cache_path()
    if use_cache:
        try:
            data = json.loads(path.read_text())
            if FIELDS <= set(data):
                data["cached"] = True
                return data
        except (OSError, ValueError):
            pass
    t = time.perf_counter()
    data = _measure(kvm)
    data["extent"] = choose_extent(data)
    data["took_ms"] = round((time.perf_counter() - t) * 1000, 1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    except OSError:
        pass  # a read-only home: calibrate again next time
    data["cached"] = False
    return data
