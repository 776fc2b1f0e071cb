"""System control port A (0x92, "fast A20") of PS/2 and later PCs.

Bit 1 enables the A20 address line; bit 0 is a fast reset pulse.  KVM guests always run with A20
enabled (KVM does not model the A20 gate), so pykvmm records what the guest asks for and reports
bit 1 back as written.  Writes that set bit 0 (reset) are counted; the machine may act on
``reset_requested``.  Bits 2-7 are stored as written (on PS/2 they are security lock and disk
activity lights; nothing reads them back meaningfully).
"""

from __future__ import annotations

A20_ENABLE = 0x02  # Bit 1: A20 gate enabled.
FAST_RESET = 0x01  # Bit 0: writing 1 pulses the CPU reset line.
HISTORY_LIMIT = 64  # Writes kept in ``writes``; more are counted only.


class FastA20:
    def __init__(self) -> None:
        self.value = A20_ENABLE  # pykvmm's CPU always has A20 on; say so.
        self.write_count = 0
        self.writes: list[int] = []
        self.reset_requested = 0

    def read(self, offset: int) -> int:
        if offset != 0:
            raise ValueError(f"port 0x92 has one register, offset 0, not {offset:#x}")
        return self.value

    def write(self, offset: int, value: int) -> None:
        if offset != 0:
            raise ValueError(f"port 0x92 has one register, offset 0, not {offset:#x}")
        value &= 0xFF
        self.write_count += 1
        if len(self.writes) < HISTORY_LIMIT:
            self.writes.append(value)
        if value & FAST_RESET:
            self.reset_requested += 1
        # The reset bit is a pulse, not state: it reads back as 0.
        self.value = value & ~FAST_RESET

    @property
    def a20_enabled(self) -> bool:
        return bool(self.value & A20_ENABLE)

    def state(self) -> dict[str, object]:
        return {"value": self.value, "a20": self.a20_enabled, "writes": list(self.writes),
                "write_count": self.write_count, "reset_requested": self.reset_requested}
