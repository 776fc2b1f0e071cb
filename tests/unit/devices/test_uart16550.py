"""16550 behaviour, checked against the PC16550D datasheet's register rules.

Offsets and values are written as numbers on purpose: the expected values come from the
datasheet tables, not from the module's constants.
"""

import pytest

from pykvmm.devices.uart16550 import Uart16550


class Line:
    """A recording IRQ line."""

    def __init__(self):
        self.level = False
        self.edges = 0
        self.calls = []

    def __call__(self, level):
        self.calls.append(level)
        if level and not self.level:
            self.edges += 1
        self.level = level


def make(**kw):
    out = bytearray()
    line = Line()
    uart = Uart16550(sink=out.extend, irq=line, **kw)
    return uart, out, line


def enable_irq_out2(uart):
    uart.write(4, 0x08)  # MCR OUT2


# --- polled output ----------------------------------------------------------------------------

def test_thr_write_sends_byte_to_sink():
    uart, out, _ = make()
    for b in b"hi\n":
        uart.write(0, b)
    assert bytes(out) == b"hi\n"


def test_lsr_thre_and_temt_set_after_reset():
    uart, _, _ = make()
    assert uart.read(5) == 0x60


def test_lsr_thre_set_after_thr_write():
    uart, _, _ = make()
    uart.write(0, ord("x"))
    assert uart.read(5) & 0x60 == 0x60


def test_scr_stores_any_byte():
    uart, _, _ = make()
    uart.write(7, 0xA5)
    assert uart.read(7) == 0xA5


def test_dlab_redirects_offsets_0_and_1_to_divisor_latch():
    uart, out, _ = make()
    uart.write(3, 0x83)  # DLAB=1, 8N1
    uart.write(0, 0x01)  # DLL: 115200 baud
    uart.write(1, 0x00)  # DLM
    assert (uart.read(0), uart.read(1)) == (0x01, 0x00)
    assert out == b""  # the divisor write did not transmit
    uart.write(3, 0x03)
    assert uart.state()["divisor"] == 1
    assert uart.read(1) == 0  # IER untouched by the DLM write
    assert uart.read(3) == 0x03


def test_ier_upper_four_bits_read_zero():
    uart, _, _ = make()
    uart.write(1, 0xFF)
    assert uart.read(1) == 0x0F


def test_mcr_upper_three_bits_read_zero():
    uart, _, _ = make()
    uart.write(4, 0xFF & ~0x10)
    assert uart.read(4) == 0x0F


def test_lsr_and_msr_writes_are_ignored():
    uart, _, _ = make()
    msr = uart.read(6)
    uart.write(5, 0x00)
    uart.write(6, 0x00)
    assert uart.read(5) == 0x60
    assert uart.read(6) == msr


def test_offset_out_of_range_is_refused():
    uart, _, _ = make()
    with pytest.raises(ValueError, match="0x8"):
        uart.read(8)
    with pytest.raises(ValueError, match="0x8"):
        uart.write(8, 0)


def test_non_callable_sink_is_refused():
    with pytest.raises(TypeError, match="sink"):
        Uart16550(sink=None)


# --- IIR and interrupts -----------------------------------------------------------------------

def test_iir_reads_01_with_no_interrupt_pending():
    uart, _, _ = make()
    assert uart.read(2) == 0x01


def test_seabios_probe_ier_readback_and_iir_thre():
    uart, _, _ = make()
    uart.write(1, 0x02)
    assert uart.read(1) == 0x02
    assert uart.read(2) & 0x3F == 0x02


def test_iir_read_clears_thre_interrupt():
    uart, _, _ = make()
    uart.write(1, 0x02)
    assert uart.read(2) == 0x02
    assert uart.read(2) == 0x01


def test_thr_write_rearms_thre_interrupt():
    uart, _, _ = make()
    uart.write(1, 0x02)
    uart.read(2)
    uart.write(0, ord("a"))
    assert uart.read(2) == 0x02


def test_thre_interrupt_gives_one_irq_edge_per_thr_write():
    uart, _, line = make()
    enable_irq_out2(uart)
    uart.write(1, 0x02)
    assert line.level and line.edges == 1
    for b in b"abc":
        uart.write(0, b)
    assert line.edges == 4
    assert line.level


