"""Two cascaded Intel 8259A programmable interrupt controllers, as on a PC/AT.

Rules cited as "DS" come from the Intel 8259A datasheet (order number 231468).

Wiring (one object, two bus views): ``DualPic.master`` is a byte device for ports 0x20/0x21 and
``DualPic.slave`` one for 0xA0/0xA1; each takes offset 0 (A0=0) and offset 1 (A0=1).  The slave's
INT output drives the master's IR2, as on every AT.  Devices raise lines 0-15 with
``DualPic.set_irq(line, level)`` (or a callable from ``DualPic.line(n)``); the run loop asks
``has_interrupt()`` and runs the INTA cycle with ``acknowledge()``, which returns the vector.

Emulation choices:

* Requests are edge triggered unless ICW1 sets LTIM.  DS "Edge and level triggered modes": the IR
  input must stay high until the first INTA; if it goes low first, the request is gone and the
  acknowledge yields the default IR7 vector without setting ISR (the spurious IRQ7, or IRQ15 on
  the slave).  So a falling line clears its IRR bit in both modes.
* Until a chip has completed its first ICW1..ICW4 sequence, and while it is in the middle of one,
  its INT output stays low: an uninitialised PIC has no vector base to offer.
* ICW1 clears ISR as well as IRR and the edge-sense latches.  The datasheet lists only the latter
  and IMR; leaving ISR set across re-initialisation would block those levels forever, and every
  PC BIOS re-initialises expecting a clean controller.
* Only 8086 mode (ICW4 uPM=1) is meaningful to a PC; in 8080 mode the INTA cycle would place a
  CALL instruction on the bus, which pykvmm cannot inject, so ``acknowledge`` returns the 8086
  vector (T7-T3 | level) whatever uPM says.  uPM is kept in ``state()``.
"""

from __future__ import annotations

from typing import Callable

# --- Offsets (the A0 address line) ------------------------------------------------------------
CMD = 0  # A0=0: ICW1, OCW2, OCW3 writes; IRR/ISR/poll reads.
DATA = 1  # A0=1: ICW2-ICW4 during initialisation, then OCW1 (IMR); reads return IMR.

# --- ICW1 (written to A0=0 with D4=1) ---------------------------------------------------------
ICW1_SELECT = 0x10  # D4=1 marks ICW1 and starts the initialisation sequence.
ICW1_IC4 = 0x01  # ICW4 will follow; if 0, every ICW4 function is cleared.
ICW1_SNGL = 0x02  # Single chip: no ICW3.
ICW1_ADI = 0x04  # CALL address interval (8080 mode only; ignored).
ICW1_LTIM = 0x08  # Level-triggered requests instead of edge-triggered.

# --- ICW2 -------------------------------------------------------------------------------------
ICW2_VECTOR_MASK = 0xF8  # T7-T3 of the vector in 8086 mode; the level fills bits 2-0.

# --- ICW4 -------------------------------------------------------------------------------------
ICW4_UPM = 0x01  # 8086/8088 mode (else 8080/85).
ICW4_AEOI = 0x02  # Automatic EOI: ISR is not set (cleared at the end of INTA).
ICW4_MS = 0x04  # Buffered mode master/slave select.
ICW4_BUF = 0x08  # Buffered mode.
ICW4_SFNM = 0x10  # Special fully nested mode (master): equal-priority requests are honoured.

# --- OCW2 (A0=0, D4=0, D3=0): R, SL, EOI in bits 7-5, level in bits 2-0 -----------------------
OCW_SELECT_MASK = 0x18  # D4 and D3 tell ICW1 / OCW2 / OCW3 apart.
OCW2_SELECT = 0x00
OCW3_SELECT = 0x08
OCW2_COMMAND_MASK = 0xE0
OCW2_LEVEL_MASK = 0x07
OCW2_ROTATE_AEOI_CLEAR = 0x00  # Rotate in automatic EOI mode: clear.
OCW2_NONSPECIFIC_EOI = 0x20  # Clear the highest-priority ISR bit.
OCW2_NOP = 0x40  # No operation.
OCW2_SPECIFIC_EOI = 0x60  # Clear ISR bit L.
OCW2_ROTATE_AEOI_SET = 0x80  # Rotate in automatic EOI mode: set.
OCW2_ROTATE_NONSPECIFIC_EOI = 0xA0  # Non-specific EOI, then that level becomes lowest priority.
OCW2_SET_PRIORITY = 0xC0  # Level L becomes lowest priority.
OCW2_ROTATE_SPECIFIC_EOI = 0xE0  # Clear ISR bit L, and L becomes lowest priority.

