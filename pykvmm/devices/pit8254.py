"""The Intel 8254 programmable interval timer, as on a PC (ports 0x40-0x43).

Rules cited as "DS" come from the Intel 8254 datasheet (order number 231164).

Offsets 0-2 are the counters' data ports and offset 3 the control word register.  Counter 0's OUT
drives ``irq0(level)``; counter 1 (DRAM refresh on old PCs) drives nothing; counter 2's GATE and
OUT are wired through port 0x61 with ``set_gate(2, level)`` and ``output(2)``.  The GATEs of
counters 0 and 1 are tied high, as on a PC.

Time model.  Every counter is clocked by one 1.193182 MHz CLK derived from the injected monotonic
clock: CLK pulse P happens at ``epoch + P / CLK_HZ`` seconds.  Nothing ticks in the background:
each counter remembers when its counting element (CE) was loaded and computes its value and OUT
for any later pulse in closed form.  A counter's history is a "segment": the count N it is running
with, the pulse at which it started and how many pulses it had counted by then (``j``, the
position in the counting sequence); gate changes and new counts start new segments.

Interrupts.  ``deadline()`` is the monotonic time of the next change of OUT0 that raises or lowers
IRQ0 (for modes 2, 4 and 5, whose low pulse lasts one CLK, it is the end of the pulse, the rising
edge).  ``poll()`` brings OUT0 up to date: if one or more rising edges happened since the last poll
the PIC is shown an edge (a low then a high if the line was already high), then the current level.
Edges missed while the host was late are merged into one, as a real CPU that did not acknowledge
in time merges them.  Every port access polls first, so state changes never hide an edge.
"""

from __future__ import annotations

import time
from typing import Callable

CLK_HZ = 1_193_182  # The PC's PIT clock: 14.31818 MHz / 12.
NS_PER_S = 1_000_000_000

# --- Offsets ----------------------------------------------------------------------------------
COUNTER0 = 0
COUNTER1 = 1
COUNTER2 = 2
CONTROL = 3  # Control word register; write only (DS: a read at A1A0=11 is a no-op, bus floats).
NUM_COUNTERS = 3
FLOATING_BUS = 0xFF  # What a read of the control word register returns on an ISA bus.

# --- Control word fields (DS "Control Word Format") -------------------------------------------
CW_SC_SHIFT = 6  # SC1-SC0: counter select; 3 is the read-back command.
CW_SC_READ_BACK = 3
CW_RW_SHIFT = 4  # RW1-RW0: access.
CW_RW_MASK = 0x30
RW_LATCH = 0  # Counter latch command.
RW_LSB = 1  # Read/write least significant byte only.
RW_MSB = 2  # Read/write most significant byte only.
RW_LSB_MSB = 3  # Least significant byte first, then most significant byte.
CW_MODE_SHIFT = 1  # M2-M0: mode; 6 and 7 are modes 2 and 3 (M2 is "don't care" for them).
CW_MODE_MASK = 0x0E
CW_BCD = 0x01  # Binary-coded decimal counting (four decades).
CW_STATUS_BITS = 0x3F  # The part of the control word the read-back status echoes.

# --- Read-back command (DS "Read-Back Command") -----------------------------------------------
RB_NOT_COUNT = 0x20  # Active low: 0 latches the count of the selected counters.
RB_NOT_STATUS = 0x10  # Active low: 0 latches the status of the selected counters.
RB_CNT0 = 0x02  # Select counter 0 (counter 1 is 0x04, counter 2 is 0x08).
STATUS_OUTPUT = 0x80  # Status bit 7: the OUT pin.
STATUS_NULL_COUNT = 0x40  # Status bit 6: a count was written but not yet loaded into the CE.

BINARY_MODULUS = 0x10000  # A written 0 means 2^16 in binary ...
BCD_MODULUS = 10000  # ... and 10^4 in BCD.

MODE_INTERRUPT_ON_TC = 0  # OUT low until the count expires.
MODE_ONE_SHOT = 1  # Hardware-retriggerable one-shot: OUT low for N CLKs after a GATE trigger.
MODE_RATE = 2  # Rate generator: OUT low for one CLK every N CLKs.
MODE_SQUARE = 3  # Square wave: OUT high for ceil(N/2) CLKs, low for floor(N/2).
MODE_SW_STROBE = 4  # Software-triggered strobe: OUT low for one CLK N+1 CLKs after the count.
MODE_HW_STROBE = 5  # Hardware-triggered strobe: the same, triggered by a GATE rising edge.