def test_rx_data_interrupt_iir_04():
    uart, _, _ = make()
    uart.write(1, 0x01)
    uart.receive(b"k")
    assert uart.read(2) == 0x04
    assert uart.read(0) == ord("k")
    assert uart.read(2) == 0x01


def test_line_status_interrupt_has_priority_over_rx_data():
    uart, _, _ = make()
    uart.write(1, 0x0F)
    uart.receive(b"ab")  # 16450 mode holds one byte: "b" overruns
    assert uart.read(2) == 0x06
    assert uart.read(5) & 0x02  # OE, cleared by this read
    assert uart.read(2) == 0x04


def test_rx_data_interrupt_has_priority_over_thre():
    uart, _, _ = make()
    uart.write(1, 0x03)
    uart.receive(b"x")
    assert uart.read(2) == 0x04
    uart.read(0)
    assert uart.read(2) == 0x02


def test_thre_interrupt_has_priority_over_modem_status():
    uart, _, _ = make()
    uart.write(1, 0x0A)
    uart.write(4, 0x10)  # loopback: DSR/CTS/DCD drop, setting deltas
    assert uart.read(2) == 0x02
    assert uart.read(2) == 0x00
    uart.read(6)
    assert uart.read(2) == 0x01


def test_disabled_interrupt_sources_are_not_reported():
    uart, _, _ = make()
    uart.receive(b"x")
    uart.write(4, 0x10)
    assert uart.read(2) == 0x01


def test_irq_reaches_pic_only_while_mcr_out2_set():
    uart, _, line = make()
    uart.write(1, 0x01)
    uart.receive(b"x")
    assert not line.level and uart.read(2) == 0x04
    uart.write(4, 0x08)
    assert line.level
    uart.write(4, 0x00)
    assert not line.level


def test_irq_line_is_low_in_loopback_even_with_out2():
    uart, _, line = make()
    uart.write(1, 0x02)
    uart.write(4, 0x18)  # OUT2 + LOOP
    assert uart.read(2) == 0x02  # the chip still reports it
    assert not line.level


def test_irq_line_drops_when_source_cleared():
    uart, _, line = make()
    enable_irq_out2(uart)
    uart.write(1, 0x01)
    uart.receive(b"x")
    assert line.level
    uart.read(0)
    assert not line.level


def test_irq_callback_only_called_on_level_change():
    uart, _, line = make()
    enable_irq_out2(uart)
    uart.write(1, 0x01)
    uart.receive(b"x")
    uart.read(5)
    uart.read(7)
    assert line.calls == [True]


# --- receive side and FIFOs -------------------------------------------------------------------

def test_lsr_dr_set_while_data_waits():
    uart, _, _ = make()
    uart.receive(b"z")
    assert uart.read(5) & 0x01
    assert uart.read(0) == ord("z")
    assert not uart.read(5) & 0x01


def test_non_fifo_mode_overrun_keeps_newest_byte():
    uart, _, _ = make()
    assert uart.receive(b"ab") == 1
    assert uart.read(5) & 0x02
    assert uart.read(0) == ord("b")
    assert uart.state()["rx_dropped"] == 1


def test_lsr_read_clears_overrun():
    uart, _, _ = make()
    uart.receive(b"ab")
    assert uart.read(5) & 0x02
    assert not uart.read(5) & 0x02


def test_fcr_enable_sets_iir_bits_6_and_7():
    uart, _, _ = make()
    uart.write(2, 0x01)
    assert uart.read(2) == 0xC1
    uart.write(2, 0x00)
    assert uart.read(2) == 0x01


def test_fifo_holds_16_bytes_and_drops_the_rest():
    uart, _, _ = make()
    uart.write(2, 0x07)
    data = bytes(range(20))
    assert uart.receive(data) == 16
    assert uart.read(5) & 0x03 == 0x03
    assert bytes(uart.read(0) for _ in range(16)) == data[:16]
    assert not uart.read(5) & 0x01
    assert uart.state()["rx_dropped"] == 4


def test_rx_room_reports_free_fifo_space():
    uart, _, _ = make()
    assert uart.rx_room() == 1
    uart.write(2, 0x01)
    uart.receive(b"abc")
    assert uart.rx_room() == 13


def test_fifo_rx_reset_clears_received_bytes():
    uart, _, _ = make()
    uart.write(2, 0x01)
    uart.receive(b"abc")
    uart.write(2, 0x03)
    assert not uart.read(5) & 0x01