# --- OCW3 (A0=0, D4=0, D3=1) ------------------------------------------------------------------
OCW3_RIS = 0x01  # With RR: 1 selects ISR for reads at A0=0, 0 selects IRR.
OCW3_RR = 0x02  # Act on RIS.
OCW3_POLL = 0x04  # The next A0=0 read is a poll (an interrupt acknowledge).
OCW3_SMM = 0x20  # With ESMM: 1 sets special mask mode, 0 resets it.
OCW3_ESMM = 0x40  # Act on SMM.

POLL_INT = 0x80  # Poll word bit 7: an interrupt was pending; bits 2-0 give its level.

SPURIOUS_LEVEL = 7  # DS: with no valid request at INTA, the chip answers with its IR7 vector.
NUM_LINES = 8

# The AT wiring of the pair.
CASCADE_LINE = 2  # The slave's INT drives the master's IR2.
MASTER_BASE_PORT = 0x20
SLAVE_BASE_PORT = 0xA0


class Pic8259:
    """One 8259A.  ``listener(level)`` is told whenever the INT output changes."""

    def __init__(self, name: str = "pic", listener: Callable[[bool], None] | None = None,
                 is_master: bool = False) -> None:
        self.name = name
        self._listener = listener
        self.is_master = is_master
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self._levels = 0  # The IR input pins as last driven.
        self.icw1 = 0
        self.vector_base = 0
        self.icw3 = 0
        self.icw4 = 0
        self._init_step = 0  # 0: operational; else the ICW expected next (2, 3 or 4).
        self._ready = False  # Set once a full initialisation sequence has completed.
        self.lowest = 7  # The lowest-priority level: IR7 after ICW1 (DS: fixed priority).
        self.rotate_in_aeoi = False
        self.special_mask = False
        self.read_isr = False  # DS: after ICW1 the A0=0 read returns IRR.
        self._poll = False
        self.spurious_count = 0
        self._int = False

    # --- the pins -----------------------------------------------------------------------------
    def set_irq(self, line: int, level: bool) -> None:
        """Drive IR ``line`` (0-7)."""
        if not 0 <= line < NUM_LINES:
            raise ValueError(f"{self.name}: IR line must be 0..7, not {line}")
        mask = 1 << line
        if level:
            if not self._levels & mask or self.icw1 & ICW1_LTIM:
                # Edge mode: a low-to-high transition latches IRR.  Level mode: a high input is a
                # request for as long as it stays high.
                self.irr |= mask
            self._levels |= mask
        else:
            self._levels &= ~mask
            # DS: a request that goes away before INTA is not remembered, in either mode.
            self.irr &= ~mask
        self._update()

    @property
    def int_output(self) -> bool:
        return self._int

    def acknowledge_level(self) -> int:
        """The INTA cycle on this chip: returns the level granted (7 when spurious)."""
        level = self._grant()
        return SPURIOUS_LEVEL if level is None else level

    def _grant(self) -> int | None:
        """DS: at INTA the highest-priority request's ISR bit is set and its IRR bit reset; in
        AEOI mode the ISR bit is cleared again at the end of the cycle.  With no valid request
        the chip answers with IR7 and sets no ISR bit; that is a spurious interrupt (None here).
        """
        level = self._eligible()
        if level is None:
            self.spurious_count += 1
            return None
        mask = 1 << level
        self.irr &= ~mask
        if self.icw1 & ICW1_LTIM and self._levels & mask:
            self.irr |= mask  # A level-triggered input still high is still requesting.
        if self.icw4 & ICW4_AEOI:
            if self.rotate_in_aeoi:
                self.lowest = level  # DS: rotation in AEOI mode makes the serviced level lowest.
        else:
            self.isr |= mask
        self._update()
        return level

    def vector(self, level: int) -> int:
        return self.vector_base | level

    # --- the bus ------------------------------------------------------------------------------
    def read(self, offset: int) -> int:
        if offset == CMD:
            if self._poll:
                # DS "The Poll Command": this read is an interrupt acknowledge.
                self._poll = False
                if self._eligible() is None:
                    return 0
                # DS poll word: I (bit 7) set when a request was granted, W2-W0 its level.
                return POLL_INT | self.acknowledge_level()
            return self.isr if self.read_isr else self.irr
        if offset == DATA:
            return self.imr
        raise ValueError(f"{self.name}: 8259A offset must be 0 or 1, not {offset:#x}")

    def write(self, offset: int, value: int) -> None:
        value &= 0xFF
        if offset == CMD:
            if value & ICW1_SELECT:
                self._write_icw1(value)
            elif value & OCW_SELECT_MASK == OCW2_SELECT:
                self._write_ocw2(value)
            elif value & OCW_SELECT_MASK == OCW3_SELECT:
                self._write_ocw3(value)
        elif offset == DATA:
            self._write_data(value)
        else:
            raise ValueError(f"{self.name}: 8259A offset must be 0 or 1, not {offset:#x}")
        self._update()

    def state(self) -> dict[str, object]:
        return {
            "irr": self.irr, "isr": self.isr, "imr": self.imr, "levels": self._levels,
            "icw1": self.icw1, "vector_base": self.vector_base, "icw3": self.icw3,
            "icw4": self.icw4, "initialised": self._ready, "init_step": self._init_step,
            "lowest_priority": self.lowest, "rotate_in_aeoi": self.rotate_in_aeoi,
            "special_mask": self.special_mask, "read_isr": self.read_isr, "poll": self._poll,
            "int": self._int, "spurious": self.spurious_count,
        }

    # --- internals ----------------------------------------------------------------------------
    def _write_icw1(self, value: int) -> None:
        self.icw1 = value
        # DS ICW1: the edge-sense circuit is reset (a high input must go low and high again),
        # IMR is cleared, IR7 gets the lowest priority, special mask mode is cleared and status
        # read selects IRR; without IC4 every ICW4 function is zero.
        self.irr = self._levels if value & ICW1_LTIM else 0
        self.isr = 0
        self.imr = 0
        self.lowest = 7
        self.rotate_in_aeoi = False
        self.special_mask = False
        self.read_isr = False
        self._poll = False
        if not value & ICW1_IC4:
            self.icw4 = 0
        self._init_step = 2

    def _write_data(self, value: int) -> None:
        step = self._init_step
        if step == 0:
            self.imr = value  # OCW1: a set bit masks that level.
        elif step == 2:
            self.vector_base = value & ICW2_VECTOR_MASK
            self._init_step = 3 if not self.icw1 & ICW1_SNGL else 4
            self._skip_absent_icw()
        elif step == 3:
            # Master: a bit per IR line with a slave on it.  Slave: its ID in bits 2-0.
            self.icw3 = value
            self._init_step = 4
            self._skip_absent_icw()
        else:
            self.icw4 = value & 0x1F
            self._finish_init()

    def _skip_absent_icw(self) -> None:
        if self._init_step == 4 and not self.icw1 & ICW1_IC4:
            self._finish_init()

    def _finish_init(self) -> None:
        self._init_step = 0
        self._ready = True

    def _write_ocw2(self, value: int) -> None:
        command = value & OCW2_COMMAND_MASK
        level = value & OCW2_LEVEL_MASK
        if command in (OCW2_NONSPECIFIC_EOI, OCW2_ROTATE_NONSPECIFIC_EOI):
            served = self._highest(self.isr)
            if served is not None:
                self.isr &= ~(1 << served)
                if command == OCW2_ROTATE_NONSPECIFIC_EOI:
                    self.lowest = served
        elif command in (OCW2_SPECIFIC_EOI, OCW2_ROTATE_SPECIFIC_EOI):
            self.isr &= ~(1 << level)
            if command == OCW2_ROTATE_SPECIFIC_EOI:
                self.lowest = level
        elif command == OCW2_SET_PRIORITY:
            self.lowest = level
        elif command == OCW2_ROTATE_AEOI_SET:
            self.rotate_in_aeoi = True
        elif command == OCW2_ROTATE_AEOI_CLEAR:
            self.rotate_in_aeoi = False
        # OCW2_NOP: nothing.

    def _write_ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_POLL:
            self._poll = True
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)

    def _priority(self, level: int) -> int:
        """0 is the highest priority: the level just after the lowest one."""
        return (level - self.lowest - 1) & 7

    def _highest(self, bits: int) -> int | None:
        best = None
        for level in range(NUM_LINES):
            if bits & (1 << level) and (best is None or self._priority(level) < self._priority(best)):
                best = level
        return best

    def _eligible(self) -> int | None:
        """The request INT would announce now, or None (the priority resolver of DS fig. 3)."""
        request = self._highest(self.irr & ~self.imr)
        if request is None:
            return None
        in_service = self.isr
        if self.special_mask:
            # DS special mask mode: a masked level no longer inhibits other levels, lower or higher.
            in_service &= ~self.imr
        current = self._highest(in_service)
        if current is None:
            return request
        if self._priority(request) < self._priority(current):
            return request
        if self.is_master and self.icw4 & ICW4_SFNM and request == current:
            # DS special fully nested mode: the master responds to requests of equal priority,
            # so a slave's higher-priority request gets through while its cascade line is in service.
            return request
        return None

    def _update(self) -> None:
        level = self._ready and self._init_step == 0 and self._eligible() is not None
        if level != self._int:
            self._int = level
            if self._listener is not None:
                self._listener(level)


