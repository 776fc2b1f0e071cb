"""System control port B (port 0x61) of the PC/AT.

Bit layout from the IBM PC/AT Technical Reference (port 61h):

* bits 0-3 are read/write: 0 gates PIT counter 2, 1 enables the speaker data, 2 and 3 are the
  (active-low) RAM parity and I/O channel check enables;
* bit 4 toggles with every DRAM refresh request, which PIT counter 1 issues every 15.085 us on
  an AT.  Firmware (IBM's and many clones') times short delays by counting its toggles, so
  pykvmm derives it from the monotonic clock: it flips every ``REFRESH_PERIOD_NS``.  Nothing
  here ties it to counter 1's programming; the AT's BIOS never changes that counter;
* bit 5 reads PIT counter 2's OUT pin;
* bits 6 and 7 report I/O channel check and RAM parity errors, which never happen here.

The device has one register, at offset 0.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

# --- Bits -------------------------------------------------------------------------------------
TIMER2_GATE = 0x01  # R/W: PIT counter 2 GATE input.
SPEAKER_DATA = 0x02  # R/W: speaker enabled (ANDed with counter 2's OUT on the way to the speaker).
PARITY_CHECK_DISABLE = 0x04  # R/W: 1 disables the RAM parity check NMI.
CHANNEL_CHECK_DISABLE = 0x08  # R/W: 1 disables the I/O channel check NMI.
WRITABLE_BITS = 0x0F  # Bits 4-7 are status bits; writes to them are ignored.
REFRESH_TOGGLE = 0x10  # RO: flips on every DRAM refresh request.
TIMER2_OUT = 0x20  # RO: PIT counter 2 OUT pin.
CHANNEL_CHECK = 0x40  # RO: an I/O channel check happened (never, here).
PARITY_ERROR = 0x80  # RO: a RAM parity error happened (never, here).

# The AT's refresh: PIT counter 1 in mode 2 with a count of 18 at 1.193182 MHz, i.e. 15.085 us.
REFRESH_PERIOD_NS = 15_085


class _Pit(Protocol):
    def set_gate(self, counter: int, level: bool) -> None: ...

    def output(self, counter: int) -> bool: ...


TIMER2 = 2


class Port61:
    """Port 0x61.  ``pit`` supplies counter 2's GATE input and OUT pin."""

    def __init__(self, pit: _Pit, clock: Callable[[], int] = time.monotonic_ns) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning monotonic nanoseconds, not {clock!r}")
        self._pit = pit
        self._clock = clock
        self.value = 0  # The writable bits; all zero after reset (gate low, speaker off).

    def read(self, offset: int) -> int:
        if offset != 0:
            raise ValueError(f"port 0x61 has one register, offset 0, not {offset:#x}")
        value = self.value
        if (self._clock() // REFRESH_PERIOD_NS) & 1:
            value |= REFRESH_TOGGLE
        if self._pit.output(TIMER2):
            value |= TIMER2_OUT
        return value

    def write(self, offset: int, value: int) -> None:
        if offset != 0:
            raise ValueError(f"port 0x61 has one register, offset 0, not {offset:#x}")
        self.value = value & WRITABLE_BITS
        self._pit.set_gate(TIMER2, bool(self.value & TIMER2_GATE))

    def state(self) -> dict[str, object]:
        return {"value": self.value, "gate": bool(self.value & TIMER2_GATE),
                "speaker": bool(self.value & SPEAKER_DATA)}
