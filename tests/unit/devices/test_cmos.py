"""MC146818 RTC/CMOS behaviour against the Motorola datasheet and the PC/AT CMOS map."""

import calendar

import pytest

from pykvmm.devices.cmos import Cmos

# Wednesday 2026-11-25 21:02:03 UTC
T0 = calendar.timegm((2026, 11, 25, 21, 2, 3, 0, 0, 0))
MIB = 1024 * 1024


class Clocks:
    def __init__(self):
        self.wall = T0 + 0.5
        self.mono = 10_000_000_000

    def advance(self, seconds):
        self.wall += seconds
        self.mono += int(seconds * 1e9)


def make(mem_size=16 * MIB, irq=None):
    clocks = Clocks()
    cmos = Cmos(mem_size, clock=lambda: clocks.mono, wallclock=lambda: clocks.wall, irq=irq)
    return cmos, clocks


def rd(cmos, index):
    cmos.write(0, index)
    return cmos.read(1)


def wr(cmos, index, value):
    cmos.write(0, index)
    cmos.write(1, value)


# --- index register ---------------------------------------------------------------------------

def test_index_bit7_masks_nmi_and_does_not_select():
    cmos, _ = make()
    wr(cmos, 0x40, 0x5A)
    cmos.write(0, 0x80 | 0x40)
    assert cmos.nmi_masked
    assert cmos.read(1) == 0x5A
    cmos.write(0, 0x40)
    assert not cmos.nmi_masked


def test_all_128_bytes_of_ram_store_values():
    cmos, _ = make()
    for index in list(range(0x0E, 0x32)) + list(range(0x33, 0x80)):
        wr(cmos, index, index ^ 0xA5)
    assert all(rd(cmos, i) == i ^ 0xA5 for i in list(range(0x0E, 0x32)) + list(range(0x33, 0x80)))


# --- time and date ----------------------------------------------------------------------------

def test_time_and_date_read_in_bcd_24h_by_default():
    cmos, _ = make()
    assert [rd(cmos, i) for i in (0, 2, 4, 7, 8, 9, 0x32)] == \
        [0x03, 0x02, 0x21, 0x25, 0x11, 0x26, 0x20]


def test_day_of_week_one_is_sunday():
    cmos, _ = make()
    assert rd(cmos, 6) == 4  # Wednesday


def test_binary_mode_when_register_b_dm_set():
    cmos, _ = make()
    wr(cmos, 0x0B, 0x06)
    assert [rd(cmos, i) for i in (0, 4, 7, 9)] == [3, 21, 25, 26]


def test_12_hour_mode_sets_pm_bit_7():
    cmos, _ = make()
    wr(cmos, 0x0B, 0x00)  # BCD, 12 hour
    assert rd(cmos, 4) == 0x80 | 0x09


def test_12_hour_mode_reports_midnight_as_12_am():
    cmos, clocks = make()
    clocks.wall = calendar.timegm((2026, 11, 25, 0, 30, 0, 0, 0, 0))
    wr(cmos, 0x0B, 0x00)
    assert rd(cmos, 4) == 0x12


def test_time_advances_with_wall_clock():
    cmos, clocks = make()
    clocks.advance(60)
    assert rd(cmos, 2) == 0x03


def test_guest_set_time_with_set_bit_runs_from_written_value():
    cmos, clocks = make()
    wr(cmos, 0x0B, 0x82)  # SET, 24h, BCD
    for index, value in ((0, 0x00), (2, 0x00), (4, 0x08), (7, 0x01), (8, 0x01), (9, 0x99),
                         (0x32, 0x19)):
        wr(cmos, index, value)
    clocks.advance(10)
    assert rd(cmos, 0) == 0x00  # frozen while SET
    wr(cmos, 0x0B, 0x02)
    clocks.advance(5)
    assert [rd(cmos, i) for i in (0, 4, 9, 0x32)] == [0x05, 0x08, 0x99, 0x19]


def test_setting_set_bit_clears_uie():
    cmos, _ = make()
    wr(cmos, 0x0B, 0x92)
    assert rd(cmos, 0x0B) == 0x82


# --- status registers -------------------------------------------------------------------------

def test_register_a_uip_set_244us_before_second_boundary():
    cmos, clocks = make()
    clocks.wall = T0 + 0.9999
    assert rd(cmos, 0x0A) & 0x80
    clocks.wall = T0 + 0.9997
    assert not rd(cmos, 0x0A) & 0x80


