import pytest

from pykvmm.machine.bus import BusError, MmioBus, PortBus


class Regs:
    """A byte device that records accesses and returns offset + 0x10 on reads."""

    def __init__(self):
        self.writes = []
        self.reads = []

    def read(self, offset):
        self.reads.append(offset)
        return offset + 0x10

    def write(self, offset, value):
        self.writes.append((offset, value))


def test_device_receives_offset_from_its_base():
    bus, dev = PortBus(), Regs()
    bus.register(0x3F8, 8, dev, "com1")
    bus.write(0x3FB, 1, 0x83)
    assert dev.writes == [(3, 0x83)]
    assert bus.read(0x3FD, 1) == 0x15
    assert dev.reads == [5]


@pytest.mark.parametrize("base,length", [(0x3F8, 8), (0x3F0, 9), (0x3FF, 1), (0x3F0, 0x20)])
def test_overlapping_range_is_refused(base, length):
    bus = PortBus()
    bus.register(0x3F8, 8, Regs(), "com1")
    with pytest.raises(BusError, match="overlaps"):
        bus.register(base, length, Regs(), "other")


def test_adjacent_ranges_are_accepted_and_routed_apart():
    bus, a, b = PortBus(), Regs(), Regs()
    bus.register(0x40, 4, a, "a")
    bus.register(0x44, 4, b, "b")
    bus.write(0x43, 1, 1)
    bus.write(0x44, 1, 2)
    assert a.writes == [(3, 1)] and b.writes == [(0, 2)]


def test_unclaimed_port_reads_all_ones_and_is_counted():
    bus = PortBus()
    assert bus.read(0x1234, 1) == 0xFF
    assert bus.read(0x1234, 2) == 0xFFFF
    assert bus.read(0x1234, 4) == 0xFFFFFFFF
    assert bus.unclaimed_reads[0x1234] == 3


def test_unclaimed_port_write_is_dropped_and_counted():
    bus = PortBus()
    bus.write(0xEE, 1, 5)
    bus.write(0xEE, 1, 6)
    assert bus.unclaimed_writes == {0xEE: 2}
    assert bus.io_ops == {0xEE: 2}


def test_word_access_to_byte_devices_splits_into_consecutive_bytes():
    bus, dev = PortBus(), Regs()
    bus.register(0x70, 2, dev, "cmos")
    bus.write(0x70, 2, 0xBBAA)
    assert dev.writes == [(0, 0xAA), (1, 0xBB)]
    assert bus.read(0x70, 2) == (0x11 << 8) | 0x10


def test_word_access_straddling_a_device_and_nothing():
    bus, dev = PortBus(), Regs()
    bus.register(0x71, 1, dev, "d")
    assert bus.read(0x71, 2) == 0xFF10  # high byte from the unclaimed port 0x72


def test_io_ops_count_operations_not_bytes():
    bus = PortBus()
    bus.write(0x80, 4, 0)
    bus.read(0x80, 2)
    assert bus.io_ops == {0x80: 2}
    assert bus.total_ops() == 2


def test_io_log_sees_every_operation_in_order():
    bus, log = PortBus(), []
    bus.log = lambda *a: log.append(a)
    bus.write(0x80, 1, 0x12)
    bus.read(0x81, 1)
    assert log == [("pio", 0x80, True, 1, 0x12), ("pio", 0x81, False, 1, 0xFF)]


def test_mmio_bus_routes_by_address_and_claims():
    bus, dev = MmioBus(), Regs()
    bus.register(0xB0000, 8, dev, "uart2")
    assert bus.claims(0xB0000, 8) and not bus.claims(0xB0007, 2) and not bus.claims(0xAFFFF)
    bus.write(0xB0003, 1, 0x80)
    assert dev.writes == [(3, 0x80)]
    assert bus.read(0xC0000, 4) == 0xFFFFFFFF
    assert bus.io_ops == {0xB0003: 1, 0xC0000: 1}


def test_range_outside_the_space_is_refused():
    with pytest.raises(BusError):
        PortBus().register(0xFFFF, 2, Regs(), "wraps")
    with pytest.raises(BusError):
        PortBus().register(0x10, 0, Regs(), "empty")


class _Regs:
    def __init__(self) -> None:
        self.regs = [0] * 4

    def read(self, off: int) -> int:
        return self.regs[off]

    def write(self, off: int, value: int) -> None:
        self.regs[off] = value


def test_route_sends_one_port_elsewhere_for_byte_and_wide_accesses():
    bus = PortBus()
    dev = _Regs()
    bus.register(0x100, 4, dev, "regs")
    seen = []
    bus.route(0x101, read=lambda off: seen.append(("r", off)) or 0xAB,
              write=lambda off, v: seen.append(("w", off, v)))
    bus.write(0x100, 2, 0x3412)          # a word: byte 0 to the device, byte 1 to the route
    assert dev.regs[:2] == [0x12, 0] and seen == [("w", 1, 0x34)]
    assert bus.read(0x100, 2) == 0xAB12  # the same split on reads
    assert bus.read(0x101, 1) == 0xAB and seen[-1] == ("r", 1)
    bus.write(0x102, 1, 7)               # other ports are untouched
    assert dev.regs[2] == 7
    assert bus.io_ops == {0x100: 2, 0x101: 1, 0x102: 1}  # counted by the bus as before


def test_route_of_an_unregistered_port_is_refused():
    with pytest.raises(BusError, match="not registered"):
        PortBus().route(0x200, read=lambda off: 0)


def test_byte_accessors_do_what_read_and_write_do_with_and_without_a_log():
    """PortBus.byte_readers/byte_writers (the emulator's IN/OUT of one byte), with the caller
    counting in op_counts as compiled code does, must log, route and treat unclaimed ports
    exactly like read(port, 1) and write(port, 1, v)."""
    results = []
    for accessors in (False, True):
        for logged in (False, True):
            bus = PortBus()
            dev = _Regs()
            bus.register(0x100, 4, dev, "regs")
            bus.route(0x103, read=lambda off: 0x5A)
            log = []
            if logged:
                bus.log = lambda *a: log.append(a)
            trail = []
            for port, value in ((0x100, 0x11), (0x101, 0x122), (0x103, 3), (0x200, 9)):
                if accessors:
                    bus.op_counts[port] += 1
                    bus.byte_writers[port](port, value)
                    bus.op_counts[port] += 1
                    trail.append(bus.byte_readers[port](port))
                else:
                    bus.write(port, 1, value)
                    trail.append(bus.read(port, 1))
            results.append((trail, dev.regs, bus.io_ops, bus.unclaimed_reads, bus.unclaimed_writes, log))
    assert results[0] == results[2] and results[1] == results[3]
    trail, regs, ops, ur, uw, log = results[3]
    assert trail == [0x11, 0x22, 0x5A, 0xFF] and regs == [0x11, 0x22, 0, 3]
    assert ops == {0x100: 2, 0x101: 2, 0x103: 2, 0x200: 2} and ur == uw == {0x200: 1}
    assert log[:2] == [("pio", 0x100, True, 1, 0x11), ("pio", 0x100, False, 1, 0x11)]
