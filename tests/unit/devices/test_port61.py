"""Port 0x61 against the PC/AT Technical Reference bit layout."""

import pytest

from pykvmm.devices.pit8254 import Pit8254
from pykvmm.devices.port61 import Port61

HZ = 1_193_182


class FakeClock:
    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


def make():
    clock = FakeClock()
    pit = Pit8254(clock=clock)
    return Port61(pit, clock=clock), pit, clock


def test_bit0_drives_pit_counter2_gate():
    port, pit, _ = make()
    port.write(0, 0x01)
    assert pit.gate(2)
    port.write(0, 0x00)
    assert not pit.gate(2)


def test_low_four_bits_read_back_as_written():
    port, _, _ = make()
    port.write(0, 0xFF)
    assert port.read(0) & 0x0F == 0x0F
    assert port.read(0) & 0xC0 == 0  # no check errors ever


def test_bit5_reads_counter2_output():
    port, pit, clock = make()
    pit.write(3, 0xB0)  # counter 2, lo/hi, mode 0
    pit.write(2, 10)
    pit.write(2, 0)
    port.write(0, 0x01)  # gate on: count
    assert not port.read(0) & 0x20
    clock.ns = 20 * 1_000_000_000 // HZ
    assert port.read(0) & 0x20


def test_bit4_refresh_toggles_every_15_085_us():
    port, _, clock = make()
    first = port.read(0) & 0x10
    clock.ns = 15_085
    assert port.read(0) & 0x10 != first
    clock.ns = 2 * 15_085
    assert port.read(0) & 0x10 == first


def test_gate_delay_loop_sees_out2_after_count_expires():
    """The firmware calibration idiom: gate off, mode 0 count, gate on, spin on bit 5."""
    port, pit, clock = make()
    port.write(0, 0x00)
    pit.write(3, 0xB0)
    pit.write(2, 0x9B)
    pit.write(2, 0x2E)  # 0x2E9B = 11931 pulses, 10 ms
    port.write(0, 0x01)
    clock.ns = 9_999_000
    assert not port.read(0) & 0x20
    clock.ns = 10_002_000
    assert port.read(0) & 0x20


def test_bad_offset_refused():
    port, _, _ = make()
    with pytest.raises(ValueError, match="0x1"):
        port.read(1)
