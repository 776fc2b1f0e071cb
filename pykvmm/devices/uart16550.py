"""The National/TI PC16550D UART, as wired on a PC (COM1 at 0x3F8, IRQ4).

Register offsets are relative to the device base (stride 1).  Rules cited as "DS" come from the
PC16550D datasheet (National Semiconductor, rev. June 1995; TI SNLS378).

Emulation choices, each a place where the datasheet leaves freedom or names real time:

* Transmission is instantaneous: a byte written to THR goes straight to the output sink, so THR
  and the transmitter shift register are always empty again by the time the guest looks (LSR THRE
  and TEMT read 1).  The THRE interrupt is still an *edge*: the IRQ line drops when THR is written
  and rises again when the byte has gone, so an edge-triggered PIC sees one interrupt per write.
* The receive side holds 16 bytes in FIFO mode and 1 byte (the 16450 holding register) otherwise.
  Host input beyond that is an overrun: LSR OE is set and the byte is dropped and counted in
  ``rx_dropped``.  ``rx_room()`` tells the host side how many bytes fit, so it may pace its input.
* The character timeout (IIR 0x0C) needs four character times with no new input and no read.
  Host input arrives in bursts, so the timeout is taken to have expired whenever the receive FIFO
  holds fewer bytes than the trigger level; it is reported until the FIFO is empty or reaches
  the trigger level (then it is 0x04).
* The modem inputs of the far end (CTS, DSR, DCD asserted, RI not) are a constructor argument.
* Parity, framing and break errors never occur: host bytes arrive intact.  LSR bits 2-4 and 7
  therefore read 0.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

# --- Register offsets (DS table II) -----------------------------------------------------------
RBR = 0  # Receiver buffer (read, DLAB=0): the oldest received byte.
THR = 0  # Transmitter holding register (write, DLAB=0).
DLL = 0  # Divisor latch, low byte (read/write, DLAB=1).
IER = 1  # Interrupt enable register (DLAB=0).
DLM = 1  # Divisor latch, high byte (DLAB=1).
IIR = 2  # Interrupt identification register (read).
FCR = 2  # FIFO control register (write).
LCR = 3  # Line control register; bit 7 (DLAB) switches offsets 0 and 1 to the divisor latch.
MCR = 4  # Modem control register.
LSR = 5  # Line status register (writes are ignored: DS says it is intended for read only).
MSR = 6  # Modem status register (writes are ignored for the same reason).
SCR = 7  # Scratch register: eight bits the chip stores and never uses.
NUM_REGISTERS = 8

# --- IER bits (DS 8.6) ------------------------------------------------------------------------
IER_ERBFI = 0x01  # Enable received-data-available (and, in FIFO mode, character timeout) interrupt.
IER_ETBEI = 0x02  # Enable transmitter-holding-register-empty interrupt.
IER_ELSI = 0x04  # Enable receiver line status interrupt (OE, PE, FE, BI).
IER_EDSSI = 0x08  # Enable modem status interrupt (any MSR delta bit).
IER_MASK = 0x0F  # Bits 4-7 are always 0 on the 16550.

# --- IIR values (DS table IV, in priority order) ----------------------------------------------
IIR_NO_INT = 0x01  # Bit 0 = 1: no interrupt pending (the bit is active low).
IIR_RLS = 0x06  # Priority 1: receiver line status; cleared by reading LSR.
IIR_RDA = 0x04  # Priority 2: received data at/above trigger level; cleared when it drops below.
IIR_CTI = 0x0C  # Priority 2: character timeout (FIFO mode only); cleared by reading RBR.
IIR_THRE = 0x02  # Priority 3: THR empty; cleared by reading IIR (if source) or writing THR.
IIR_MSI = 0x00  # Priority 4: modem status; cleared by reading MSR.
IIR_FIFO_ENABLED = 0xC0  # Bits 6-7 read 1 when FCR bit 0 is set.

# --- FCR bits (DS 8.4) ------------------------------------------------------------------------
FCR_FIFO_ENABLE = 0x01  # Enables both FIFOs; other FCR bits are only programmed while it is written 1.
FCR_RX_RESET = 0x02  # Clears the receiver FIFO (self-clearing); the shift register is untouched.
FCR_TX_RESET = 0x04  # Clears the transmitter FIFO (self-clearing).
FCR_DMA_MODE = 0x08  # RXRDY/TXRDY pin mode; no effect without DMA pins, but stored.
FCR_TRIGGER_MASK = 0xC0  # Receiver FIFO trigger level: 1, 4, 8 or 14 bytes.
FCR_TRIGGER_SHIFT = 6
RX_TRIGGER_LEVELS = (1, 4, 8, 14)

# --- LCR bits (DS 8.5) ------------------------------------------------------------------------
LCR_DLAB = 0x80  # Divisor latch access bit.
LCR_BREAK = 0x40  # Set break: forces the serial output to spacing.

# --- MCR bits (DS 8.7) ------------------------------------------------------------------------
MCR_DTR = 0x01  # Data terminal ready output.
MCR_RTS = 0x02  # Request to send output.
MCR_OUT1 = 0x04  # User output 1.
MCR_OUT2 = 0x08  # User output 2; on a PC it enables the IRQ line's tristate buffer.
MCR_LOOP = 0x10  # Loopback: TX feeds RX internally, DTR/RTS/OUT1/OUT2 drive DSR/CTS/RI/DCD.
MCR_MASK = 0x1F  # Bits 5-7 are always 0.

# --- LSR bits (DS 8.3) ------------------------------------------------------------------------
LSR_DR = 0x01  # Data ready: at least one byte in RBR/the receiver FIFO.
LSR_OE = 0x02  # Overrun error: a byte arrived with no room; cleared by reading LSR.
LSR_PE = 0x04  # Parity error; cleared by reading LSR.
LSR_FE = 0x08  # Framing error; cleared by reading LSR.
LSR_BI = 0x10  # Break interrupt; cleared by reading LSR.
LSR_THRE = 0x20  # Transmitter holding register (or TX FIFO) empty.
LSR_TEMT = 0x40  # Transmitter empty: THR and the transmitter shift register both empty.
LSR_FIFO_ERROR = 0x80  # FIFO mode: at least one PE/FE/BI byte in the receiver FIFO.
LSR_ERROR_BITS = LSR_OE | LSR_PE | LSR_FE | LSR_BI  # The line-status interrupt sources.

# --- MSR bits (DS 8.8) ------------------------------------------------------------------------
MSR_DCTS = 0x01  # CTS changed since MSR was last read.
MSR_DDSR = 0x02  # DSR changed since MSR was last read.
MSR_TERI = 0x04  # RI changed from active to inactive (trailing edge) since MSR was last read.
MSR_DDCD = 0x08  # DCD changed since MSR was last read.
MSR_CTS = 0x10  # Clear to send (complement of the pin); in loopback it is MCR RTS.
MSR_DSR = 0x20  # Data set ready; in loopback it is MCR DTR.
MSR_RI = 0x40  # Ring indicator; in loopback it is MCR OUT1.
MSR_DCD = 0x80  # Data carrier detect; in loopback it is MCR OUT2.
MSR_DELTA_BITS = MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD
MSR_STATUS_BITS = MSR_CTS | MSR_DSR | MSR_RI | MSR_DCD

# The far end of the line as pykvmm presents it: a connected terminal that is ready to talk.
DEFAULT_MODEM_INPUTS = MSR_CTS | MSR_DSR | MSR_DCD

# Receive capacities: the 16-byte FIFO, or the single 16450 holding register when FIFOs are off.
RX_FIFO_SIZE = 16
RX_HOLDING_SIZE = 1

# Divisor latch contents are not touched by master reset (DS table III) and so are undefined at
# power-up; pykvmm starts at 12, i.e. 9600 baud from the PC's 1.8432 MHz crystal.
DEFAULT_DIVISOR = 12


class Uart16550:
    """One 16550A.  ``sink(data)`` receives transmitted bytes; ``irq(level)`` is the PC IRQ line.

    The IRQ line as the PIC sees it is the chip's INTR output gated by MCR OUT2, which is how the
    PC wires it.  In loopback the chip forces its OUT2 pin inactive (DS 8.7), so the PC line is
    then low whatever the chip's internal interrupt state; IIR still reports it.
    """

    def __init__(self, sink: Callable[[bytes], None],
                 irq: Callable[[bool], None] | None = None,
                 modem_inputs: int = DEFAULT_MODEM_INPUTS) -> None:
        if not callable(sink):
            raise TypeError(f"sink must be a callable taking bytes, not {sink!r}")
        if irq is not None and not callable(irq):
            raise TypeError(f"irq must be a callable taking a bool, or None, not {irq!r}")
        if modem_inputs & ~MSR_STATUS_BITS:
            raise ValueError(f"modem_inputs must use only MSR bits 4-7 (0xf0), not {modem_inputs:#x}")
        self._tx = 0  # bytes transmitted through write() (tx_count adds the THR accessor's)
        self._rx: deque[int] = deque()
        self.set_sink(sink)
        self._irq = irq
        self._external_inputs = modem_inputs
        self.divisor = DEFAULT_DIVISOR
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self._lsr_errors = 0  # Sticky OE (and, in principle, PE/FE/BI) until LSR is read.
        self._msr_deltas = 0
        self._msr_inputs = modem_inputs
        self._last_rbr = 0
        self._thr_pending = False  # The THRE interrupt latch (DS: cleared by IIR read or THR write).
        self._irq_level = False
        self.rx_dropped = 0

    # --- host side -----------------------------------------------------------------------------
    def rx_room(self) -> int:
        """Bytes ``receive`` would accept now without an overrun (0 in loopback: SIN is cut off)."""
        if self.mcr & MCR_LOOP:
            return 0
        return self._rx_capacity() - len(self._rx)

    def receive(self, data: bytes) -> int:
        """Bytes arriving on the serial input.  Returns how many were accepted; the rest overran.

        In loopback the serial input is disconnected from the receiver (DS 8.7), so every byte
        is lost and counted as dropped.
        """
        if self.mcr & MCR_LOOP:
            self.rx_dropped += len(data)
            return 0
        accepted = 0
        for byte in data:
            accepted += self._receive_byte(byte)
        self._update_irq()
        return accepted

    def set_sink(self, sink: Callable[[bytes], None]) -> None:
        """Where transmitted bytes go from now on."""
        self._sink = sink
        # One transmitted byte: the sink's own byte method when it has one (pykvmm's Sink: no
        # bytes object per byte on the polled-output hot path), else sink(bytes((value,))).
        self._put = getattr(sink, "byte", None) or (lambda value: sink(bytes((value,))))
        if not hasattr(self, "_thr_op"):
            self._thr_op, self._thr_sent, self._thr_bind, self._thr_polled = self._make_thr_op()
        raw = getattr(sink, "raw_buffer", None)
        raw = raw() if raw is not None else None
        if raw is None:
            # the byte goes through the sink's own call; a buffer never full: no flush
            self._thr_bind(self._put, b"", None, 1)
        else:
            buf, flush, limit = raw
            self._thr_bind(buf.append, buf, flush, limit)

    @property
    def tx_count(self) -> int:
        """Bytes transmitted (to the sink, or to the receiver in loopback)."""
        return self._tx + self._thr_sent()

    # --- guest side ----------------------------------------------------------------------------
    def byte_ops(self, offset: int) -> tuple[Callable[[int], int] | None,
                                             Callable[[int, int], None] | None]:
        """Accessors of one register for a port bus's byte IO (PortBus.byte_readers): a reader
        taking the port and a writer taking the port and a byte, each doing exactly what
        read(offset) / write(offset, value) do, or None.  Polled output reads LSR and writes
        THR for every byte; these two skip the register dispatch of read and write."""
        if offset == THR:
            return None, self._thr_op
        if offset == LSR:
            return self._lsr_op, None
        return None, None

    def _repoll(self) -> None:
        """Tell the THR accessor whether a THR write can only move the byte, with no interrupt
        edge and no loopback (DLAB off, THRE interrupt disabled, IRQ line low, not in
        loopback).  Every change of LCR, IER, MCR or the line calls this."""
        self._thr_polled(not (self.lcr & LCR_DLAB or self._irq_level or self.ier & IER_ETBEI
                              or self.mcr & MCR_LOOP))

    def _make_thr_op(self):
        """(THR accessor, count of bytes it sent, binder of the sink it writes to, setter of
        its polled flag (_repoll)).

        Polled output writes THR once per byte, and this host's Python pays 40-80 ns for each
        call and each attribute store, so the accessor appends the byte to a pykvmm Sink's
        buffer itself (Sink.raw_buffer) and keeps its count in a closure cell: one call per
        byte instead of three, and no attribute access (its state is in closure cells, which
        cost a third of an attribute load here).  Other sinks get their byte call as
        ``append`` and an empty buffer that never asks for a flush.  The THRE latch
        (``_thr_pending``) is not set on this path: while ETBEI is off nothing reads it, and
        enabling ETBEI sets it (_write_ier), which is what a write would have left."""
        write = self.write
        append: Callable[[int], object] = self._put
        buf: bytes | bytearray = b""
        flush: Callable[[], None] | None = None
        limit = 1
        sent = 0
        polled = True

        def thr(port: int, value: int) -> None:
            nonlocal sent
            if polled:
                append(value & 0xFF)
                sent += 1
                if len(buf) >= limit:
                    flush()  # type: ignore[misc]
            else:
                write(THR, value)

        def bind(append_: Callable[[int], object], buf_: bytes | bytearray,
                 flush_: Callable[[], None] | None, limit_: int) -> None:
            nonlocal append, buf, flush, limit
            append, buf, flush, limit = append_, buf_, flush_, limit_

        def set_polled(flag: bool) -> None:
            nonlocal polled
            polled = flag

        return thr, (lambda: sent), bind, set_polled

    def _lsr_op(self, port: int) -> int:
        if not self._lsr_errors:  # the polling path of read(LSR)
            return LSR_THRE | LSR_TEMT | LSR_DR if self._rx else LSR_THRE | LSR_TEMT
        return self.read(LSR)

    def read(self, offset: int) -> int:
        if offset == LSR and not self._lsr_errors:
            # The polling hot path: nothing to reset, so the IRQ line cannot change.
            return LSR_THRE | LSR_TEMT | LSR_DR if self._rx else LSR_THRE | LSR_TEMT
        dlab = self.lcr & LCR_DLAB
        if offset == RBR:
            if dlab:
                return self.divisor & 0xFF
            return self._read_rbr()
        if offset == IER:
            if dlab:
                return self.divisor >> 8
            return self.ier
        if offset == IIR:
            return self._read_iir()
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            value = self._lsr()
            # DS 8.3: OE, PE, FE and BI are reset whenever the CPU reads LSR.
            self._lsr_errors = 0
            self._update_irq()
            return value
        if offset == MSR:
            value = self._msr_deltas | self._msr_inputs
            # DS 8.8: the delta bits are reset whenever the CPU reads MSR.
            self._msr_deltas = 0
            self._update_irq()
            return value
        if offset == SCR:
            return self.scr
        raise ValueError(f"16550 register offset must be 0..7, not {offset:#x}")

    def write(self, offset: int, value: int) -> None:
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == THR:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif offset == IER:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self._write_ier(value)
        elif offset == FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self.lcr = value
            self._repoll()
        elif offset == MCR:
            self._write_mcr(value)
        elif offset in (LSR, MSR):
            pass  # DS: LSR and MSR are intended for read operations only.
        elif offset == SCR:
            self.scr = value
        else:
            raise ValueError(f"16550 register offset must be 0..7, not {offset:#x}")

    def state(self) -> dict[str, object]:
        return {
            "divisor": self.divisor, "ier": self.ier, "iir": self._iir_value(), "fcr": self.fcr,
            "lcr": self.lcr, "mcr": self.mcr, "lsr": self._lsr(),
            "msr": self._msr_deltas | self._msr_inputs, "scr": self.scr,
            "rx_fifo": bytes(self._rx), "irq_level": self._irq_level,
            "tx_count": self.tx_count, "rx_dropped": self.rx_dropped,
        }

    # --- internals -----------------------------------------------------------------------------
    def _fifo_mode(self) -> bool:
        return bool(self.fcr & FCR_FIFO_ENABLE)

    def _rx_capacity(self) -> int:
        return RX_FIFO_SIZE if self._fifo_mode() else RX_HOLDING_SIZE

    def _rx_trigger(self) -> int:
        if not self._fifo_mode():
            return 1
        return RX_TRIGGER_LEVELS[(self.fcr & FCR_TRIGGER_MASK) >> FCR_TRIGGER_SHIFT]

    def _receive_byte(self, byte: int) -> int:
        if len(self._rx) < self._rx_capacity():
            self._rx.append(byte)
            return 1
        self._lsr_errors |= LSR_OE
        self.rx_dropped += 1
        if not self._fifo_mode():
            # DS 8.3 (16450 mode): the next character is transferred into RBR before the previous
            # one was read, destroying the previous character.
            self._rx[-1] = byte
        # FIFO mode: the byte in the shift register is overwritten and never enters the FIFO.
        return 0

    def _read_rbr(self) -> int:
        if self._rx:
            self._last_rbr = self._rx.popleft()
            self._update_irq()
        # With nothing received, RBR still holds the last byte the receiver transferred.
        return self._last_rbr

    def _lsr(self) -> int:
        value = LSR_THRE | LSR_TEMT | self._lsr_errors
        if self._rx:
            value |= LSR_DR
        return value

    def _iir_value(self) -> int:
        fifo_bits = IIR_FIFO_ENABLED if self._fifo_mode() else 0
        return fifo_bits | self._pending_interrupt()

    def _pending_interrupt(self) -> int:
        """The highest-priority enabled interrupt source (DS table IV), or IIR_NO_INT."""
        if self.ier & IER_ELSI and self._lsr_errors & LSR_ERROR_BITS:
            return IIR_RLS
        if self.ier & IER_ERBFI and self._rx:
            if len(self._rx) >= self._rx_trigger():
                return IIR_RDA
            return IIR_CTI  # Below the trigger level only in FIFO mode; see the module notes.
        if self.ier & IER_ETBEI and self._thr_pending:
            return IIR_THRE
        if self.ier & IER_EDSSI and self._msr_deltas:
            return IIR_MSI
        return IIR_NO_INT

    def _read_iir(self) -> int:
        value = self._iir_value()
        if value & 0x0F == IIR_THRE:
            # DS table IV: the THRE interrupt is reset by reading IIR when it is the source.
            self._thr_pending = False
            self._update_irq()
        return value

    def _write_thr(self, value: int) -> None:
        if not self._irq_level and not self.ier & IER_ETBEI and not self.mcr & MCR_LOOP:
            # The polled-output hot path: with the THRE interrupt disabled and the line low,
            # neither edge below can happen, so only the byte moves.
            self._put(value)
            self._tx += 1
            self._thr_pending = True
            return
        # DS table IV: writing THR resets the THRE interrupt; the line drops here ...
        self._thr_pending = False
        self._update_irq()
        if self.mcr & MCR_LOOP:
            # DS 8.7: in loopback the transmitter shift register feeds the receiver directly.
            self._receive_byte(value)
        else:
            self._put(value)
        self._tx += 1
        # ... and rises again once the byte has left THR, which here is at once.
        self._thr_pending = True
        self._update_irq()

    def _write_ier(self, value: int) -> None:
        old = self.ier
        self.ier = value & IER_MASK
        self._repoll()
        if self.ier & IER_ETBEI and not old & IER_ETBEI:
            # Enabling ETBEI while THR is empty raises the THRE interrupt at once: the probe
            # SeaBIOS and Linux rely on (write 0x02 to IER, then IIR reads 0x02).  THR is
            # always empty here.
            self._thr_pending = True
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        was_enabled = self._fifo_mode()
        if not value & FCR_FIFO_ENABLE:
            # DS 8.4: resetting FCR0 clears all bytes in both FIFOs; other bits are not programmed.
            self.fcr = 0
            if was_enabled:
                self._rx.clear()
        else:
            # Bits 1 and 2 are self-clearing actions, not stored state.
            self.fcr = value & (FCR_FIFO_ENABLE | FCR_DMA_MODE | FCR_TRIGGER_MASK)
            if not was_enabled or value & FCR_RX_RESET:
                # DS 8.4: changing FCR0 clears the FIFOs; FCR1 clears the receiver FIFO.
                self._rx.clear()
            # FCR_TX_RESET: the transmitter FIFO is always empty here, nothing to clear.
        self._update_irq()

    def _write_mcr(self, value: int) -> None:
        self.mcr = value & MCR_MASK
        self._repoll()
        if self.mcr & MCR_LOOP:
            # DS 8.7: in loopback the modem inputs are the MCR outputs: DTR->DSR, RTS->CTS,
            # OUT1->RI, OUT2->DCD.
            inputs = ((MSR_DSR if self.mcr & MCR_DTR else 0) | (MSR_CTS if self.mcr & MCR_RTS else 0)
                      | (MSR_RI if self.mcr & MCR_OUT1 else 0) | (MSR_DCD if self.mcr & MCR_OUT2 else 0))
        else:
            inputs = self._external_inputs
        self._set_modem_inputs(inputs)
        self._update_irq()

    def _set_modem_inputs(self, inputs: int) -> None:
        changed = inputs ^ self._msr_inputs
        if changed & MSR_CTS:
            self._msr_deltas |= MSR_DCTS
        if changed & MSR_DSR:
            self._msr_deltas |= MSR_DDSR
        if changed & MSR_DCD:
            self._msr_deltas |= MSR_DDCD
        if self._msr_inputs & MSR_RI and not inputs & MSR_RI:
            # DS 8.8: TERI marks only the trailing edge (RI going from on to off).
            self._msr_deltas |= MSR_TERI
        self._msr_inputs = inputs

    def _update_irq(self) -> None:
        """Recompute the PC IRQ line after every access that can change it (kvmtool's rule)."""
        level = (self._pending_interrupt() != IIR_NO_INT
                 and self.mcr & (MCR_OUT2 | MCR_LOOP) == MCR_OUT2)
        if level != self._irq_level:
            self._irq_level = level
            self._repoll()
            if self._irq is not None:
                self._irq(level)
