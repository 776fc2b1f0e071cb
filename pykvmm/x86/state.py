"""The CPU state the emulator works on, and its mapping to kvm_regs / kvm_sregs.

The state is one flat Python list (``CpuState.s``) so that compiled instructions index it with
constants, which is the cheapest register access CPython offers:

    s[0..7]   the low 16 bits of EAX ECX EDX EBX ESP EBP ESI EDI (AX CX ... DI; the x86
              register numbering)
    s[8]      EIP (the CS-relative instruction pointer)
    s[9]      EFLAGS (bit 1 always set)
    s[10..15] selectors ES CS SS DS FS GS (the x86 segment-register numbering)
    s[16..21] the matching segment bases (from the descriptor cache, i.e. kvm_sregs)
    s[22..29] the high 16 bits of EAX ... EDI

The general registers are split into 16-bit halves because real-mode code works on 16-bit
registers: every value then stays below 2**30, a single CPython digit, for which integer
operations are several times cheaper than on 32-bit values (measured: 32-bit masks made a
register write cost ~100 ns here).

Only *plain* real mode is emulated: CR0.PE=0 and every segment's cached base equal to
selector*16 with limit 0xFFFF.  After reset (CS base 0xFFFF0000) or in big real mode the
descriptor cache disagrees with the selector; the emulator then refuses (reason "mode").
"""

from __future__ import annotations

from typing import Any

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
IP = 8
FL = 9
ES, CS, SS, DS, FS, GS = range(6)
SEL = 10   # s[SEL + seg] is a selector
BASE = 16  # s[BASE + seg] is a segment base
HI = 22    # s[HI + r] is the high half of general register r
NSTATE = 30

SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
GPR_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi")

# EFLAGS bits (Intel SDM vol. 1, 3.4.3).
CF, PF, AF, ZF, SF, TF, IF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
STATUS = CF | PF | AF | ZF | SF | OF
CR0_PE = 1
REAL_MODE_LIMIT = 0xFFFF


def plain_real_mode(sregs: Any) -> bool:
    """True when ``sregs`` (kvm_sregs-like) describe plain real mode: CR0.PE=0 and every segment
    register's cached base equal to selector*16 with a 0xFFFF limit."""
    if sregs.cr0 & CR0_PE:
        return False
    for name in SEG_NAMES:
        seg = getattr(sregs, name)
        if seg.base != seg.selector * 16 or seg.limit != REAL_MODE_LIMIT:
            return False
    return True


