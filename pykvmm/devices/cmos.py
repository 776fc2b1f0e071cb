"""The Motorola MC146818 real-time clock and CMOS RAM, as on a PC/AT (ports 0x70/0x71).

Rules cited as "DS" come from the MC146818A datasheet (Motorola, rev. 1984/1996).

Offset 0 is the index register (write only): bits 0-6 select one of 128 bytes, bit 7 masks the
NMI (a PC/AT motherboard function, kept in ``nmi_masked``).  Offset 1 reads and writes the
selected byte.

Emulation choices:

* The time of day is the host's UTC wall clock (``wallclock()``, epoch seconds) plus an offset the
  guest sets by writing the time with SET=1 in register B.  The registers are rendered at every
  read in the format register B asks for now (BCD or binary, 12 or 24 hour); the real chip would
  keep the old encoding until the guest rewrote the time, a distinction no guest relies on.
* UIP (register A bit 7) is 1 from 244 us before each second boundary until the 1984 us update
  cycle after it has finished (DS "Update Cycle", 32.768 kHz time base).
* Register C's flags follow the clock: UF at each second boundary, AF when the alarm matches then,
  PF at the rate register A's RS bits select.  ``irq(level)`` (IRQ8 on a PC) follows IRQF, which
  reading C clears.  ``deadline()``/``poll()`` drive it when an interrupt is enabled.
* The divider bits (DV) of register A are stored but do not stop the clock.
* The century (0x32, IBM's location) is rendered from the clock like the time registers.
"""

from __future__ import annotations

import calendar
import time
from typing import Callable

# --- Ports ------------------------------------------------------------------------------------
INDEX = 0  # Write only: bit 7 NMI mask, bits 6-0 the register index.
DATA = 1
INDEX_NMI_MASK = 0x80  # 1 disables NMI (PC/AT port 70h bit 7).
INDEX_MASK = 0x7F
INDEX_READ_VALUE = 0xFF  # Port 0x70 cannot be read: the ISA bus floats.
CMOS_SIZE = 128

# --- Clock registers (DS "Address Map") -------------------------------------------------------
REG_SECONDS = 0x00
REG_SECONDS_ALARM = 0x01
REG_MINUTES = 0x02
REG_MINUTES_ALARM = 0x03
REG_HOURS = 0x04
REG_HOURS_ALARM = 0x05
REG_DAY_OF_WEEK = 0x06  # 1 = Sunday.
REG_DAY_OF_MONTH = 0x07
REG_MONTH = 0x08
REG_YEAR = 0x09  # Two digits; the century lives in REG_CENTURY.
REG_A = 0x0A
REG_B = 0x0B
REG_C = 0x0C  # Read only; reading clears it.
REG_D = 0x0D  # Read only.
REG_CENTURY = 0x32  # IBM PC/AT: the century, in the clock's format.
TIME_REGISTERS = (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_WEEK, REG_DAY_OF_MONTH,
                  REG_MONTH, REG_YEAR, REG_CENTURY)

# --- Register A -------------------------------------------------------------------------------
A_UIP = 0x80  # RO: an update cycle is in progress or will start within 244 us.
A_DV_MASK = 0x70  # Divider select; 010 is the 32.768 kHz time base.
A_RS_MASK = 0x0F  # Rate select for the periodic interrupt.
A_DEFAULT = 0x26  # 32.768 kHz, 1024 Hz periodic rate: what a PC BIOS programs.

# --- Register B -------------------------------------------------------------------------------
B_SET = 0x80  # 1 halts updates so the time can be written; also clears UIE (DS).
B_PIE = 0x40  # Periodic interrupt enable.
B_AIE = 0x20  # Alarm interrupt enable.
B_UIE = 0x10  # Update-ended interrupt enable.
B_SQWE = 0x08  # Square-wave output enable (no pin here).
B_DM = 0x04  # Data mode: 1 binary, 0 BCD.
B_24H = 0x02  # 1: 24-hour mode; 0: 12-hour with bit 7 of the hours meaning PM.
B_DSE = 0x01  # Daylight saving enable (ignored: the clock is UTC).
B_DEFAULT = B_24H  # BCD, 24 hour: the PC BIOS setting.

