"""The machine's exit handler, driven with made-up exits and a fake KVM binding."""

import pytest

from pykvmm.kvm import exits as X
from pykvmm.machine.machine import (END_DEBUG_EXIT, END_ERROR, END_HALT, END_SHUTDOWN, STATUS_FAULT,
                                    Machine, MachineConfig)

from .fake_kvm import FakeKvm


@pytest.fixture
def machine():
    m = Machine(MachineConfig(serial="null"), kvm=FakeKvm())
    yield m
    m.close()


def test_memory_slots_follow_the_pc_layout(machine):
    regions = machine.vm.regions
    assert (0, 0xA0000, False) in regions
    assert (0x100000, 16 * 1024 * 1024 - 0x100000, False) in regions
    assert (0xF0000, 0x10000, True) in regions


def test_firmware_is_aliased_below_4_gib_for_the_reset_vector():
    m = Machine(MachineConfig(serial="null", firmware=b"\xf4" * 0x10000), kvm=FakeKvm())
    try:
        assert (0xFFFF0000, 0x10000, True) in m.vm.regions
        assert m.mem.read(0xFFFF0, 1) == b"\xf4"
    finally:
        m.close()


def test_external_bios_makes_option_rom_area_ram_and_aliases_the_image():
    m = Machine(MachineConfig(serial="null", firmware=b"\x90" * 0x20000, firmware_kind="external"),
                kvm=FakeKvm())
    try:
        assert (0xC0000, 16 * 1024 * 1024 - 0xC0000, False) in m.vm.regions
        assert (0xFFFE0000, 0x20000, True) in m.vm.regions
        assert m.mem.read(0xE0000, 1) == b"\x90"
    finally:
        m.close()


@pytest.mark.parametrize("size", [0x8000, 0x30001, 0x50000])
def test_external_bios_of_the_wrong_size_is_refused(size):
    from pykvmm.errors import UsageError

    with pytest.raises(UsageError, match="a --bios image must be 64, 128, 192 or 256 KiB"):
        Machine(MachineConfig(serial="null", firmware=b"\0" * size, firmware_kind="external"), kvm=FakeKvm())


def test_out_to_uart_thr_reaches_the_serial_sink(machine):
    machine.handle_exit(X.IoOut(0x3F8, 1, 1, b"A"))
    assert machine.serial.count == 1
    assert machine.exit_counts["io"] == 1


def test_string_out_is_split_into_count_elements_of_size(machine):
    machine.handle_exit(X.IoOut(0x3F8, 1, 3, b"abc"))
    assert machine.serial.count == 3
    assert machine.pio.io_ops[0x3F8] == 3


def test_outw_is_one_operation_of_two_bytes(machine):
    machine.handle_exit(X.IoOut(0x3FF, 2, 1, b"\x12\x34"))  # SCR and the unclaimed 0x400
    assert machine.pio.io_ops == {0x3FF: 1}
    assert machine.uart.read(7) == 0x12


def test_in_from_unclaimed_port_completes_with_all_ones(machine):
    vcpu = machine.vcpu
    machine.handle_exit(X.IoIn(0x1F7, 2, 1, 4096))
    assert vcpu.page[4096:4098] == b"\xff\xff"


def test_in_lsr_reports_transmitter_empty(machine):
    machine.handle_exit(X.IoIn(0x3FD, 1, 1, 4096))
    assert machine.vcpu.page[4096] & 0x60 == 0x60  # THRE and TEMT


def test_write_to_debug_exit_requests_a_stop_with_the_value(machine):
    machine.handle_exit(X.IoOut(0xF4, 1, 1, b"\x2a"))
    assert machine._stop == (END_DEBUG_EXIT, 0x2A)


def test_qemu_exit_code_mapping():
    m = Machine(MachineConfig(serial="null", exit_code="qemu"), kvm=FakeKvm())
    try:
        m.handle_exit(X.IoOut(0xF4, 1, 1, b"\x02"))
        assert m._stop == (END_DEBUG_EXIT, 5)
    finally:
        m.close()


def test_hlt_with_interrupts_off_ends_the_run_with_status_0(machine):
    machine.vcpu.sync.regs.rflags = 0x2
    machine.handle_exit(X.HLT)
    assert machine._stop == (END_HALT, 0)


def test_shutdown_is_a_fault_with_a_report(machine):
    machine.vcpu.sync.regs.rip = 0x7C00
    machine.mem.load(0x7C00, b"\x0f\x0b")
    machine.handle_exit(X.SHUTDOWN)
    assert machine._stop == (END_SHUTDOWN, STATUS_FAULT)
    assert "0000:7c00" in machine._stop_detail and "ud2" in machine._stop_detail


def test_internal_error_names_the_instruction(machine):
    machine.handle_exit(X.InternalError(1, (), b"\x27"))
    assert machine._stop == (END_ERROR, STATUS_FAULT)
    assert "emulation failure on bytes 27" in machine._stop_detail


def test_fail_entry_is_a_fault(machine):
    machine.handle_exit(X.FailEntry(0x80000021, 0))
    assert machine._stop[1] == STATUS_FAULT and "0x80000021" in machine._stop_detail


def test_unknown_exit_reason_is_a_value_and_a_fault(machine):
    machine.handle_exit(X.Unsupported(99, "exit reason 99"))
    assert machine._stop[1] == STATUS_FAULT


def test_mmio_read_of_unclaimed_hole_returns_all_ones(machine):
    machine.handle_exit(X.MmioRead(0xA0000, 4))
    assert bytes(machine.vcpu.page[40:44]) == b"\xff\xff\xff\xff"  # kvm_run.mmio.data
    assert machine.exit_counts["mmio"] == 1


def test_mmio_write_to_rom_is_dropped_and_counted(machine):
    machine.handle_exit(X.MmioWrite(0xF0000, 1, b"\x90"))
    assert machine.mem.read(0xF0000, 1) == b"\x00"
    assert machine.mmio.io_ops == {0xF0000: 1}


def test_vcpu_decodes_an_io_exit_from_the_run_page():
    import struct
    from pykvmm.kvm import ioctls as K
    from .fake_kvm import FakeVcpu

    v = FakeVcpu()
    struct.pack_into("<I", v.page, 8, K.KVM_EXIT_IO)
    struct.pack_into("<BBHIQ", v.page, 32, K.KVM_EXIT_IO_OUT, 1, 0x3F8, 2, 4096)
    v.page[4096:4098] = b"hi"
    assert v.decode_exit() == X.IoOut(0x3F8, 1, 2, b"hi")
    struct.pack_into("<BBHIQ", v.page, 32, K.KVM_EXIT_IO_IN, 2, 0x60, 1, 4096)
    assert v.decode_exit() == X.IoIn(0x60, 2, 1, 4096)


def test_vcpu_refuses_an_io_data_window_outside_the_page():
    import struct
    from pykvmm.kvm import ioctls as K
    from .fake_kvm import FakeVcpu

    v = FakeVcpu()
    struct.pack_into("<I", v.page, 8, K.KVM_EXIT_IO)
    struct.pack_into("<BBHIQ", v.page, 32, K.KVM_EXIT_IO_OUT, 4, 0x3F8, 4096, 4096)
    assert type(v.decode_exit()) is X.Unsupported