class CpuState:
    """Registers of one vCPU in plain real mode.  ``s`` is the flat state list (see module doc);
    ``plain`` is False when the segment state loaded from KVM was not plain real mode."""

    __slots__ = ("s", "plain")

    def __init__(self, *, eax: int = 0, ecx: int = 0, edx: int = 0, ebx: int = 0, esp: int = 0,
                 ebp: int = 0, esi: int = 0, edi: int = 0, ip: int = 0, flags: int = 0x2,
                 es: int = 0, cs: int = 0, ss: int = 0, ds: int = 0, fs: int = 0, gs: int = 0):
        sels = (es, cs, ss, ds, fs, gs)
        gprs = (eax, ecx, edx, ebx, esp, ebp, esi, edi)
        for i, v in enumerate((*gprs, ip, flags)):
            if not 0 <= v <= 0xFFFFFFFF:
                raise ValueError(f"register {i} must fit in 32 bits, not {v:#x}")
        self.s = [*(v & 0xFFFF for v in gprs), ip, flags | 2, *sels, *(v * 16 for v in sels),
                  *(v >> 16 for v in gprs)]
        for v in sels:
            if not 0 <= v <= 0xFFFF:
                raise ValueError(f"a selector must fit in 16 bits, not {v:#x}")
        self.plain = True

    # -- KVM mapping ------------------------------------------------------------------------------

    def load(self, regs: Any, sregs: Any) -> None:
        """Take the state from kvm_regs- and kvm_sregs-like objects (attribute names as in
        linux/kvm.h).  Upper halves of the 64-bit registers are dropped: real mode cannot see
        them, and ``store`` writes back only the low 32 bits (so they are preserved there)."""
        s = self.s
        for i, name in enumerate(GPR_NAMES):
            v = getattr(regs, name)
            s[i] = v & 0xFFFF
            s[HI + i] = (v >> 16) & 0xFFFF
        s[IP] = regs.rip & 0xFFFFFFFF
        s[FL] = regs.rflags & 0xFFFFFFFF
        for i, name in enumerate(SEG_NAMES):
            seg = getattr(sregs, name)
            s[SEL + i] = seg.selector
            s[BASE + i] = seg.base
        self.plain = plain_real_mode(sregs)

    def store(self, regs: Any) -> None:
        """Write GPRs, RIP and RFLAGS back into a kvm_regs-like object, keeping the upper 32 bits
        of each 64-bit register (real-mode code cannot change them)."""
        s = self.s
        for i, name in enumerate(GPR_NAMES):
            setattr(regs, name, (getattr(regs, name) & ~0xFFFFFFFF) | s[HI + i] << 16 | s[i])
        regs.rip = (regs.rip & ~0xFFFFFFFF) | s[IP]
        regs.rflags = (regs.rflags & ~0xFFFFFFFF) | s[FL]

    def store_segments(self, sregs: Any) -> None:
        """Write the segment registers the emulator may have changed (DS ES FS GS; SS and CS are
        never changed by emulated code) back into a kvm_sregs-like object."""
        s = self.s
        for i, name in enumerate(SEG_NAMES):
            seg = getattr(sregs, name)
            if seg.selector != s[SEL + i] or seg.base != s[BASE + i]:
                seg.selector = s[SEL + i]
                seg.base = s[BASE + i]

    def segments_changed(self, sregs: Any) -> bool:
        s = self.s
        return any(getattr(sregs, n).selector != s[SEL + i] for i, n in enumerate(SEG_NAMES))

    def copy(self) -> "CpuState":
        c = CpuState.__new__(CpuState)
        c.s = list(self.s)
        c.plain = self.plain
        return c

    # -- named access (tests, debugging; the emulator itself indexes ``s``) -----------------------

    def __getattr__(self, name: str) -> int:
        idx = _NAMED.get(name)
        if idx is None:
            raise AttributeError(name)
        i, mask, shift = idx
        if i >= 100:  # a 32-bit general register: both halves
            return self.s[HI + i - 100] << 16 | self.s[i - 100]
        return (self.s[i] >> shift) & mask

    def __setattr__(self, name: str, value: int) -> None:
        if name in CpuState.__slots__:
            object.__setattr__(self, name, value)
            return
        idx = _NAMED.get(name)
        if idx is None:
            raise AttributeError(name)
        i, mask, shift = idx
        s = self.s
        if i >= 100:
            s[i - 100] = value & 0xFFFF
            s[HI + i - 100] = (value >> 16) & 0xFFFF
            return
        s[i] = (s[i] & ~(mask << shift)) | ((value & mask) << shift)
        if SEL <= i < BASE:  # a selector written in real mode moves its base with it
            s[i + BASE - SEL] = s[i] * 16

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CpuState) and self.s == other.s

    def __repr__(self) -> str:
        s = self.s
        regs = " ".join(f"e{n[1:]}={s[HI + i] << 16 | s[i]:08x}" for i, n in enumerate(GPR_NAMES))
        segs = " ".join(f"{n}={s[SEL + i]:04x}" for i, n in enumerate(SEG_NAMES))
        return f"<CpuState {regs} ip={s[IP]:04x} flags={s[FL]:08x} {segs}>"


_NAMED: dict[str, tuple[int, int, int]] = {}
for _i, _n in enumerate(("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")):
    _NAMED["e" + _n] = (100 + _i, 0xFFFFFFFF, 0)
    _NAMED[_n] = (_i, 0xFFFF, 0)
for _i, _n in enumerate("acdb"):
    _NAMED[_n + "l"] = (_i, 0xFF, 0)
    _NAMED[_n + "h"] = (_i, 0xFF, 8)
_NAMED.update(ip=(IP, 0xFFFFFFFF, 0), eip=(IP, 0xFFFFFFFF, 0), flags=(FL, 0xFFFFFFFF, 0))
for _i, _n in enumerate(SEG_NAMES):
    _NAMED[_n] = (SEL + _i, 0xFFFF, 0)
    _NAMED[_n + "_base"] = (BASE + _i, 0xFFFFFFFF, 0)
