import pytest

from pykvmm.errors import GuestMemoryError, UsageError
from pykvmm.machine import layout
from pykvmm.machine.memory import RAM, ROM, UNBACKED, GuestMemory

MIB = layout.MIB


@pytest.fixture
def mem():
    m = GuestMemory(16 * MIB)
    yield m
    m.close()


def test_pc_layout_kinds(mem):
    assert mem.kind(0) == RAM
    assert mem.kind(0x9FFFF) == RAM
    assert mem.kind(0xA0000) == UNBACKED  # the device hole
    assert mem.kind(0xBFFFF) == UNBACKED
    assert mem.kind(0xC0000) == UNBACKED  # option-ROM area without --bios
    assert mem.kind(0xF0000) == ROM
    assert mem.kind(0xFFFFF) == ROM
    assert mem.kind(0x100000) == RAM
    assert mem.kind(16 * MIB - 1) == RAM
    assert mem.kind(16 * MIB) == UNBACKED


def test_access_straddling_ram_and_hole_is_unbacked(mem):
    assert mem.kind(0x9FFFF, 2) == UNBACKED


@pytest.mark.parametrize("addr,length", [(-1, 1), (0, 0), (0xA0000, 1), (16 * MIB - 1, 2), (1 << 40, 1)])
def test_reads_outside_backing_are_refused(mem, addr, length):
    with pytest.raises(GuestMemoryError):
        mem.read(addr, length)


def test_writes_to_rom_are_refused_but_reads_work(mem):
    mem.load(0xFFFF0, b"\xea\x5b\xe0\x00\xf0")
    assert mem.read(0xFFFF0, 5) == b"\xea\x5b\xe0\x00\xf0"
    with pytest.raises(GuestMemoryError):
        mem.write(0xFFFF0, b"\x90")


def test_ram_round_trip(mem):
    mem.write(0x7C00, b"\xf4")
    assert mem.read(0x7C00, 1) == b"\xf4"


def test_bios_mode_makes_option_rom_area_ram():
    m = GuestMemory(16 * MIB, rom_start=0xE0000, rom_writable=True)
    try:
        assert m.kind(0xC0000) == RAM and m.kind(0xFFFFF) == RAM and m.kind(0xA0000) == UNBACKED
    finally:
        m.close()


def test_load_never_writes_past_the_buffer(mem):
    with pytest.raises(GuestMemoryError):
        mem.load(16 * MIB - 2, b"abc")


@pytest.mark.parametrize("mib", [0, 1, 4096])
def test_memory_size_out_of_range_is_a_usage_error(mib):
    with pytest.raises(UsageError, match="memory size must be between"):
        GuestMemory(mib * MIB)