def test_fcr_other_bits_ignored_unless_bit0_written():
    uart, _, _ = make()
    uart.write(2, 0xC0)
    assert uart.read(2) == 0x01
    assert uart.state()["fcr"] == 0


def test_clearing_fifo_enable_empties_fifo():
    uart, _, _ = make()
    uart.write(2, 0x01)
    uart.receive(b"abc")
    uart.write(2, 0x00)
    assert not uart.read(5) & 0x01


def test_rx_below_trigger_level_reports_character_timeout():
    uart, _, _ = make()
    uart.write(2, 0x81)  # FIFO, trigger level 8
    uart.write(1, 0x01)
    uart.receive(b"abc")
    assert uart.read(2) == 0xCC


def test_rx_at_trigger_level_reports_data_available():
    uart, _, _ = make()
    uart.write(2, 0x41)  # FIFO, trigger level 4
    uart.write(1, 0x01)
    uart.receive(b"abcd")
    assert uart.read(2) == 0xC4
    uart.read(0)
    assert uart.read(2) == 0xCC  # below trigger again: timeout
    for _ in range(3):
        uart.read(0)
    assert uart.read(2) == 0xC1


def test_host_memory_bounded_under_flood():
    uart, _, _ = make()
    uart.write(2, 0x01)
    for _ in range(1000):
        uart.receive(bytes(64))
    assert len(uart.state()["rx_fifo"]) == 16
    assert uart.state()["rx_dropped"] == 64000 - 16


# --- loopback and modem status ----------------------------------------------------------------

def test_loopback_routes_thr_to_receiver_not_sink():
    uart, out, _ = make()
    uart.write(4, 0x10)
    uart.write(0, ord("Q"))
    assert out == b""
    assert uart.read(5) & 0x01
    assert uart.read(0) == ord("Q")


def test_loopback_disconnects_host_input():
    uart, _, _ = make()
    uart.write(4, 0x10)
    assert uart.rx_room() == 0
    assert uart.receive(b"x") == 0
    assert not uart.read(5) & 0x01


def test_loopback_maps_mcr_outputs_to_msr_inputs():
    uart, _, _ = make()
    uart.write(4, 0x10 | 0x01)  # DTR -> DSR
    assert uart.read(6) & 0xF0 == 0x20
    uart.write(4, 0x10 | 0x02)  # RTS -> CTS
    assert uart.read(6) & 0xF0 == 0x10
    uart.write(4, 0x10 | 0x04)  # OUT1 -> RI
    assert uart.read(6) & 0xF0 == 0x40
    uart.write(4, 0x10 | 0x08)  # OUT2 -> DCD
    assert uart.read(6) & 0xF0 == 0x80


def test_msr_reports_connected_terminal_outside_loopback():
    uart, _, _ = make()
    assert uart.read(6) == 0xB0  # CTS, DSR, DCD; no deltas


def test_msr_delta_bits_set_on_change_and_cleared_by_read():
    uart, _, _ = make()
    uart.write(4, 0x10 | 0x03)  # loop, DTR, RTS: CTS and DSR stay, DCD drops
    assert uart.read(6) == 0x08 | 0x30
    assert uart.read(6) == 0x30


def test_msr_teri_set_only_on_ri_trailing_edge():
    uart, _, _ = make(modem_inputs=0)
    uart.write(4, 0x10 | 0x04)  # RI rises
    assert uart.read(6) & 0x04 == 0
    uart.write(4, 0x10)  # RI falls
    assert uart.read(6) & 0x04 == 0x04


def test_modem_status_interrupt_iir_00_cleared_by_msr_read():
    uart, _, _ = make()
    uart.write(1, 0x08)
    uart.write(4, 0x10)
    assert uart.read(2) == 0x00
    uart.read(6)
    assert uart.read(2) == 0x01