class DualPic:
    """The AT pair: master at 0x20/0x21 (``master``), slave at 0xA0/0xA1 (``slave``) on IR2.

    ``on_int(level)``, if given, is told whenever the master's INT output (the CPU's INTR pin)
    changes, so a run loop sleeping in HLT can be woken.
    """

    def __init__(self, on_int: Callable[[bool], None] | None = None) -> None:
        if on_int is not None and not callable(on_int):
            raise TypeError(f"on_int must be a callable taking a bool, or None, not {on_int!r}")
        self.master = Pic8259("master PIC", listener=on_int, is_master=True)
        self.slave = Pic8259("slave PIC", listener=self._cascade)
        self.irqs_acknowledged = 0

    def _cascade(self, level: bool) -> None:
        self.master.set_irq(CASCADE_LINE, level)

    def set_irq(self, line: int, level: bool) -> None:
        """Drive ISA IRQ ``line`` (0-15; 2 is the cascade and cannot be driven)."""
        if line == CASCADE_LINE:
            raise ValueError("IRQ2 is the cascade input from the slave PIC; on an AT the ISA "
                             "IRQ2 pin is wired to IRQ9")
        if 0 <= line < NUM_LINES:
            self.master.set_irq(line, level)
        elif NUM_LINES <= line < 2 * NUM_LINES:
            self.slave.set_irq(line - NUM_LINES, level)
        else:
            raise ValueError(f"IRQ line must be 0..15, not {line}")

    def line(self, line: int) -> Callable[[bool], None]:
        """A callable ``irq(level)`` for a device wired to IRQ ``line``."""
        if line == CASCADE_LINE or not 0 <= line < 2 * NUM_LINES:
            self.set_irq(line, False)  # raises with the reason
        return lambda level: self.set_irq(line, level)

    def has_interrupt(self) -> bool:
        """The CPU's INTR pin: the master has a request to announce."""
        return self.master.int_output

    def acknowledge(self) -> int:
        """The INTA cycle: the vector the CPU receives.

        The master grants a level; if a slave hangs off that level (master ICW3), the slave
        supplies the vector (DS "Cascading").  A spurious request answers with IR7 of whichever
        chip had nothing to grant (vector base | 7: IRQ7 or IRQ15) and sets no ISR bit there.
        """
        self.irqs_acknowledged += 1
        level = self.master._grant()
        if level is None:
            return self.master.vector(SPURIOUS_LEVEL)
        if level == CASCADE_LINE and self.master.icw3 & (1 << CASCADE_LINE):
            return self.slave.vector(self.slave.acknowledge_level())
        return self.master.vector(level)

    def state(self) -> dict[str, object]:
        return {"master": self.master.state(), "slave": self.slave.state(),
                "irqs_acknowledged": self.irqs_acknowledged}
