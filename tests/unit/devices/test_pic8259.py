"""8259A behaviour, checked against the Intel 8259A datasheet (ICWs, OCWs, priority, cascade)."""

import pytest

from pykvmm.devices.pic8259 import DualPic, Pic8259


def init_pc(pic, master_icw4=0x01, slave_icw4=0x01):
    """The AT BIOS sequence: edge, cascade, ICW4; IRQ0-7 -> 0x08, IRQ8-15 -> 0x70."""
    for port, value in ((0, 0x11), (1, 0x08), (1, 0x04), (1, master_icw4)):
        pic.master.write(port, value)
    for port, value in ((0, 0x11), (1, 0x70), (1, 0x02), (1, slave_icw4)):
        pic.slave.write(port, value)


def pulse(pic, line):
    pic.set_irq(line, True)


def single(icw4=0x01, icw1=0x13):
    """One chip in single mode (no ICW3), vector base 0x20."""
    chip = Pic8259("test")
    chip.write(0, icw1)
    chip.write(1, 0x20)
    if icw1 & 0x01:
        chip.write(1, icw4)
    return chip


def ack(chip):
    return chip.vector(chip.acknowledge_level())


# --- initialisation ---------------------------------------------------------------------------

def test_icw2_sets_vector_base_for_irq0():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 0)
    assert pic.acknowledge() == 0x08


def test_slave_irq_delivers_slave_vector_through_cascade():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 8)
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x70
    assert pic.master.read(0) == 0x00  # IRR clear
    pic.master.write(0, 0x0B)
    assert pic.master.read(0) == 0x04  # master ISR2 set
    pic.slave.write(0, 0x0B)
    assert pic.slave.read(0) == 0x01  # slave ISR0 set


def test_uninitialised_pic_raises_no_interrupt():
    pic = DualPic()
    pulse(pic, 0)
    assert not pic.has_interrupt()


def test_no_interrupt_while_init_sequence_incomplete():
    pic = DualPic()
    init_pc(pic)
    pic.master.write(0, 0x11)
    pic.master.write(1, 0x08)
    pulse(pic, 1)
    assert not pic.has_interrupt()
    pic.master.write(1, 0x04)
    pic.master.write(1, 0x01)
    assert pic.has_interrupt()


def test_icw1_clears_imr():
    pic = DualPic()
    init_pc(pic)
    pic.master.write(1, 0xFB)
    pic.master.write(0, 0x11)
    assert pic.master.read(1) == 0x00


def test_icw1_resets_edge_sense_so_high_line_needs_new_edge():
    pic = DualPic()
    pic.set_irq(3, True)
    init_pc(pic)
    assert not pic.has_interrupt()
    pic.set_irq(3, False)
    pic.set_irq(3, True)
    assert pic.acknowledge() == 0x0B


def test_icw1_selects_irr_for_status_read():
    pic = DualPic()
    init_pc(pic)
    pic.master.write(0, 0x0B)  # read ISR
    pic.master.write(0, 0x11)
    pic.master.write(1, 0x08)
    pic.master.write(1, 0x04)
    pic.master.write(1, 0x01)
    pic.master.set_irq(5, True)
    assert pic.master.read(0) == 0x20  # IRR again


def test_single_mode_skips_icw3():
    chip = single(icw1=0x13)
    assert chip.state()["initialised"]
    chip.set_irq(1, True)
    assert ack(chip) == 0x21


def test_without_ic4_init_ends_after_icw3_and_icw4_is_zero():
    pic = DualPic()
    pic.master.write(0, 0x10)
    pic.master.write(1, 0x08)
    pic.master.write(1, 0x04)
    assert pic.master.state()["initialised"]
    assert pic.master.state()["icw4"] == 0
    pic.master.write(1, 0xFF)  # now OCW1
    assert pic.master.read(1) == 0xFF


# --- OCW1 masks -------------------------------------------------------------------------------

