"""Guest-controlled addresses and lengths in the emulator (issue 8, section 2): every access is
checked against the memory map before use, so an address in a hole, in ROM (for writes), past
the end or straddling two kinds is refused (handed back to the CPU), never read from or written
to host memory; REP counts are bounded by the per-run budget; the decode caches are LRU-capped.
"""

from __future__ import annotations

import pytest

from pykvmm.machine.bus import MmioBus, PortBus
from pykvmm.machine.memory import GuestMemory
from pykvmm.x86 import stops
from pykvmm.x86.emulator import DEFAULT_CACHE_ENTRIES, Emulator
from pykvmm.x86.state import CpuState

CODE = 0x7C00


def _machine_memory():
    mem = GuestMemory(2 << 20)  # pykvmm's map: RAM, the 0xA0000-0xEFFFF hole, ROM at 0xF0000
    mem.load(0xF0000, b"\xAA" * 0x10000)
    return mem, PortBus(), MmioBus()


def _run(mem, pio, mmio, code: bytes, max_insns=100, **regs):
    mem.load(CODE, code)
    emu = Emulator(mem, pio, mmio)
    cpu = CpuState()
    s = cpu.s
    names = {"ax": 0, "cx": 1, "dx": 2, "bx": 3, "sp": 4, "bp": 5, "si": 6, "di": 7}
    s[8] = CODE
    s[4] = 0x7000
    s[9] = 2
    for name, v in regs.items():
        if name in names:
            s[names[name]] = v
    seg = {"es": 0, "cs": 1, "ss": 2, "ds": 3}
    for name, sel in regs.items():
        if name in seg:
            s[16 + seg[name]] = sel << 4  # bases
    return emu, cpu, emu.run(cpu, max_insns=max_insns)


@pytest.mark.parametrize("where,code,regs", [
    ("hole read", b"\x8a\x07", {"ds": 0xC000}),                 # mov al, [bx] at 0xC0000
    ("hole write", b"\x88\x07", {"ds": 0xD000}),                # mov [bx], al at 0xD0000
    ("ROM write", b"\x88\x07", {"ds": 0xF000}),                 # ROM is read-only
    ("straddle RAM/hole", b"\x8b\x07", {"ds": 0x9FFF, "bx": 0xF}),  # word at 0x9FFFF
    ("VGA hole", b"\x8a\x07", {"ds": 0xA000}),
])
def test_out_of_map_access_is_refused_without_effect(where, code, regs):
    mem, pio, mmio = _machine_memory()
    rom_before = bytes(mem.ram[0xF0000:0x100000])
    emu, cpu, stop = _run(mem, pio, mmio, code, **regs)
    assert stop.reason == stops.FAULT, (where, stop)
    assert stop.insns == 0 and cpu.s[8] == CODE  # left for the CPU, state untouched
    assert bytes(mem.ram[0xF0000:0x100000]) == rom_before


def test_top_of_real_mode_is_inside_guest_ram():
    """FFFF:FFFF is linear 0x10FFEF: inside the smallest RAM size (2 MiB), so even the highest
    real-mode address is a checked RAM access."""
    mem, pio, mmio = _machine_memory()
    mem.ram[0x10FFEF] = 0x5A
    emu, cpu, stop = _run(mem, pio, mmio, b"\x8a\x07\xf4", ds=0xFFFF, bx=0xFFFF)
    assert stop.insns == 1 and cpu.s[0] & 0xFF == 0x5A
    # A word at offset 0xFFFF crosses the segment limit: #GP natively, so refused here.
    emu, cpu, stop = _run(mem, pio, mmio, b"\x8b\x07\xf4", ds=0xFFFF, bx=0xFFFF)
    assert stop.insns == 0 and stop.reason == stops.FAULT


def test_rep_string_count_is_bounded_by_the_budget():
    """REP OUTSB with ECX = 0xFFFFFFFF (address-size prefix): one element per execution, so the
    budget bounds it; the port sees exactly max_insns operations."""
    mem, pio, mmio = _machine_memory()
    emu, cpu, stop = _run(mem, pio, mmio, b"\x67\xf3\x6e", max_insns=50, cx=0xFFFF, dx=0x3FF)
    cpu_cx = cpu.s[1]
    assert stop.reason == stops.BUDGET and stop.insns == 50
    assert pio.io_ops.get(0x3FF) == 50
    assert cpu_cx == 0xFFFF - 50


def test_decode_cache_is_lru_capped():
    mem, pio, mmio = _machine_memory()
    mem.load(0x1000, b"\x90" * 0x4000)
    emu = Emulator(mem, pio, mmio)
    assert emu.cache_limit == DEFAULT_CACHE_ENTRIES
    emu.cache_limit = 100
    for ip in range(0x1000, 0x1000 + 1000):
        emu.lookup(0, ip)
        emu.lookup(0, 0x1000)  # kept hot: the least recently used go first
    assert len(emu._cache) == 100
    assert (0x1000, 0x1000) in emu._cache and (0x1001, 0x1001) not in emu._cache


def test_block_cache_is_lru_capped():
    mem, pio, mmio = _machine_memory()
    mem.load(0x1000, b"\x40" * 0x4000)  # inc ax: blocks of up to MAX_BLOCK instructions
    emu = Emulator(mem, pio, mmio)
    emu.cache_limit = 50
    for ip in range(0x1000, 0x1000 + 500):
        emu.block(0, ip, 0x10000)
    assert len(emu._bcache) <= 50 and len(emu._cache) <= 50
