"""Shared fixtures for the emulator's unit tests."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # flat-memory helpers

from pykvmm.machine.bus import MmioBus, PortBus  # noqa: E402
from pykvmm.machine.memory import RAM  # noqa: E402
from pykvmm.x86.emulator import Emulator  # noqa: E402

FLAT_SIZE = 0x110000  # real mode reaches 0x10FFEF without A20 wrap


class FlatMemory:
    """All-RAM guest memory for tests: the 80286 test rig had RAM at every address."""

    def __init__(self, size: int = FLAT_SIZE):
        self.size = size
        self.ram = mmap.mmap(-1, size)

    def kind(self, addr: int, length: int = 1) -> int:
        return RAM if 0 <= addr and addr + length <= self.size and length > 0 else 2

    def load(self, addr: int, data: bytes) -> None:
        self.ram[addr:addr + len(data)] = data


@pytest.fixture
def flat():
    mem = FlatMemory()
    pio, mmio = PortBus(), MmioBus()
    return mem, pio, mmio, Emulator(mem, pio, mmio)