def test_ocw1_mask_blocks_request_and_reads_back():
    pic = DualPic()
    init_pc(pic)
    pic.master.write(1, 0x01)
    assert pic.master.read(1) == 0x01
    pulse(pic, 0)
    assert not pic.has_interrupt()
    assert pic.master.read(0) == 0x01  # IRR still latched
    pic.master.write(1, 0x00)
    assert pic.has_interrupt()


def test_masked_slave_cascade_line_blocks_slave_irqs():
    pic = DualPic()
    init_pc(pic)
    pic.master.write(1, 0x04)
    pulse(pic, 12)
    assert not pic.has_interrupt()


# --- priority and EOI -------------------------------------------------------------------------

def test_fixed_priority_lower_line_wins():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 5)
    pulse(pic, 3)
    assert pic.acknowledge() == 0x0B
    pic.master.write(0, 0x20)
    assert pic.acknowledge() == 0x0D


def test_in_service_level_blocks_equal_and_lower_levels():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 3)
    pic.acknowledge()
    pulse(pic, 4)
    assert not pic.has_interrupt()
    pulse(pic, 1)
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x09


def test_acknowledge_sets_isr_and_clears_irr():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 4)
    assert pic.master.read(0) == 0x10
    pic.acknowledge()
    assert pic.master.read(0) == 0x00
    pic.master.write(0, 0x0B)
    assert pic.master.read(0) == 0x10


def test_edge_line_held_high_does_not_retrigger_after_eoi():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 0)
    pic.acknowledge()
    pic.master.write(0, 0x20)
    assert not pic.has_interrupt()
    pic.set_irq(0, False)
    pic.set_irq(0, True)
    assert pic.has_interrupt()


def test_nonspecific_eoi_clears_highest_priority_isr_bit():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 5)
    pic.acknowledge()
    pulse(pic, 1)
    pic.acknowledge()
    pic.master.write(0, 0x0B)
    assert pic.master.read(0) == 0x22
    pic.master.write(0, 0x20)
    assert pic.master.read(0) == 0x20


def test_pic_specific_eoi_clears_only_named_isr_bit():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 5)
    pic.acknowledge()
    pulse(pic, 1)
    pic.acknowledge()
    pic.master.write(0, 0x0B)
    pic.master.write(0, 0x65)  # specific EOI, level 5
    assert pic.master.read(0) == 0x02


def test_rotate_on_nonspecific_eoi_makes_served_level_lowest():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 1)
    assert pic.acknowledge() == 0x09
    pic.master.write(0, 0xA0)
    pic.set_irq(1, False)
    pulse(pic, 1)
    pulse(pic, 4)
    assert pic.acknowledge() == 0x0C  # 1 is now lowest: 2..7,0 come first


def test_rotate_on_specific_eoi_makes_named_level_lowest():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 6)
    pic.acknowledge()
    pic.master.write(0, 0xE6)
    pulse(pic, 7)
    pulse(pic, 0)
    assert pic.acknowledge() == 0x0F  # 7 follows 6


def test_set_priority_command_makes_level_lowest():
    pic = DualPic()
    init_pc(pic)
    pic.master.write(0, 0xC3)  # IR3 lowest, IR4 highest
    pulse(pic, 0)
    pulse(pic, 4)
    assert pic.acknowledge() == 0x0C


def test_auto_eoi_leaves_isr_clear():
    pic = DualPic()
    init_pc(pic, master_icw4=0x03)
    pulse(pic, 6)
    assert pic.acknowledge() == 0x0E
    pic.master.write(0, 0x0B)
    assert pic.master.read(0) == 0x00


def test_rotate_in_auto_eoi_mode_rotates_on_acknowledge():
    pic = DualPic()
    init_pc(pic, master_icw4=0x03)
    pic.master.write(0, 0x80)
    pulse(pic, 0)
    pic.acknowledge()
    pic.set_irq(0, False)
    pulse(pic, 0)
    pulse(pic, 5)
    assert pic.acknowledge() == 0x0D