# --- Register C -------------------------------------------------------------------------------
C_IRQF = 0x80  # PF&PIE | AF&AIE | UF&UIE; drives the IRQ pin.
C_PF = 0x40  # Periodic flag.
C_AF = 0x20  # Alarm flag.
C_UF = 0x10  # Update-ended flag.

# --- Register D -------------------------------------------------------------------------------
D_VRT = 0x80  # Valid RAM and time: the battery is fine.

HOURS_PM = 0x80  # 12-hour mode: bit 7 of the hours (and hours alarm) is PM.
ALARM_DONT_CARE = 0xC0  # DS: an alarm byte of 0xC0-0xFF matches any value.

# --- Update cycle timing (DS, 32.768 kHz time base) -------------------------------------------
UIP_LEAD_NS = 244_000  # tBUC: UIP rises this long before the update.
UPDATE_CYCLE_NS = 1_984_000  # tUC: the update cycle itself.
TIME_BASE_HZ = 32768

# --- PC memory-size bytes (IBM PC/AT Technical Reference; QEMU/SeaBIOS for 0x34/0x35) ---------
REG_BASE_MEM_LO = 0x15  # Base memory in KiB (640), low byte ...
REG_BASE_MEM_HI = 0x16  # ... high byte.
REG_EXT_MEM_LO = 0x17  # Memory above 1 MiB in KiB, capped at 0xFFFF, low byte ...
REG_EXT_MEM_HI = 0x18  # ... high byte.
REG_EXT_MEM2_LO = 0x30  # The same value again, as POST reports it ...
REG_EXT_MEM2_HI = 0x31  # ... high byte.
REG_HIGH_MEM_LO = 0x34  # Memory above 16 MiB in 64 KiB units, low byte ...
REG_HIGH_MEM_HI = 0x35  # ... high byte.
REG_CHECKSUM_HI = 0x2E  # AT checksum of 0x10-0x2D, big endian.
REG_CHECKSUM_LO = 0x2F
CHECKSUM_FIRST = 0x10
CHECKSUM_LAST = 0x2D

KIB = 1024
MIB = 1024 * KIB
BASE_MEM_BYTES = 640 * KIB
EXT_MEM_START = 1 * MIB
HIGH_MEM_START = 16 * MIB
HIGH_MEM_UNIT = 64 * KIB
WORD_MAX = 0xFFFF


def _to_bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