def _next_congruent(after: int, residue: int, modulus: int) -> int:
    """The smallest j > after with j % modulus == residue % modulus."""
    return after + 1 + ((residue - after - 1) % modulus)


def _to_bcd(value: int) -> int:
    return int(str(value % BCD_MODULUS), 16)


def _from_bcd(value: int) -> int:
    """Four BCD digits to an integer; invalid digits are taken at face value (a datasheet void)."""
    result = 0
    for shift in (12, 8, 4, 0):
        result = result * 10 + ((value >> shift) & 0xF)
    return result


class _Counter:
    """One of the three counters.  Pulses are absolute CLK indices."""

    def __init__(self, gate: bool) -> None:
        self.control = (RW_LSB_MSB << CW_RW_SHIFT)  # Mode 0, binary; unprogrammed.
        self.mode = MODE_INTERRUPT_ON_TC
        self.rw = RW_LSB_MSB
        self.bcd = False
        self.gate = gate
        self.programmed = False  # A control word has been written.
        self.cr: int | None = None  # The count register, as a period (1..65536 or 1..10000).
        # The running segment.
        self.n = 0  # Count the CE is running with; 0 while nothing was ever loaded.
        self.base_j = 0
        self.run_start: int | None = None  # None: paused (or never started).
        self.loaded = False
        self.prev_ce = 0  # CE shown before the load pulse of a fresh segment.
        # A count written in mode 2 or 3 while counting: (switch pulse, n, base_j).
        self.pending: tuple[int, int, int] | None = None
        self.null_count = False
        self.null_until: int | None = None  # Pulse at which the CR reaches the CE, if known.
        self.hold_low = False  # Mode 0: first byte of a two-byte count written; OUT low.
        # Bus-side state.
        self.write_lsb_next = True
        self.write_low = 0
        self.read_lsb_next = True
        self.latched_count: list[int] = []  # Bytes still to be read from the output latch.
        self.latched_status: int | None = None

    # --- closed-form evaluation -----------------------------------------------------------
    @property
    def modulus(self) -> int:
        return BCD_MODULUS if self.bcd else BINARY_MODULUS

    def sync(self, pulse: int) -> None:
        if self.pending is not None and pulse >= self.pending[0]:
            switch, n, base_j = self.pending
            self.pending = None
            self.n, self.base_j, self.run_start = n, base_j, switch
        if self.null_until is not None and pulse >= self.null_until:
            self.null_count = False
            self.null_until = None

    def j_at(self, pulse: int) -> int | None:
        """Position in the counting sequence, or None before the segment's load pulse."""
        if not self.loaded:
            return None
        if self.run_start is None:
            return self.base_j
        if pulse < self.run_start:
            return None if self.base_j == 0 else self.base_j
        return self.base_j + pulse - self.run_start

    def out_at(self, pulse: int) -> bool:
        self.sync(pulse)
        mode = self.mode
        if not self.programmed:
            return False
        if mode == MODE_INTERRUPT_ON_TC:
            if self.hold_low:
                return False
            j = self.j_at(pulse)
            return j is not None and j >= self.n
        if mode in (MODE_RATE, MODE_SQUARE) and not self.gate:
            return True  # DS modes 2, 3: GATE low sets OUT high immediately.
        j = self.j_at(pulse)
        if j is None:
            return True  # Modes 1-5: OUT is initially high.
        n = self.n
        if mode == MODE_ONE_SHOT:
            return j >= n
        if mode == MODE_RATE:
            return j % n != n - 1
        if mode == MODE_SQUARE:
            return j % n < (n + 1) // 2
        return j != n  # Modes 4 and 5.

    def ce_at(self, pulse: int) -> int:
        """The counting element as the bus would read it (BCD-encoded in BCD mode)."""
        self.sync(pulse)
        j = self.j_at(pulse)
        if j is None:
            value = self.prev_ce
        else:
            n = self.n
            if self.mode == MODE_RATE:
                value = n - j % n
            elif self.mode == MODE_SQUARE:
                half = (n + 1) // 2
                phase = j % n
                if phase >= half:
                    phase -= half
                # DS: odd counts load N-1, even counts N; both then decrement by two.
                value = (n - (n & 1)) - 2 * phase
            else:
                value = n - j
            value %= self.modulus
        return _to_bcd(value) if self.bcd else value

    def _next_in_segment(self, after: int, rising: bool) -> int | None:
        """The first pulse > ``after`` with a rising (or falling) OUT edge in the current segment."""
        if not self.programmed or not self.loaded or self.run_start is None or self.hold_low:
            return None
        if self.mode in (MODE_RATE, MODE_SQUARE) and not self.gate:
            return None
        j0 = self.j_at(after)
        if j0 is None:
            j0 = -1
        n, mode = self.n, self.mode
        if mode == MODE_INTERRUPT_ON_TC:
            j = n if rising and j0 < n else None
        elif mode == MODE_ONE_SHOT:
            j = (n if j0 < n else None) if rising else (0 if j0 < 0 else None)
        elif mode == MODE_RATE:
            j = _next_congruent(max(j0, 0), 0, n) if rising else _next_congruent(j0, n - 1, n)
            if n == 1:
                return None  # DS: a count of 1 is illegal in mode 2; OUT never rises.
        elif mode == MODE_SQUARE:
            half = (n + 1) // 2
            if half == n:
                return None  # N=1: OUT stays high.
            j = _next_congruent(max(j0, 0), 0, n) if rising else _next_congruent(j0, half, n)
        else:
            if rising:
                j = n + 1 if j0 < n + 1 else None
            else:
                j = n if j0 < n else None
        if j is None:
            return None
        return self.run_start + (j - self.base_j)

    def next_edge(self, after: int, rising: bool) -> int | None:
        """Like _next_in_segment, but across a pending count switch."""
        self.sync(after)
        edge = self._next_in_segment(after, rising)
        if self.pending is not None and (edge is None or edge > self.pending[0]):
            # Look into the segment the pending count will start, without committing to it.
            switch, n, base_j = self.pending
            saved = (self.n, self.base_j, self.run_start)
            self.n, self.base_j, self.run_start = n, base_j, switch
            edge = self._next_in_segment(switch, rising)
            self.n, self.base_j, self.run_start = saved
        return edge

    # --- events -----------------------------------------------------------------------------
    def program(self, control: int, pulse: int) -> None:
        """DS: writing a control word resets the counter's logic and sets OUT to its initial state."""
        self.control = control & CW_STATUS_BITS
        mode = (control & CW_MODE_MASK) >> CW_MODE_SHIFT
        self.mode = mode & 3 if mode >= 6 else mode  # DS: 110 and 111 are modes 2 and 3.
        self.rw = (control & CW_RW_MASK) >> CW_RW_SHIFT
        self.bcd = bool(control & CW_BCD)
        self.programmed = True
        self.prev_ce = self.ce_at(pulse) if self.loaded else 0
        self.cr = None
        self.loaded = False
        self.run_start = None
        self.base_j = 0
        self.pending = None
        self.null_count = True
        self.null_until = None
        self.hold_low = False
        self.write_lsb_next = True
        self.read_lsb_next = True
        self.latched_count = []
        self.latched_status = None

    def _fresh_load(self, n: int, pulse: int, running: bool) -> None:
        """The CR is transferred to the CE on the next CLK pulse (DS, every mode)."""
        self.prev_ce = self.ce_at(pulse) if self.loaded else 0
        self.n = n
        self.base_j = 0
        self.loaded = True
        self.run_start = pulse + 1 if running else None
        self.pending = None
        self.null_until = pulse + 1

    def write_count(self, n: int, pulse: int) -> None:
        self.sync(pulse)
        self.cr = n
        self.null_count = True
        self.hold_low = False
        mode = self.mode
        if mode in (MODE_INTERRUPT_ON_TC, MODE_SW_STROBE):
            # DS modes 0, 4: a new count is loaded on the next CLK and counting restarts from it;
            # GATE low keeps the CE from counting.
            self._fresh_load(n, pulse, running=self.gate)
        elif mode in (MODE_ONE_SHOT, MODE_HW_STROBE):
            # DS modes 1, 5: the count waits for a GATE trigger; a running one-shot is unaffected.
            self.null_until = None
        elif (not self.loaded or not self.gate or self.run_start is None
              or (pulse < self.run_start and self.base_j == 0)):
            # Modes 2, 3: the first count is loaded on the next CLK (a count rewritten before that
            # CLK simply replaces it); with GATE low the CE will be reloaded from the CR by the
            # GATE's rising edge.
            self._fresh_load(n, pulse, running=self.gate)
        else:
            # DS modes 2, 3: a count written while counting does not disturb the current cycle
            # (mode 2) or half-cycle (mode 3); it is loaded when that ends.
            j = self.j_at(pulse)
            j = 0 if j is None else j
            old = self.n
            if mode == MODE_RATE:
                end_j = _next_congruent(j, 0, old)
                base_j = 0
            else:
                half = (old + 1) // 2
                to_low = _next_congruent(j, half, old)
                to_high = _next_congruent(j, 0, old)
                end_j = min(to_low, to_high)
                base_j = (n + 1) // 2 if end_j == to_low else 0  # A low half-cycle of the new count.
            switch = self.run_start + (end_j - self.base_j)
            self.pending = (switch, n, base_j)
            self.null_until = switch

    def first_byte_written(self) -> None:
        # DS mode 0: writing the first byte of a two-byte count stops counting and sets OUT low.
        if self.mode == MODE_INTERRUPT_ON_TC and self.programmed:
            self.hold_low = True

    def set_gate(self, level: bool, pulse: int) -> None:
        self.sync(pulse)
        if level == self.gate:
            return
        rising = level
        mode = self.mode
        if mode in (MODE_INTERRUPT_ON_TC, MODE_SW_STROBE):
            # DS: GATE low suspends counting; high resumes it.
            if self.loaded:
                if not rising:
                    j = self.j_at(pulse)
                    self.base_j = 0 if j is None else j
                    self.run_start = None
                else:
                    self.run_start = pulse
        elif mode in (MODE_RATE, MODE_SQUARE):
            if not rising and self.loaded:
                j = self.j_at(pulse)
                self.base_j = 0 if j is None else j
                self.run_start = None
                self.pending = None  # The CR will be reloaded by the next trigger anyway.
            elif rising and self.cr is not None:
                # DS: a GATE trigger reloads the CE with the initial count on the next CLK.
                self._fresh_load(self.cr, pulse, running=True)
        elif rising and self.cr is not None and self.programmed:
            # DS modes 1, 5: a GATE rising edge (re)triggers the count on the next CLK.
            self._fresh_load(self.cr, pulse, running=True)
        self.gate = level

    def latch_count(self, pulse: int) -> None:
        # DS: a second latch before the first is read is ignored.
        if self.latched_count or not self.programmed:
            return
        value = self.ce_at(pulse)
        lsb, msb = value & 0xFF, value >> 8
        self.latched_count = {RW_LSB: [lsb], RW_MSB: [msb]}.get(self.rw, [lsb, msb])

    def latch_status(self, pulse: int) -> None:
        if self.latched_status is not None:
            return
        self.sync(pulse)
        status = self.control
        if self.out_at(pulse):
            status |= STATUS_OUTPUT
        if self.null_count:
            status |= STATUS_NULL_COUNT
        self.latched_status = status

    def read(self, pulse: int) -> int:
        # DS read-back: with both latched, the status comes out first, then the count.
        if self.latched_status is not None:
            value = self.latched_status
            self.latched_status = None
            return value
        if self.latched_count:
            return self.latched_count.pop(0)
        value = self.ce_at(pulse)
        if self.rw == RW_LSB:
            return value & 0xFF
        if self.rw == RW_MSB:
            return value >> 8
        lsb_now = self.read_lsb_next
        self.read_lsb_next = not lsb_now
        return value & 0xFF if lsb_now else value >> 8

    def write(self, value: int, pulse: int) -> None:
        if not self.programmed:
            return  # The counter waits for a control word; without a mode the count is meaningless.
        if self.rw == RW_LSB:
            raw = value
        elif self.rw == RW_MSB:
            raw = value << 8
        elif self.write_lsb_next:
            self.write_low = value
            self.write_lsb_next = False
            self.first_byte_written()
            return
        else:
            raw = self.write_low | (value << 8)
            self.write_lsb_next = True
        n = _from_bcd(raw) if self.bcd else raw
        self.write_count(n or self.modulus, pulse)

    def state(self, pulse: int) -> dict[str, object]:
        return {"mode": self.mode, "rw": self.rw, "bcd": self.bcd, "count": self.cr,
                "ce": self.ce_at(pulse), "out": self.out_at(pulse), "gate": self.gate,
                "null_count": self.null_count}