def test_register_a_uip_stays_set_through_1984us_update_cycle():
    cmos, clocks = make()
    clocks.wall = T0 + 0.0019
    assert rd(cmos, 0x0A) & 0x80
    clocks.wall = T0 + 0.0021
    assert not rd(cmos, 0x0A) & 0x80


def test_register_a_uip_is_read_only():
    cmos, _ = make()
    wr(cmos, 0x0A, 0xA6)
    assert rd(cmos, 0x0A) & 0x7F == 0x26
    assert not rd(cmos, 0x0A) & 0x80


def test_register_a_defaults_to_32khz_1024hz():
    cmos, _ = make()
    assert rd(cmos, 0x0A) == 0x26


def test_register_d_reads_vrt_and_is_read_only():
    cmos, _ = make()
    wr(cmos, 0x0D, 0x00)
    assert rd(cmos, 0x0D) == 0x80


def test_register_c_is_read_only_and_cleared_by_read():
    cmos, clocks = make()
    wr(cmos, 0x0C, 0xFF)
    clocks.advance(1)
    assert rd(cmos, 0x0C) & 0x10  # UF after an update
    assert rd(cmos, 0x0C) == 0x00


def test_update_interrupt_raises_irq_and_irqf():
    seen = []
    cmos, clocks = make(irq=seen.append)
    wr(cmos, 0x0B, 0x12)  # UIE
    assert cmos.deadline() == clocks.mono + 500_000_000 + 1
    clocks.advance(0.6)
    cmos.poll()
    assert seen == [True]
    assert rd(cmos, 0x0C) == 0x80 | 0x40 | 0x10  # IRQF, UF; PF too (DS: set whatever PIE says)
    assert seen == [True, False]


def test_periodic_flag_at_rate_select_rate():
    cmos, clocks = make()
    wr(cmos, 0x0B, 0x42)  # PIE
    assert cmos.deadline() - clocks.mono <= 976_562
    clocks.advance(0.001)
    assert rd(cmos, 0x0C) & 0xC0 == 0xC0


def test_alarm_flag_when_time_matches_alarm():
    cmos, clocks = make()
    wr(cmos, 0x01, 0x05)
    wr(cmos, 0x03, 0xC0)  # don't care
    wr(cmos, 0x05, 0xFF)  # don't care
    clocks.advance(1)  # :04
    assert not rd(cmos, 0x0C) & 0x20
    clocks.advance(1)  # :05
    assert rd(cmos, 0x0C) & 0x20


def test_no_deadline_without_enabled_interrupts():
    cmos, _ = make()
    assert cmos.deadline() is None


# --- PC memory-size bytes ---------------------------------------------------------------------

def test_base_memory_640k_in_0x15_0x16():
    cmos, _ = make()
    assert (rd(cmos, 0x15), rd(cmos, 0x16)) == (0x80, 0x02)


def test_extended_memory_kib_in_0x17_and_0x30():
    cmos, _ = make(mem_size=16 * MIB)
    ext = 15 * 1024
    assert rd(cmos, 0x17) | rd(cmos, 0x18) << 8 == ext
    assert rd(cmos, 0x30) | rd(cmos, 0x31) << 8 == ext
    assert rd(cmos, 0x34) | rd(cmos, 0x35) << 8 == 0


def test_extended_memory_capped_at_ffff_kib():
    cmos, _ = make(mem_size=256 * MIB)
    assert rd(cmos, 0x17) | rd(cmos, 0x18) << 8 == 0xFFFF


def test_memory_above_16m_in_64k_units_in_0x34():
    cmos, _ = make(mem_size=256 * MIB)
    assert rd(cmos, 0x34) | rd(cmos, 0x35) << 8 == (240 * MIB) // (64 * 1024)


def test_at_checksum_covers_0x10_to_0x2d():
    cmos, _ = make(mem_size=32 * MIB)
    total = sum(rd(cmos, i) for i in range(0x10, 0x2E))
    assert rd(cmos, 0x2E) << 8 | rd(cmos, 0x2F) == total


def test_bad_mem_size_refused():
    with pytest.raises(ValueError, match="-1"):
        Cmos(-1)


def test_index_port_reads_float():
    cmos, _ = make()
    assert cmos.read(0) == 0xFF


def test_writing_one_time_register_while_running_moves_the_clock():
    cmos, clocks = make()
    wr(cmos, 2, 0x30)  # minutes
    assert (rd(cmos, 4), rd(cmos, 2), rd(cmos, 0)) == (0x21, 0x30, 0x03)
    clocks.advance(2)
    assert rd(cmos, 0) == 0x05