def test_special_mask_mode_lets_lower_levels_through_masked_isr():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 3)
    pic.acknowledge()  # IR3 in service
    pic.master.write(1, 0x08)  # mask IR3
    pic.master.write(0, 0x68)  # OCW3: set special mask mode
    pulse(pic, 6)
    assert pic.acknowledge() == 0x0E
    pic.master.write(0, 0x48)  # reset special mask mode
    pulse(pic, 5)
    assert not pic.has_interrupt()  # IR3 in service blocks IR5 again


def test_special_fully_nested_mode_lets_slave_preempt_its_own_cascade_level():
    pic = DualPic()
    init_pc(pic, master_icw4=0x11)
    pulse(pic, 12)
    assert pic.acknowledge() == 0x74
    pulse(pic, 9)  # higher priority on the slave while IR2 is in service on the master
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x71


def test_without_sfnm_slave_cannot_preempt_its_cascade_level():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 12)
    pic.acknowledge()
    pulse(pic, 9)
    assert not pic.has_interrupt()


# --- OCW3 reads and poll ----------------------------------------------------------------------

def test_ocw3_selects_irr_or_isr_for_reads():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 4)
    pic.acknowledge()
    pulse(pic, 6)
    pic.master.write(0, 0x0A)
    assert pic.master.read(0) == 0x40
    pic.master.write(0, 0x0B)
    assert pic.master.read(0) == 0x10
    assert pic.master.read(0) == 0x10  # the selection persists


def test_poll_returns_level_with_bit7_and_acknowledges():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 5)
    pic.master.write(0, 0x0C)
    assert pic.master.read(0) == 0x85
    pic.master.write(0, 0x0B)
    assert pic.master.read(0) == 0x20


def test_poll_with_no_request_reads_zero():
    pic = DualPic()
    init_pc(pic)
    pic.master.write(0, 0x0C)
    assert pic.master.read(0) == 0x00
    assert pic.master.read(0) == 0x00  # IRR read again: the poll applied to one read only


# --- edges and spurious interrupts ------------------------------------------------------------

def test_rising_edge_latches_irr():
    pic = DualPic()
    init_pc(pic)
    pic.set_irq(4, True)
    assert pic.master.read(0) == 0x10


def test_request_dropped_before_inta_is_spurious_irq7():
    pic = DualPic()
    init_pc(pic)
    pic.set_irq(4, True)
    pic.set_irq(4, False)
    assert pic.acknowledge() == 0x0F
    pic.master.write(0, 0x0B)
    assert pic.master.read(0) == 0x00  # no ISR bit for a spurious interrupt
    assert pic.master.state()["spurious"] == 1


def test_request_masked_before_inta_is_spurious_irq7():
    pic = DualPic()
    init_pc(pic)
    pulse(pic, 1)
    pic.master.write(1, 0x02)
    assert pic.acknowledge() == 0x0F


def test_spurious_on_slave_returns_irq15_and_sets_no_slave_isr():
    chip = Pic8259("slave")
    for off, v in ((0, 0x11), (1, 0x70), (1, 0x02), (1, 0x01)):
        chip.write(off, v)
    assert ack(chip) == 0x77
    chip.write(0, 0x0B)
    assert chip.read(0) == 0x00


def test_level_triggered_line_requests_again_after_eoi_while_high():
    chip = single(icw1=0x1B)  # LTIM
    chip.set_irq(2, True)
    assert ack(chip) == 0x22
    chip.write(0, 0x20)
    assert chip.int_output


# --- wiring -----------------------------------------------------------------------------------

def test_on_int_reports_cpu_intr_changes():
    seen = []
    pic = DualPic(on_int=seen.append)
    init_pc(pic)
    pulse(pic, 0)
    pic.acknowledge()
    assert seen == [True, False]


def test_irq2_cannot_be_driven():
    pic = DualPic()
    with pytest.raises(ValueError, match="IRQ9"):
        pic.set_irq(2, True)
    with pytest.raises(ValueError, match="0..15"):
        pic.set_irq(16, True)


def test_line_callable_drives_named_irq():
    pic = DualPic()
    init_pc(pic)
    pic.line(4)(True)
    assert pic.acknowledge() == 0x0C
