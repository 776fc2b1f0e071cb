"""The Bochs/QEMU debug console (port 0x402 for SeaBIOS; 0xE9 for Bochs).

Every byte written goes to the sink.  A read returns 0xE9, the "port E9 hack" signature that
SeaBIOS and Bochs-aware firmware check before they use the port.
"""

from __future__ import annotations

from typing import Callable

SIGNATURE = 0xE9  # What a read returns: the port number of the original Bochs hack.


class DebugCon:
    def __init__(self, sink: Callable[[bytes], None]) -> None:
        if not callable(sink):
            raise TypeError(f"sink must be a callable taking bytes, not {sink!r}")
        self._sink = sink
        self.bytes_written = 0

    def read(self, offset: int) -> int:
        if offset != 0:
            raise ValueError(f"the debug console has one register, offset 0, not {offset:#x}")
        return SIGNATURE

    def write(self, offset: int, value: int) -> None:
        if offset != 0:
            raise ValueError(f"the debug console has one register, offset 0, not {offset:#x}")
        self._sink(bytes((value & 0xFF,)))
        self.bytes_written += 1

    def state(self) -> dict[str, object]:
        return {"bytes_written": self.bytes_written}