# -- byte_ops: the port bus's per-register accessors -------------------------------------------

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _driven(ops, use_byte_ops: bool):
    out, irqs = [], []
    u = Uart16550(out.append, irq=irqs.append)
    fast = [u.byte_ops(off) for off in range(8)]
    reads = []
    for write, off, value in ops:
        reader, writer = fast[off] if use_byte_ops else (None, None)
        if write:
            writer(0x3F8 + off, value) if writer else u.write(off, value)
        else:
            reads.append(reader(0x3F8 + off) if reader else u.read(off))
        if off == 7 and write:  # a host byte arrives now and then (sets DR, may raise the line)
            u.receive(bytes([value]))
    return reads, b"".join(out), irqs, u.tx_count, u.lcr, u.ier, u.mcr, u.divisor


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.integers(0, 255)), max_size=60))
# OUT2 on (the PC's gate of the IRQ line), THRE interrupt enabled, then acknowledged by
# reading IIR: the line is low, and a THR write must raise it again once the byte has left
# (DS table IV)
@example([(True, 4, 0x08), (True, 1, 0x02), (False, 2, 0), (True, 0, 0x41)])
def test_byte_ops_do_what_read_and_write_do(ops):
    """THR and LSR have their own accessors for polled output; any register history (DLAB,
    THRE interrupt enabled, loopback, line errors, received bytes) must give the same reads,
    output, interrupt edges and registers as read() and write()."""
    assert _driven(ops, True) == _driven(ops, False)


def _driven_into_sink(ops, use_byte_ops: bool, path):
    """_driven with a pykvmm Sink writing to a file (the THR accessor appends to its buffer
    itself) and a small buffer limit, so flushes happen inside the history; the sink is
    swapped for another halfway."""
    from pykvmm.machine import sinks
    first = sinks.open_sink(f"file:{path}.a")
    second = sinks.open_sink(f"file:{path}.b")
    irqs = []
    u = Uart16550(first, irq=irqs.append)
    fast = [u.byte_ops(off) for off in range(8)]
    reads = []
    peak = [0]
    for i, (write, off, value) in enumerate(ops):
        if i == len(ops) // 2:
            u.set_sink(second)
        reader, writer = fast[off] if use_byte_ops else (None, None)
        if write:
            writer(0x3F8 + off, value) if writer else u.write(off, value)
        else:
            reads.append(reader(0x3F8 + off) if reader else u.read(off))
        if off == 7 and write:
            u.receive(bytes([value]))
        peak[0] = max(peak[0], len(first.buf), len(second.buf))
    counts = (first.count, second.count)
    first.close()
    second.close()
    return (reads, (path.parent / f"{path.name}.a").read_bytes(),
            (path.parent / f"{path.name}.b").read_bytes(), counts, irqs, u.tx_count, peak[0])


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.integers(0, 255)), max_size=80))
@example(ops=[(True, 0, 0x41)] * 40 + [(True, 4, 0x08), (True, 1, 0x02), (False, 2, 0),
              (True, 0, 0x42), (True, 4, 0x10), (True, 0, 0x43)])
def test_thr_accessor_into_a_sink_buffer_does_what_write_does(ops, tmp_path_factory):
    """The THR accessor appends to a pykvmm Sink's buffer itself (Sink.raw_buffer): the same
    files, counts, interrupt edges and tx_count as write(), through flushes and a change of
    sink."""
    from unittest import mock

    from pykvmm.machine import sinks
    base = tmp_path_factory.mktemp("thr")
    with mock.patch.object(sinks, "_BUFFER_LIMIT", 7):
        fast = _driven_into_sink(ops, True, base / "fast")
        slow = _driven_into_sink(ops, False, base / "slow")
    assert fast[:-1] == slow[:-1]
    assert fast[-1] <= 7  # the buffer never held more than its limit


def test_thr_accessor_respects_the_line_buffered_terminal_rule(tmp_path):
    """A line-buffered sink (a terminal) flushes at each newline; the THR accessor goes
    through the sink's own byte call for it."""
    from pykvmm.machine.sinks import Sink
    import os
    path = tmp_path / "tty"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    sink = Sink(fd, owns=True, line_buffered=True)
    u = Uart16550(sink)
    _, thr = u.byte_ops(0)  # THR
    for b in b"ab\ncd":
        thr(0x3F8, b)
    assert path.read_bytes() == b"ab\n" and sink.count == 5 and u.tx_count == 5
    sink.close()
    assert path.read_bytes() == b"ab\ncd"


def test_byte_ops_cover_thr_and_lsr_only():
    u = Uart16550(lambda b: None)
    assert [tuple(x is not None for x in u.byte_ops(off)) for off in range(8)] == [
        (False, True), (False, False), (False, False), (False, False), (False, False),
        (True, False), (False, False), (False, False)]
