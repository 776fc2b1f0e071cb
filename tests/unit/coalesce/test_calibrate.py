"""The extent chosen from calibration figures: the break-even distance between two IOs."""

from pykvmm.coalesce.calibrate import MAX_EXTENT, MIN_EXTENT, choose_extent


def test_extent_is_exit_cost_over_extra_emulation_cost():
    # 8 us per exit, emulation 500 ns dearer than native per instruction: 16 instructions.
    assert choose_extent({"exit_us": 8.0, "native_ns_per_insn": 400, "emulated_ns_per_insn": 900}) == 16


def test_cheaper_emulation_than_native_takes_the_largest_extent():
    assert choose_extent({"exit_us": 5.0, "native_ns_per_insn": 600, "emulated_ns_per_insn": 100}) == MAX_EXTENT


def test_very_dear_emulation_still_keeps_one_instruction():
    assert choose_extent({"exit_us": 1.0, "native_ns_per_insn": 1, "emulated_ns_per_insn": 100000}) == MIN_EXTENT
