"""The debug-exit port (0xF4, QEMU's isa-debug-exit iobase): writing byte v ends the run.

pykvmm exits with status v (or (v << 1) | 1 with --exit-code qemu, which is what QEMU's device
does), so one guest image gives comparable results under both.
"""

from typing import Callable


class DebugExit:
    def __init__(self, on_exit: Callable[[int], None]):
        self._on_exit = on_exit
        self.value: int | None = None

    def read(self, offset: int) -> int:
        return 0xFF  # write-only, like QEMU's device: reads float high

    def write(self, offset: int, value: int) -> None:
        # A word or dword write arrives as byte writes; the first (low) byte is the status.
        if self.value is None:
            self.value = value & 0xFF
            self._on_exit(self.value)

    def state(self) -> dict:
        return {"value": self.value}
