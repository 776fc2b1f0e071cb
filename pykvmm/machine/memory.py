"""Guest physical memory: one anonymous mapping indexed by guest-physical address.

The host buffer covers [0, size); for every guest-physical address a below ``size`` the byte lives
at host offset a.  Which ranges KVM sees as RAM, ROM or nothing is decided by the slots the
machine registers (see ``regions``); this class only answers "what is at this address" for
userspace (the emulator, the loader) and bounds-checks every access.
"""

from __future__ import annotations

import mmap

from ..errors import GuestMemoryError, UsageError
from . import layout

# Region kinds, as small ints (compared on the emulator's hot path).
RAM = 0
ROM = 1
UNBACKED = 2


class GuestMemory:
    """Guest RAM plus the firmware ROM image, with the PC hole left unbacked.

    ``rom_start`` is where the firmware image begins (0xF0000 for pykvmm's 64 KiB BIOS); with
    ``rom_writable`` (``--bios``) the area from ``OPTION_ROM_START`` to 1 MiB is plain RAM, as
    SeaBIOS expects on a machine without a northbridge to shadow it.
    """

    __slots__ = ("size", "ram", "view", "rom_start", "rom_writable", "_ram_ranges", "_rom_ranges")

    def __init__(self, size: int, rom_start: int = layout.BIOS_START, rom_writable: bool = False):
        if size < layout.MIN_MEM_MIB * layout.MIB or size > layout.MAX_MEM_MIB * layout.MIB:
            raise UsageError(
                f"memory size must be between {layout.MIN_MEM_MIB} and {layout.MAX_MEM_MIB} MiB, "
                f"not {size / layout.MIB:g} MiB"
            )
        self.size = size
        self.ram = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.view = memoryview(self.ram)
        self.rom_start = rom_start
        self.rom_writable = rom_writable
        if rom_writable:
            ram = [(0, layout.CONV_RAM_END), (layout.OPTION_ROM_START, size)]
            rom: list[tuple[int, int]] = []
        else:
            ram = [(0, layout.CONV_RAM_END), (layout.EXT_RAM_START, size)]
            rom = [(rom_start, layout.EXT_RAM_START)]
        self._ram_ranges = tuple(ram)
        self._rom_ranges = tuple(rom)

    # -- what is where ----------------------------------------------------------------------------

    def ram_ranges(self) -> tuple[tuple[int, int], ...]:
        """Writable RAM ranges as (start, end) guest-physical pairs."""
        return self._ram_ranges

    def rom_ranges(self) -> tuple[tuple[int, int], ...]:
        """Read-only ranges as (start, end) guest-physical pairs."""
        return self._rom_ranges

    def kind(self, addr: int, length: int = 1) -> int:
        """RAM, ROM or UNBACKED for [addr, addr+length); a range straddling kinds is UNBACKED."""
        end = addr + length
        if addr < 0 or length <= 0:
            return UNBACKED
        for lo, hi in self._ram_ranges:
            if lo <= addr and end <= hi:
                return RAM
        for lo, hi in self._rom_ranges:
            if lo <= addr and end <= hi:
                return ROM
        return UNBACKED

    def is_ram(self, addr: int, length: int = 1) -> bool:
        return self.kind(addr, length) == RAM

    # -- bounds-checked access --------------------------------------------------------------------

    def read(self, addr: int, length: int) -> bytes:
        """Bytes of RAM or ROM; anything else raises GuestMemoryError."""
        if self.kind(addr, length) == UNBACKED:
            raise GuestMemoryError(f"read of {length} bytes at {addr:#x} is outside guest memory")
        return self.ram[addr : addr + length]

    def write(self, addr: int, data: bytes) -> None:
        """Write into RAM only (the guest's view: ROM and holes are not writable here)."""
        if self.kind(addr, len(data)) != RAM:
            raise GuestMemoryError(f"write of {len(data)} bytes at {addr:#x} is outside guest RAM")
        self.ram[addr : addr + len(data)] = data

    def load(self, addr: int, data: bytes) -> None:
        """Host-side load (firmware images, guests): may write ROM, never outside the buffer."""
        if addr < 0 or addr + len(data) > self.size:
            raise GuestMemoryError(f"image of {len(data)} bytes at {addr:#x} does not fit in guest memory")
        self.ram[addr : addr + len(data)] = data

    def host_address(self) -> int:
        """The host virtual address of guest-physical 0 (for KVM_SET_USER_MEMORY_REGION)."""
        import ctypes

        return ctypes.addressof(ctypes.c_char.from_buffer(self.ram))

    def close(self) -> None:
        self.view.release()
        try:
            self.ram.close()
        except BufferError:  # a ctypes view still holds it; the mapping goes with the process
            pass
