"""8254 behaviour against the Intel 8254 datasheet, on a fake clock counted in CLK pulses."""

import pytest

from pykvmm.devices.pit8254 import Pit8254

HZ = 1_193_182
EPOCH = 5_000_000_000


class FakeClock:
    def __init__(self):
        self.ns = EPOCH

    def __call__(self):
        return self.ns

    def pulse(self, p):
        """Move to just after CLK pulse p."""
        self.ns = EPOCH + -(-p * 1_000_000_000 // HZ)


class Line:
    def __init__(self):
        self.level = False
        self.rises = 0

    def __call__(self, level):
        if level and not self.level:
            self.rises += 1
        self.level = level


def make():
    clock = FakeClock()
    line = Line()
    return Pit8254(irq0=line, clock=clock), clock, line


def program(pit, counter, mode, count, rw=3, bcd=False):
    pit.write(3, (counter << 6) | (rw << 4) | (mode << 1) | int(bcd))
    if rw in (1, 3):
        pit.write(counter, count & 0xFF)
    if rw in (2, 3):
        pit.write(counter, count >> 8)


def read16(pit, counter):
    return pit.read(counter) | (pit.read(counter) << 8)


def latch(pit, counter):
    pit.write(3, counter << 6)
    return read16(pit, counter)


# --- mode 0 -----------------------------------------------------------------------------------

def test_mode0_out_low_after_control_word():
    pit, _, _ = make()
    pit.write(3, 0x30)
    assert not pit.output(0)


def test_mode0_out_goes_high_n_plus_1_pulses_after_count_written():
    pit, clock, line = make()
    program(pit, 0, 0, 100)
    clock.pulse(100)
    pit.poll()
    assert not line.level
    clock.pulse(101)
    pit.poll()
    assert line.level and line.rises == 1


def test_mode0_counter_decrements_once_per_pulse_after_load():
    pit, clock, _ = make()
    program(pit, 0, 0, 100)
    clock.pulse(1)
    assert latch(pit, 0) == 100
    clock.pulse(31)
    assert latch(pit, 0) == 70


def test_mode0_counter_wraps_after_terminal_count():
    pit, clock, _ = make()
    program(pit, 0, 0, 5)
    clock.pulse(8)
    assert latch(pit, 0) == 0xFFFE


def test_mode0_new_count_restarts_and_sets_out_low():
    pit, clock, _ = make()
    program(pit, 0, 0, 5)
    clock.pulse(10)
    assert pit.output(0)
    pit.write(0, 50)
    pit.write(0, 0)
    assert not pit.output(0)
    clock.pulse(10 + 51)
    assert pit.output(0)


def test_mode0_first_byte_of_two_stops_counting_and_sets_out_low():
    pit, clock, _ = make()
    program(pit, 0, 0, 5)
    clock.pulse(10)
    pit.write(0, 0x20)
    assert not pit.output(0)
    clock.pulse(1000)
    assert not pit.output(0)


def test_mode0_gate_low_suspends_counting():
    pit, clock, _ = make()
    pit.set_gate(2, True)
    program(pit, 2, 0, 100)
    clock.pulse(11)
    pit.set_gate(2, False)
    assert latch(pit, 2) == 90
    clock.pulse(500)
    assert latch(pit, 2) == 90
    pit.set_gate(2, True)
    clock.pulse(590)
    assert latch(pit, 2) == 0
    clock.pulse(591)
    assert pit.output(2)


# --- mode 2 -----------------------------------------------------------------------------------

def test_mode2_out_low_for_one_pulse_each_period():
    pit, clock, _ = make()
    program(pit, 0, 2, 10)
    seen = []
    for p in range(0, 23):
        clock.pulse(p)
        seen.append(pit.output(0))
    lows = [p for p, out in enumerate(seen) if not out]
    assert lows == [10, 20]


def test_mode2_counter_reloads_after_reaching_one():
    pit, clock, _ = make()
    program(pit, 0, 2, 10)
    clock.pulse(10)
    assert latch(pit, 0) == 1
    clock.pulse(11)
    assert latch(pit, 0) == 10


def test_mode2_new_count_takes_effect_at_end_of_period():
    pit, clock, _ = make()
    program(pit, 0, 2, 10)
    clock.pulse(4)
    pit.write(0, 4)
    pit.write(0, 0)
    clock.pulse(10)
    assert not pit.output(0)  # the old period still ends at pulse 10/11
    clock.pulse(11)
    assert latch(pit, 0) == 4
    clock.pulse(14)
    assert not pit.output(0)


def test_mode2_gate_low_forces_out_high_and_rising_gate_reloads():
    pit, clock, _ = make()
    pit.set_gate(2, True)
    program(pit, 2, 2, 10)
    clock.pulse(10)
    assert not pit.output(2)
    pit.set_gate(2, False)
    assert pit.output(2)
    clock.pulse(50)
    pit.set_gate(2, True)
    clock.pulse(51)
    assert latch(pit, 2) == 10


# --- mode 3 -----------------------------------------------------------------------------------

def test_mode3_even_count_high_half_low_half():
    pit, clock, _ = make()
    program(pit, 0, 3, 10)
    outs = []
    for p in range(1, 21):
        clock.pulse(p)
        outs.append(pit.output(0))
    assert outs == [True] * 5 + [False] * 5 + [True] * 5 + [False] * 5


def test_mode3_odd_count_high_n_plus_1_over_2_low_n_minus_1_over_2():
    pit, clock, _ = make()
    program(pit, 0, 3, 5)
    outs = []
    for p in range(1, 11):
        clock.pulse(p)
        outs.append(pit.output(0))
    assert outs == [True] * 3 + [False] * 2 + [True] * 3 + [False] * 2


def test_mode3_even_count_decrements_by_two():
    pit, clock, _ = make()
    program(pit, 0, 3, 10)
    values = []
    for p in range(1, 7):
        clock.pulse(p)
        values.append(latch(pit, 0))
    assert values == [10, 8, 6, 4, 2, 10]


def test_mode3_odd_count_loads_n_minus_1():
    pit, clock, _ = make()
    program(pit, 0, 3, 7)
    clock.pulse(1)
    assert latch(pit, 0) == 6


def test_mode3_new_count_loaded_at_end_of_half_cycle():
    pit, clock, _ = make()
    program(pit, 0, 3, 100)
    clock.pulse(10)
    pit.write(0, 20)
    pit.write(0, 0)
    clock.pulse(50)
    assert pit.output(0)  # first high half-cycle (50 pulses) unaffected
    clock.pulse(51)
    assert not pit.output(0)
    assert latch(pit, 0) == 20  # the low half now runs with the new count
    clock.pulse(61)
    assert pit.output(0)


def test_mode3_18_2_hz_gives_18_irq0_edges_per_second():
    pit, clock, line = make()
    program(pit, 0, 3, 0)  # 0 = 65536
    assert line.rises == 1  # DS: the control word sets OUT high (from the power-on low)
    end = EPOCH + 1_000_000_000
    while True:
        deadline = pit.deadline()
        if deadline > end:
            break
        clock.ns = deadline
        pit.poll()
    assert line.rises == 1 + 18  # rises at 65536*k + 1 pulses, k = 1..18


# --- modes 1, 4, 5 ----------------------------------------------------------------------------

def test_mode1_gate_trigger_gives_n_pulse_low_one_shot():
    pit, clock, _ = make()
    program(pit, 2, 1, 5)
    clock.pulse(10)
    assert pit.output(2)
    pit.set_gate(2, True)
    clock.pulse(11)
    assert not pit.output(2)
    clock.pulse(15)
    assert not pit.output(2)
    clock.pulse(16)
    assert pit.output(2)


def test_mode4_out_strobes_low_one_pulse_n_plus_1_after_count():
    pit, clock, _ = make()
    program(pit, 0, 4, 5)
    outs = []
    for p in range(0, 9):
        clock.pulse(p)
        outs.append(pit.output(0))
    assert outs == [True] * 6 + [False] + [True] * 2


def test_mode5_gate_trigger_strobes_low_one_pulse():
    pit, clock, _ = make()
    program(pit, 2, 5, 3)
    clock.pulse(20)
    assert pit.output(2)
    pit.set_gate(2, True)
    clock.pulse(24)
    assert not pit.output(2)
    clock.pulse(25)
    assert pit.output(2)


# --- access, latch, read-back -----------------------------------------------------------------

def test_lsb_only_access_reads_and_writes_low_byte():
    pit, clock, _ = make()
    program(pit, 0, 0, 0x40, rw=1)
    clock.pulse(1)
    assert pit.read(0) == 0x40
    assert pit.read(0) == 0x40


def test_msb_only_access_writes_high_byte():
    pit, clock, _ = make()
    program(pit, 0, 0, 0x0200, rw=2)
    clock.pulse(1)
    assert pit.read(0) == 0x02
    pit.write(3, 0x30)  # switch access back to lo/hi to see the whole value
    program(pit, 0, 0, 0x0200, rw=2)
    clock.pulse(3)
    pit.write(3, 0x00)
    assert pit.read(0) == 0x01  # 0x0200 - 2 = 0x01FE, MSB only


def test_counter_latch_freezes_value_until_read():
    pit, clock, _ = make()
    program(pit, 0, 0, 1000)
    clock.pulse(101)
    pit.write(3, 0x00)
    clock.pulse(500)
    assert read16(pit, 0) == 900
    assert read16(pit, 0) == 1000 - 499  # unlatched: live value


def test_second_latch_before_read_is_ignored():
    pit, clock, _ = make()
    program(pit, 0, 0, 1000)
    clock.pulse(101)
    pit.write(3, 0x00)
    clock.pulse(201)
    pit.write(3, 0x00)
    assert read16(pit, 0) == 900


def test_readback_status_reports_out_null_count_and_control_bits():
    pit, clock, _ = make()
    pit.write(3, 0x34)  # ch0, lo/hi, mode 2, binary
    pit.write(3, 0xE2)  # read-back: status only, counter 0
    assert pit.read(0) == 0x80 | 0x40 | 0x34  # OUT high, null count
    pit.write(0, 10)
    pit.write(0, 0)
    pit.write(3, 0xE2)
    assert pit.read(0) & 0x40
    clock.pulse(1)
    pit.write(3, 0xE2)
    assert pit.read(0) == 0x80 | 0x34  # loaded: null count clear


def test_readback_status_and_count_read_status_first():
    pit, clock, _ = make()
    program(pit, 1, 0, 300)
    clock.pulse(11)
    pit.write(3, 0xC4)  # read-back: count and status, counter 1
    assert pit.read(1) == 0x30
    assert read16(pit, 1) == 290


def test_readback_latches_several_counters_at_once():
    pit, clock, _ = make()
    program(pit, 0, 0, 300)
    program(pit, 1, 0, 400)
    clock.pulse(101)
    pit.write(3, 0xD6)  # count only, counters 0 and 1
    clock.pulse(201)
    assert read16(pit, 0) == 200
    assert read16(pit, 1) == 300


def test_bcd_count_counts_decimal_and_reads_bcd():
    pit, clock, _ = make()
    program(pit, 0, 0, 0x0100, bcd=True)  # 100 decimal
    clock.pulse(12)
    assert latch(pit, 0) == 0x0089
    clock.pulse(101)
    assert pit.output(0)


def test_bcd_zero_count_means_10000():
    pit, clock, _ = make()
    program(pit, 0, 0, 0, bcd=True)
    clock.pulse(2)
    assert latch(pit, 0) == 0x9999


def test_binary_zero_count_means_65536():
    pit, clock, _ = make()
    program(pit, 0, 0, 0)
    clock.pulse(65536)
    assert not pit.output(0)
    assert latch(pit, 0) == 1
    clock.pulse(65537)
    assert pit.output(0)


def test_control_register_read_floats():
    pit, _, _ = make()
    assert pit.read(3) == 0xFF


# --- deadline and poll ------------------------------------------------------------------------

def test_deadline_is_time_of_next_irq0_rise_in_mode2():
    pit, clock, _ = make()
    program(pit, 0, 2, 1193)
    expected = EPOCH + -(-1194 * 1_000_000_000 // HZ)
    assert pit.deadline() == expected


def test_deadline_none_when_out0_never_changes():
    pit, clock, _ = make()
    assert pit.deadline() is None
    program(pit, 0, 0, 10)
    clock.pulse(20)
    pit.poll()
    assert pit.deadline() is None


def test_poll_gives_pic_one_edge_per_mode2_period():
    pit, clock, line = make()
    program(pit, 0, 2, 100)
    for p in range(1, 1001, 7):
        clock.pulse(p)
        pit.poll()
    assert line.rises == 10


def test_late_poll_merges_missed_edges_into_one():
    pit, clock, line = make()
    program(pit, 0, 2, 100)
    first = line.rises
    clock.pulse(1005)
    pit.poll()
    assert line.rises == first + 1
    assert line.level


def test_unpolled_edge_makes_deadline_due_now():
    pit, clock, _ = make()
    program(pit, 0, 2, 100)
    clock.pulse(250)
    assert pit.deadline() <= clock.ns


def test_bad_offset_refused():
    pit, _, _ = make()
    with pytest.raises(ValueError, match="0x4"):
        pit.read(4)


# --- the closed form against a pulse-by-pulse reference ---------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


def reference_waveform(mode, n, pulses):
    """OUT and CE after each CLK pulse 1..pulses, stepping the datasheet's description."""
    outs, ces = [], []
    ce, out = None, True
    for p in range(1, pulses + 1):
        if ce is None:  # the load pulse
            ce = n - (n & 1) if mode == 3 else n
        elif mode == 2:
            if ce == 1:
                ce, out = n, True  # reload; the low pulse ends
            else:
                ce -= 1
            if ce == 1:
                out = False
        else:  # mode 3
            if out and n & 1 and ce == 0:
                ce, out = n - 1, False  # odd: one CLK after expiry OUT goes low
            else:
                ce -= 2
                if ce == 0 and not (out and n & 1):
                    ce, out = n - (n & 1), not out  # expiry: toggle and reload
        outs.append(out)
        ces.append(ce)
    return outs, ces


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from([2, 3]), n=st.integers(min_value=2, max_value=40))
def test_mode2_and_mode3_closed_form_matches_pulse_stepping(mode, n):
    pit, clock, _ = make()
    program(pit, 0, mode, n)
    outs, ces = reference_waveform(mode, n, 3 * n + 2)
    for p in range(1, 3 * n + 3):
        clock.pulse(p)
        assert pit.output(0) == outs[p - 1], f"OUT at pulse {p}"
        assert latch(pit, 0) == ces[p - 1], f"CE at pulse {p}"


@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from([2, 3]), n=st.integers(min_value=2, max_value=500),
       steps=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=30))
def test_polling_at_any_times_never_invents_or_misses_isolated_edges(mode, n, steps):
    """Every period's rising edge reaches the PIC exactly once when polls come at least once a
    period; no rising edge is shown that the waveform does not have."""
    pit, clock, line = make()
    program(pit, 0, mode, n)
    start = line.rises
    p = 0
    for step in steps:
        p += min(step, n // 2 or 1)
        clock.pulse(p)
        pit.poll()
    expected = sum(1 for k in range(1, p + 1) if k % n == 1 and k > 1)
    assert line.rises - start == expected