class Pit8254:
    """The PC's 8254.  ``irq0(level)`` receives counter 0's OUT; time comes from ``clock()``."""

    def __init__(self, irq0: Callable[[bool], None] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if irq0 is not None and not callable(irq0):
            raise TypeError(f"irq0 must be a callable taking a bool, or None, not {irq0!r}")
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning monotonic nanoseconds, not {clock!r}")
        self._irq0 = irq0
        self._clock = clock
        self._epoch = clock()
        # GATE0 and GATE1 are tied high on a PC; GATE2 comes from port 0x61 bit 0, low at reset.
        self.counters = [_Counter(gate=True), _Counter(gate=True), _Counter(gate=False)]
        self._irq_level = False
        self._polled_pulse = 0
        self.irq0_edges = 0

    def _pulse(self) -> int:
        """CLK pulses since the epoch: pulse P falls at epoch + P / CLK_HZ."""
        return (self._clock() - self._epoch) * CLK_HZ // NS_PER_S

    def _pulse_time(self, pulse: int) -> int:
        return self._epoch + -(-pulse * NS_PER_S // CLK_HZ)

    # --- the run loop's side ------------------------------------------------------------------
    def deadline(self) -> int | None:
        """The monotonic ns at which OUT0 next changes, or None if it never will by itself."""
        counter = self.counters[COUNTER0]
        # Counted from the last poll: an edge that already passed unpolled is due at once.
        since = self._polled_pulse
        rise = counter.next_edge(since, rising=True)
        fall = None
        if counter.mode in (MODE_INTERRUPT_ON_TC, MODE_ONE_SHOT, MODE_SQUARE):
            fall = counter.next_edge(since, rising=False)  # Modes 2, 4, 5: a one-CLK pulse.
        edges = [p for p in (rise, fall) if p is not None]
        return self._pulse_time(min(edges)) if edges else None

    def poll(self) -> None:
        """Bring OUT0 (IRQ0) up to date with the clock."""
        self._poll_at(self._pulse())

    def _poll_at(self, now: int) -> None:
        counter = self.counters[COUNTER0]
        last = self._polled_pulse
        rose = False
        if now > last:
            edge = counter.next_edge(last, rising=True)
            rose = edge is not None and edge <= now
        self._polled_pulse = max(now, last)
        level = counter.out_at(now)
        if rose:
            self.irq0_edges += 1
            if self._irq_level:
                self._set_irq0(False)
            self._set_irq0(True)
        self._set_irq0(level)

    def _set_irq0(self, level: bool) -> None:
        if level != self._irq_level:
            self._irq_level = level
            if self._irq0 is not None:
                self._irq0(level)

    # --- port 0x61's side ---------------------------------------------------------------------
    def set_gate(self, counter: int, level: bool) -> None:
        """Drive a counter's GATE input (only counter 2's is wired on a PC)."""
        if not 0 <= counter < NUM_COUNTERS:
            raise ValueError(f"PIT counter must be 0..2, not {counter}")
        now = self._pulse()
        self._poll_at(now)
        self.counters[counter].set_gate(bool(level), now)
        self._poll_at(now)

    def output(self, counter: int) -> bool:
        """A counter's OUT pin now (port 0x61 bit 5 reads counter 2's)."""
        if not 0 <= counter < NUM_COUNTERS:
            raise ValueError(f"PIT counter must be 0..2, not {counter}")
        now = self._pulse()
        self._poll_at(now)
        return self.counters[counter].out_at(now)

    def gate(self, counter: int) -> bool:
        return self.counters[counter].gate

    # --- the bus ------------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        now = self._pulse()
        self._poll_at(now)
        if 0 <= offset < NUM_COUNTERS:
            return self.counters[offset].read(now)
        if offset == CONTROL:
            return FLOATING_BUS
        raise ValueError(f"8254 offset must be 0..3, not {offset:#x}")

    def write(self, offset: int, value: int) -> None:
        value &= 0xFF
        now = self._pulse()
        self._poll_at(now)
        if 0 <= offset < NUM_COUNTERS:
            self.counters[offset].write(value, now)
        elif offset == CONTROL:
            self._write_control(value, now)
        else:
            raise ValueError(f"8254 offset must be 0..3, not {offset:#x}")
        self._poll_at(now)

    def _write_control(self, value: int, now: int) -> None:
        select = value >> CW_SC_SHIFT
        if select == CW_SC_READ_BACK:
            for index in range(NUM_COUNTERS):
                if value & (RB_CNT0 << index):
                    counter = self.counters[index]
                    # DS: latch the status first so it reflects the moment of the command.
                    if not value & RB_NOT_STATUS:
                        counter.latch_status(now)
                    if not value & RB_NOT_COUNT:
                        counter.latch_count(now)
            return
        counter = self.counters[select]
        if (value & CW_RW_MASK) >> CW_RW_SHIFT == RW_LATCH:
            counter.latch_count(now)  # DS: the mode and access format are unchanged.
        else:
            counter.program(value, now)

    def state(self) -> dict[str, object]:
        now = self._pulse()
        self._poll_at(now)
        return {"pulse": now, "irq0_level": self._irq_level, "irq0_edges": self.irq0_edges,
                "counters": [c.state(now) for c in self.counters]}
