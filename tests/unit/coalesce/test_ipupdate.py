"""Register transfer through the sync-regs area, on a bytearray standing in for kvm_run."""

import ctypes

from pykvmm.coalesce.ipupdate import InstructionPointerUpdate, load_state
from pykvmm.kvm import ioctls as K
from pykvmm.kvm.structs import KvmRun
from pykvmm.x86.state import BASE, CS, DS, EAX, EBX, FL, HI, IP, NSTATE, SEL


def real_mode_page():
    page = bytearray(ctypes.sizeof(KvmRun))
    run = KvmRun.from_buffer(page)
    r = run.s.regs.regs
    r.rax, r.rbx, r.rip, r.rflags = 0xAAAA_BBBB_1234_5678, 0x9, 0x7C10, 0x202
    for name, sel in (("cs", 0x07C0), ("ds", 0x1000), ("es", 0), ("fs", 0), ("gs", 0), ("ss", 0)):
        seg = getattr(run.s.regs.sregs, name)
        seg.selector, seg.base, seg.limit = sel, sel << 4, 0xFFFF
    return page, run


def test_load_state_splits_registers_and_reads_segments():
    page, _ = real_mode_page()
    s = [0] * NSTATE
    assert load_state(page, s)
    assert (s[EAX], s[HI + EAX]) == (0x5678, 0x1234)
    assert s[EBX] == 9 and s[IP] == 0x7C10 and s[FL] == 0x202
    assert s[SEL + CS] == 0x07C0 and s[BASE + CS] == 0x7C00 and s[BASE + DS] == 0x10000


def test_not_plain_real_mode_is_reported():
    page, run = real_mode_page()
    run.s.regs.sregs.ds.base = 0x12345678  # big real mode: descriptor cache differs from selector
    assert not load_state(page, [0] * NSTATE)
    page, run = real_mode_page()
    run.s.regs.sregs.cr0 |= 1
    assert not load_state(page, [0] * NSTATE)


def test_commit_keeps_upper_halves_and_marks_registers_dirty():
    page, run = real_mode_page()
    s = [0] * NSTATE
    load_state(page, s)
    before = list(s)
    s[EAX] = 0x0042
    s[IP] = 0x7C20
    InstructionPointerUpdate(page).commit(before, s)
    r = run.s.regs.regs
    assert r.rax == 0xAAAA_BBBB_1234_0042
    assert r.rip == 0x7C20
    assert run.kvm_dirty_regs == K.KVM_SYNC_X86_REGS


def test_commit_writes_changed_segments_and_marks_sregs_dirty():
    page, run = real_mode_page()
    s = [0] * NSTATE
    load_state(page, s)
    before = list(s)
    s[SEL + DS], s[BASE + DS] = 0x2000, 0x20000
    InstructionPointerUpdate(page).commit(before, s)
    assert run.s.regs.sregs.ds.selector == 0x2000 and run.s.regs.sregs.ds.base == 0x20000
    assert run.kvm_dirty_regs == K.KVM_SYNC_X86_REGS | K.KVM_SYNC_X86_SREGS