class Cmos:
    """MC146818 RTC + 128 bytes of CMOS.  ``mem_size`` is the guest's RAM in bytes."""

    def __init__(self, mem_size: int, clock: Callable[[], int] = time.monotonic_ns,
                 wallclock: Callable[[], float] = time.time,
                 irq: Callable[[bool], None] | None = None) -> None:
        if not isinstance(mem_size, int) or mem_size <= 0:
            raise ValueError(f"mem_size must be a positive number of bytes, not {mem_size!r}")
        if not callable(clock) or not callable(wallclock):
            raise TypeError("clock and wallclock must be callables returning the time")
        self._clock = clock
        self._wallclock = wallclock
        self._irq = irq
        self.ram = bytearray(CMOS_SIZE)
        self.index = 0
        self.nmi_masked = False
        self.ram[REG_A] = A_DEFAULT
        self.ram[REG_B] = B_DEFAULT
        self.ram[REG_D] = D_VRT
        self._offset = 0.0  # Guest-set time minus host wall clock, in seconds.
        self._flags = 0  # Register C's PF, AF, UF.
        self._irq_level = False
        self._seen_second = self._now_seconds()
        self._seen_mono = clock()
        self._fill_memory_size(mem_size)

    # --- setup ----------------------------------------------------------------------------------
    def _fill_memory_size(self, mem_size: int) -> None:
        base_kib = min(mem_size, BASE_MEM_BYTES) // KIB
        ext_kib = min(max(mem_size - EXT_MEM_START, 0) // KIB, WORD_MAX)
        high = min(max(mem_size - HIGH_MEM_START, 0) // HIGH_MEM_UNIT, WORD_MAX)
        for lo, value in ((REG_BASE_MEM_LO, base_kib), (REG_EXT_MEM_LO, ext_kib),
                          (REG_EXT_MEM2_LO, ext_kib), (REG_HIGH_MEM_LO, high)):
            self.ram[lo] = value & 0xFF
            self.ram[lo + 1] = value >> 8
        self._update_checksum()

    def _update_checksum(self) -> None:
        total = sum(self.ram[CHECKSUM_FIRST:CHECKSUM_LAST + 1])
        self.ram[REG_CHECKSUM_HI] = (total >> 8) & 0xFF
        self.ram[REG_CHECKSUM_LO] = total & 0xFF

    # --- time -----------------------------------------------------------------------------------
    def _now_seconds(self) -> float:
        return self._wallclock() + self._offset

    def _encode(self, value: int) -> int:
        return value if self.ram[REG_B] & B_DM else _to_bcd(value)

    def _decode(self, value: int) -> int:
        return value if self.ram[REG_B] & B_DM else _from_bcd(value)

    def _encode_hours(self, hours: int) -> int:
        if self.ram[REG_B] & B_24H:
            return self._encode(hours)
        pm = HOURS_PM if hours >= 12 else 0
        return self._encode(hours % 12 or 12) | pm

    def _decode_hours(self, value: int) -> int:
        if self.ram[REG_B] & B_24H:
            return self._decode(value)
        hours = self._decode(value & ~HOURS_PM) % 12
        return hours + 12 if value & HOURS_PM else hours

    def _render(self, seconds: float) -> dict[int, int]:
        t = time.gmtime(int(seconds // 1))
        return {
            REG_SECONDS: self._encode(t.tm_sec % 60),
            REG_MINUTES: self._encode(t.tm_min),
            REG_HOURS: self._encode_hours(t.tm_hour),
            REG_DAY_OF_WEEK: (t.tm_wday + 1) % 7 + 1,  # tm_wday 0 is Monday; DS 1 is Sunday.
            REG_DAY_OF_MONTH: self._encode(t.tm_mday),
            REG_MONTH: self._encode(t.tm_mon),
            REG_YEAR: self._encode(t.tm_year % 100),
            REG_CENTURY: self._encode(t.tm_year // 100),
        }

    def _parse_time(self) -> float | None:
        """The time the guest wrote into the registers (during SET), as epoch seconds."""
        r = self.ram
        try:
            year = self._decode(r[REG_CENTURY]) * 100 + self._decode(r[REG_YEAR])
            stamp = (year, self._decode(r[REG_MONTH]), self._decode(r[REG_DAY_OF_MONTH]),
                     self._decode_hours(r[REG_HOURS]), self._decode(r[REG_MINUTES]),
                     self._decode(r[REG_SECONDS]))
            if not (1 <= stamp[1] <= 12 and 1 <= stamp[2] <= 31 and stamp[3] < 24
                    and stamp[4] < 60 and stamp[5] < 60):
                return None
            return float(calendar.timegm(stamp + (0, 0, 0)))
        except (ValueError, OverflowError):
            return None

    def _uip(self) -> bool:
        if self.ram[REG_B] & B_SET:
            return False  # DS: SET aborts and inhibits update cycles.
        frac_ns = int((self._now_seconds() % 1.0) * 1e9)
        return frac_ns >= 1_000_000_000 - UIP_LEAD_NS or frac_ns < UPDATE_CYCLE_NS

    def _periodic_ns(self) -> int | None:
        rs = self.ram[REG_A] & A_RS_MASK
        if rs == 0:
            return None
        # DS table 5 (32.768 kHz): RS 1 and 2 give 256 and 128 Hz; RS 3-15 give 2^(16-RS) Hz.
        divider = {1: 128, 2: 256}.get(rs, 1 << (rs - 1))
        return 1_000_000_000 * divider // TIME_BASE_HZ

    # --- flags and the IRQ --------------------------------------------------------------------
    def poll(self) -> None:
        """Bring register C's flags and the IRQ up to date with the clocks."""
        now_mono = self._clock()
        period = self._periodic_ns()
        if period and now_mono // period != self._seen_mono // period:
            self._flags |= C_PF
        self._seen_mono = now_mono
        second = int(self._now_seconds() // 1)
        if self.ram[REG_B] & B_SET:
            self._seen_second = second
        elif second != int(self._seen_second // 1):
            self._seen_second = second
            self._flags |= C_UF  # DS: UF is set at the end of every update cycle.
            rendered = self._render(second)
            if all(self.ram[alarm] >= ALARM_DONT_CARE or self.ram[alarm] == rendered[reg]
                   for alarm, reg in ((REG_SECONDS_ALARM, REG_SECONDS),
                                      (REG_MINUTES_ALARM, REG_MINUTES),
                                      (REG_HOURS_ALARM, REG_HOURS))):
                self._flags |= C_AF
        self._update_irq()

    def deadline(self) -> int | None:
        """The monotonic ns of the next flag that would raise the IRQ, or None if none is enabled."""
        b = self.ram[REG_B]
        now_mono = self._clock()
        candidates = []
        period = self._periodic_ns()
        if b & B_PIE and period:
            candidates.append((now_mono // period + 1) * period)
        if b & (B_UIE | B_AIE) and not b & B_SET:
            frac = self._now_seconds() % 1.0
            candidates.append(now_mono + int((1.0 - frac) * 1e9) + 1)
        return min(candidates) if candidates else None

    def _irqf(self) -> int:
        b = self.ram[REG_B]
        enabled = ((C_PF if b & B_PIE else 0) | (C_AF if b & B_AIE else 0)
                   | (C_UF if b & B_UIE else 0))
        return C_IRQF if self._flags & enabled else 0

    def _update_irq(self) -> None:
        level = bool(self._irqf())
        if level != self._irq_level:
            self._irq_level = level
            if self._irq is not None:
                self._irq(level)

    # --- the bus --------------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        if offset == INDEX:
            return INDEX_READ_VALUE
        if offset != DATA:
            raise ValueError(f"CMOS offset must be 0 or 1, not {offset:#x}")
        index = self.index
        if index == REG_C:
            self.poll()
            value = self._flags | self._irqf()
            self._flags = 0  # DS: all register C bits are cleared by reading it.
            self._update_irq()
            return value
        if index == REG_A:
            return (self.ram[REG_A] & ~A_UIP) | (A_UIP if self._uip() else 0)
        if index in TIME_REGISTERS and not self.ram[REG_B] & B_SET:
            return self._render(self._now_seconds())[index]
        return self.ram[index]

    def write(self, offset: int, value: int) -> None:
        value &= 0xFF
        if offset == INDEX:
            self.index = value & INDEX_MASK
            self.nmi_masked = bool(value & INDEX_NMI_MASK)
            return
        if offset != DATA:
            raise ValueError(f"CMOS offset must be 0 or 1, not {offset:#x}")
        index = self.index
        if index in (REG_C, REG_D):
            return  # DS: registers C and D are read only.
        if index == REG_A:
            self.ram[REG_A] = value & ~A_UIP  # DS: UIP is read only.
            return
        if index == REG_B:
            self._write_b(value)
            return
        if index in TIME_REGISTERS and not self.ram[REG_B] & B_SET:
            # Writing one time register while the clock runs: move the clock by the difference.
            rendered = self._render(self._now_seconds())
            for reg, val in rendered.items():
                self.ram[reg] = val
            self.ram[index] = value
            parsed = self._parse_time()
            if parsed is not None:
                self._offset = parsed + (self._now_seconds() % 1.0) - self._wallclock()
            return
        self.ram[index] = value

    def _write_b(self, value: int) -> None:
        old = self.ram[REG_B]
        if value & B_SET:
            value &= ~B_UIE  # DS: setting SET clears UIE.
        self.ram[REG_B] = value
        if value & B_SET and not old & B_SET:
            # Freeze the running time into the registers, in the new format, for the guest to edit.
            self.ram[REG_B] = value & ~B_SET
            frozen = self._render(self._now_seconds())
            self.ram[REG_B] = value
            for reg, val in frozen.items():
                self.ram[reg] = val
        if old & B_SET and not value & B_SET:
            parsed = self._parse_time()
            if parsed is not None:
                # DS: the clock resumes from the written time; the next update is a second later.
                self._offset = parsed - self._wallclock()
                self._seen_second = parsed
        self._update_irq()

    def state(self) -> dict[str, object]:
        return {"index": self.index, "nmi_masked": self.nmi_masked, "ram": bytes(self.ram),
                "offset_s": self._offset, "flags": self._flags, "irq_level": self._irq_level}
