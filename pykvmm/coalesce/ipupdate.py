"""Register transfer between KVM's sync-regs area and the emulator, and the instruction pointer
update unit (patent 430).

Both directions go through the kvm_run page with precompiled ``struct`` formats: KVM copies the
registers there on every exit (kvm_valid_regs) and loads those flagged in kvm_dirty_regs on the
next entry, so a coalesced exit costs no GET/SET_REGS ioctl (about 4.8 us each on this host).
"""

from __future__ import annotations

import struct

from ..kvm import ioctls as K
from ..kvm.structs import RUN_S, KvmRun
from ..x86.state import BASE, CR0_PE, FL, IP, NSTATE, REAL_MODE_LIMIT, SEL

# kvm_regs: rax rbx rcx rdx rsi rdi rsp rbp, r8..r15 (skipped), rip, rflags.
_REGS = struct.Struct("<8Q64x2Q")
_GPRS = struct.Struct("<8Q")
_RIP_FLAGS = struct.Struct("<2Q")
_RIP_OFF = RUN_S + 16 * 8
_SREGS_OFF = RUN_S + 144
# kvm_sregs starts with cs ds es fs gs ss (24 bytes each: base, limit, selector, 10 more bytes),
# then tr, ldt, gdt, idt (80 bytes), then cr0.
_SEGS = struct.Struct("<" + "QIH10x" * 6 + "80xQ")
_SEG_SIZE = 24
_BASE_FMT = struct.Struct("<Q")
_SEL_FMT = struct.Struct("<H")
_DIRTY = KvmRun.kvm_dirty_regs.offset
_DIRTY_FMT = struct.Struct("<Q")
_LO32 = 0xFFFFFFFF
_HI32 = ~0xFFFFFFFF
_RM_LIMIT = REAL_MODE_LIMIT

# kvm_sregs segment order (cs ds es fs gs ss) -> emulator segment number (ES CS SS DS FS GS).
_KVM_SEG_TO_X86 = (1, 3, 0, 4, 5, 2)


def load_state(page, s: list) -> bool:
    """Fill the emulator's flat state list from the sync-regs area; True if plain real mode.

    Unrolled on purpose: it runs on every coalesced exit, and a loop over the registers cost
    about three times as much here."""
    ax, bx, cx, dx, si, di, sp, bp, rip, rfl = _REGS.unpack_from(page, RUN_S)
    s[0:10] = (ax & 0xFFFF, cx & 0xFFFF, dx & 0xFFFF, bx & 0xFFFF, sp & 0xFFFF, bp & 0xFFFF,
               si & 0xFFFF, di & 0xFFFF, rip & _LO32, rfl & _LO32)
    s[22:30] = ((ax >> 16) & 0xFFFF, (cx >> 16) & 0xFFFF, (dx >> 16) & 0xFFFF, (bx >> 16) & 0xFFFF,
                (sp >> 16) & 0xFFFF, (bp >> 16) & 0xFFFF, (si >> 16) & 0xFFFF, (di >> 16) & 0xFFFF)
    (csb, csl, css, dsb, dsl, dss, esb, esl, ess, fsb, fsl, fss, gsb, gsl, gss, ssb, ssl, sss,
     cr0) = _SEGS.unpack_from(page, _SREGS_OFF)
    s[10:22] = (ess, css, sss, dss, fss, gss, esb, csb, ssb, dsb, fsb, gsb)
    return (not cr0 & CR0_PE and rip <= 0xFFFF
            and csb == css << 4 and dsb == dss << 4 and esb == ess << 4 and fsb == fss << 4
            and gsb == gss << 4 and ssb == sss << 4
            and csl == _RM_LIMIT and dsl == _RM_LIMIT and esl == _RM_LIMIT and fsl == _RM_LIMIT
            and gsl == _RM_LIMIT and ssl == _RM_LIMIT)


class InstructionPointerUpdate:
    """Patent unit 430: after emulation, write RIP and every register the block changed back
    through sync regs, so the guest resumes exactly where emulation stopped.  The upper 32 bits
    of each 64-bit register are kept (real-mode code cannot change them)."""

    def __init__(self, page) -> None:
        self.page = page

    def commit(self, before: list, s: list) -> None:
        page = self.page
        ax, bx, cx, dx, si, di, sp, bp = _GPRS.unpack_from(page, RUN_S)
        H = _HI32
        _GPRS.pack_into(page, RUN_S,
                        (ax & H) | (s[22] << 16) | s[0], (bx & H) | (s[25] << 16) | s[3],
                        (cx & H) | (s[23] << 16) | s[1], (dx & H) | (s[24] << 16) | s[2],
                        (si & H) | (s[28] << 16) | s[6], (di & H) | (s[29] << 16) | s[7],
                        (sp & H) | (s[26] << 16) | s[4], (bp & H) | (s[27] << 16) | s[5])
        rip, rflags = _RIP_FLAGS.unpack_from(page, _RIP_OFF)
        _RIP_FLAGS.pack_into(page, _RIP_OFF, (rip & H) | s[IP], (rflags & H) | s[FL])
        dirty = K.KVM_SYNC_X86_REGS
        if before[SEL:SEL + 6] != s[SEL:SEL + 6]:
            for k, x in enumerate(_KVM_SEG_TO_X86):
                off = _SREGS_OFF + k * _SEG_SIZE
                _BASE_FMT.pack_into(page, off, s[BASE + x])
                _SEL_FMT.pack_into(page, off + 12, s[SEL + x])
            dirty |= K.KVM_SYNC_X86_SREGS
        _DIRTY_FMT.pack_into(page, _DIRTY, _DIRTY_FMT.unpack_from(page, _DIRTY)[0] | dirty)


__all__ = ["load_state", "InstructionPointerUpdate", "NSTATE"]
