"""Flag tables and the less common ALU operations (called from compiled instructions).

Defined flags follow the Intel SDM vol. 2 instruction pages.  Flags the SDM leaves *undefined*
follow this host, an AMD EPYC: KVM here runs real-mode code in its in-kernel emulator, which
computes flags by executing the same instruction on the host CPU (arch/x86/kvm/emulate.c,
fastop), so the host CPU is the reference.  Each rule below was measured on this host with
tests/unit/x86/hostcpu.py and is checked by tests/unit/x86/test_host_flags.py on every run (so a
different host shows up as a failing test, not as silent divergence):

  AND OR XOR TEST     AF cleared.
  MUL IMUL (all)      SF ZF AF PF unchanged; CF=OF as defined.
  DIV IDIV            CF OF unchanged; SF ZF PF cleared; AF set.
  SHL SHR SAR         (masked count != 0) AF set.  OF for counts above 1 as the last 1-bit
                      step would set it: SHL MSB(result) XOR CF; SHR the XOR of the result's
                      two top bits; SAR 0.  CF = the last bit shifted out, 0 for SHL/SHR
                      once the count exceeds the width, the sign for SAR.
  ROL ROR RCL RCR     AF unchanged; OF from the result as for a count of 1 (ROL/RCL: MSB XOR
                      CF; ROR/RCR: XOR of the two top bits), also when count mod width is 0.
  BT BTS BTR BTC      only CF changes.
  BSF BSR             a zero source leaves the destination unchanged (AMD documents it).
                      The flags differ between AMD generations, so the rule is probed on the
                      host CPU at import (hostcpu.py, select_bit_scan): "zf", the EPYC first
                      measured: only ZF changes; "result", this Zen 4 EPYC: CF OF SF
                      AF cleared, ZF set for a zero source, PF from the index (from 0 for a zero
                      source).  On a host matching neither, BSF/BSR refuse (KVM runs them).
  SHLD SHRD           AF set; OF as SHL/SHR's last step; 16-bit counts 17-31: see shld().
  DAS AAM AAD         not run on the host CPU by KVM but computed in C (em_das, em_aam,
                      em_aad), ending with an OR on the destination: DAS OF cleared; AAM and
                      AAD take SF ZF PF from all of AX and clear CF OF AF.  On a hardware
                      (VMX/SVM) host these run on the CPU instead; the KVM differential test
                      (tests/kvm/test_x86_differential.py) would show a difference there.
"""

from __future__ import annotations

from . import hostcpu
from .stops import UNSUPPORTED, Refuse

CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
STATUS = CF | PF | AF | ZF | SF | OF
NSTATUS = ~STATUS & 0xFFFFFFFF

# PAR[b]: PF for a result whose low byte is b (PF is set on even parity of the low byte only).
PAR = [0 if bin(b).count("1") & 1 else PF for b in range(256)]
# SZP8/SZP16: SF, ZF and PF of an 8- or 16-bit result, one lookup on the hot path.
SZP8 = [PAR[v] | (ZF if v == 0 else 0) | (SF if v & 0x80 else 0) for v in range(256)]
SZP16 = [PAR[v & 0xFF] | (ZF if v == 0 else 0) | (SF if v & 0x8000 else 0) for v in range(65536)]


def szp(r: int, w: int) -> int:
    """SF ZF PF of a w-bit result."""
    return PAR[r & 0xFF] | (0 if r else ZF) | (SF if (r >> (w - 1)) & 1 else 0)


def szp32(r: int) -> int:
    return PAR[r & 0xFF] | (0 if r else ZF) | ((r >> 24) & 0x80)


def sx(v: int, w: int) -> int:
    """Sign-extend a w-bit value to a Python int."""
    return v - (1 << w) if v >> (w - 1) else v


# -- shifts and rotates ---------------------------------------------------------------------------
# The count is masked to 5 bits first (SDM: SAL/SAR/SHL/SHR and ROL/ROR/RCL/RCR, "count is masked
# to 5 bits"); a masked count of 0 changes nothing, not even the flags.  Each helper returns
# (result, flags).

def shift(op: int, x: int, c: int, w: int, f: int) -> tuple[int, int]:
    """Group-2 operation ``op`` (the ModRM reg field: 0 ROL 1 ROR 2 RCL 3 RCR 4 SHL 5 SHR 6 SAL
    (an alias of SHL) 7 SAR) on the w-bit value x by count c, with incoming flags f."""
    c &= 0x1F
    if c == 0:
        return x, f
    m = (1 << w) - 1
    msb = w - 1
    if op == 0:  # ROL: rotate by c mod w; CF = bit 0 of the result, OF = MSB XOR CF.
        k = c % w
        r = ((x << k) | (x >> (w - k))) & m if k else x
        cf = r & 1
        of = ((r >> msb) & 1) ^ cf
        return r, (f & ~(CF | OF)) | cf | (of << 11)
    if op == 1:  # ROR: CF = MSB of the result, OF = XOR of its two top bits.
        k = c % w
        r = ((x >> k) | (x << (w - k))) & m if k else x
        cf = (r >> msb) & 1
        of = cf ^ ((r >> (msb - 1)) & 1)
        return r, (f & ~(CF | OF)) | cf | (of << 11)
    if op == 2 or op == 3:  # RCL/RCR: rotate the (w+1)-bit value CF:x by c mod (w+1).
        k = c % (w + 1) if w < 32 else c
        v = x | ((f & CF) << w)
        if op == 2:
            v = ((v << k) | (v >> (w + 1 - k))) & ((m << 1) | 1)
            r, cf = v & m, v >> w
            of = ((r >> msb) & 1) ^ cf
        else:
            v = ((v >> k) | (v << (w + 1 - k))) & ((m << 1) | 1)
            r, cf = v & m, v >> w
            of = ((r >> msb) ^ (r >> (msb - 1))) & 1
        return r, (f & ~(CF | OF)) | cf | (of << 11)
    if op == 4 or op == 6:  # SHL/SAL
        r = (x << c) & m
        cf = (x >> (w - c)) & 1 if c <= w else 0
        of = ((r >> msb) & 1) ^ cf
    elif op == 5:  # SHR
        r = x >> c
        cf = (x >> (c - 1)) & 1
        of = (x >> msb) & 1 if c == 1 else ((r >> msb) ^ (r >> (msb - 1))) & 1
    else:  # SAR: the sign fills; past the width every bit (and CF) is the sign.
        v = sx(x, w)
        r = (v >> c) & m
        cf = (v >> (c - 1 if c - 1 < w else w - 1)) & 1
        of = 0
    return r, (f & NSTATUS) | szp(r, w) | cf | (of << 11) | AF


def shld(x: int, y: int, c: int, w: int, f: int) -> tuple[int, int]:
    """SHLD x, y, c: shift x left, filling from y's top bits; CF = the last bit out, OF = MSB of
    the result XOR CF (this host, any count).  A 16-bit operand with a count of 17-31 is
    undefined in the SDM; this host shifts the 48-bit value x:y:y and clears CF and OF."""
    c &= 0x1F
    if c == 0:
        return x, f
    m = (1 << w) - 1
    if w == 16 and c > 16:
        r = ((x << 32 | y << 16 | y) >> (32 - c)) & m
        cf = of = 0
    else:
        v = (x << w) | y
        r = (v >> (w - c)) & m
        cf = (v >> (2 * w - c)) & 1
        # measured: a 16-bit count of exactly 16 gives OF = CF on this host
        of = cf if c == 16 and w == 16 else ((r >> (w - 1)) & 1) ^ cf
    return r, (f & NSTATUS) | szp(r, w) | cf | (of << 11) | AF


def shrd(x: int, y: int, c: int, w: int, f: int) -> tuple[int, int]:
    """SHRD x, y, c: shift x right, filling from y's low bits; CF = the last bit out, OF = the
    XOR of the result's two top bits (this host, any count).  16-bit counts of 17-31: this host
    shifts the 48-bit value y:y:x and clears CF."""
    c &= 0x1F
    if c == 0:
        return x, f
    m = (1 << w) - 1
    if w == 16 and c > 16:
        r = ((y << 32 | y << 16 | x) >> c) & m
        cf = 0
    else:
        v = x | (y << w)
        r = (v >> c) & m
        cf = (v >> (c - 1)) & 1
    of = ((r >> (w - 1)) ^ (r >> (w - 2))) & 1
    return r, (f & NSTATUS) | szp(r, w) | cf | (of << 11) | AF


# -- multiply and divide --------------------------------------------------------------------------

def mul(x: int, y: int, w: int, signed: bool, f: int) -> tuple[int, int]:
    """One-operand MUL/IMUL: returns (double-width product, flags).  CF=OF=1 when the upper half
    is significant (SDM); SF ZF AF PF are left unchanged, as this host does."""
    if signed:
        p = sx(x, w) * sx(y, w)
        big = p != sx(p & ((1 << w) - 1), w)
        p &= (1 << (2 * w)) - 1
    else:
        p = x * y
        big = p >> w != 0
    return p, (f & ~(CF | OF)) | ((CF | OF) if big else 0)


def imul_trunc(x: int, y: int, w: int, f: int) -> tuple[int, int]:
    """Two- and three-operand IMUL: the product truncated to w bits; CF=OF=1 when truncation
    lost significance.  SF ZF AF PF unchanged (this host)."""
    p = sx(x, w) * sx(y, w)
    r = p & ((1 << w) - 1)
    big = p != sx(r, w)
    return r, (f & ~(CF | OF)) | ((CF | OF) if big else 0)


def div(n: int, d: int, w: int, signed: bool, f: int) -> tuple[int, int, int] | None:
    """DIV/IDIV of the 2w-bit n by the w-bit d: (quotient, remainder, flags), or None for a
    divide error (#DE: zero divisor or a quotient that does not fit).  IDIV truncates toward
    zero and the remainder takes the dividend's sign (SDM).  Flags: this host leaves CF and OF,
    clears SF ZF PF and sets AF."""
    if d == 0:
        return None
    m = (1 << w) - 1
    if signed:
        sn, sd = sx(n, 2 * w), sx(d, w)
        q = abs(sn) // abs(sd)
        if (sn < 0) != (sd < 0):
            q = -q
        rem = sn - q * sd
        if not -(1 << (w - 1)) <= q < (1 << (w - 1)):
            return None
        q &= m
        rem &= m
    else:
        q, rem = divmod(n, d)
        if q > m:
            return None
    return q, rem, (f & (NSTATUS | CF | OF)) | AF


# -- bit scans and bit tests ----------------------------------------------------------------------

def _bsf_zf(x: int, old: int, f: int) -> tuple[int, int]:
    """BSF, rule "zf": index of the lowest set bit; a zero source sets ZF and leaves the
    destination unchanged (AMD documents this; Intel leaves the destination undefined)."""
    if x == 0:
        return old, f | ZF
    return (x & -x).bit_length() - 1, f & ~ZF


def _bsr_zf(x: int, old: int, f: int) -> tuple[int, int]:
    """BSR, rule "zf": index of the highest set bit; a zero source as for BSF."""
    if x == 0:
        return old, f | ZF
    return x.bit_length() - 1, f & ~ZF


def _bsf_result(x: int, old: int, f: int) -> tuple[int, int]:
    """BSF, rule "result": CF OF SF AF cleared, PF from the index, ZF for a zero source (whose
    flags are those of an index of 0: ZF and PF)."""
    if x == 0:
        return old, (f & NSTATUS) | ZF | PF
    r = (x & -x).bit_length() - 1
    return r, (f & NSTATUS) | PAR[r]


def _bsr_result(x: int, old: int, f: int) -> tuple[int, int]:
    """BSR, rule "result": as _bsf_result, with the index of the highest set bit."""
    if x == 0:
        return old, (f & NSTATUS) | ZF | PF
    r = x.bit_length() - 1
    return r, (f & NSTATUS) | PAR[r]


def _bit_scan_unknown(x: int, old: int, f: int) -> tuple[int, int]:
    raise Refuse(UNSUPPORTED, "BSF/BSR: this host CPU's flag rule is not known")


BIT_SCAN_RULES = {"zf": (_bsf_zf, _bsr_zf), "result": (_bsf_result, _bsr_result)}
# Probe inputs: (source, flags in).  A zero and a nonzero source, with all status flags set and
# clear, tell the known rules apart.
_PROBES = ((0, STATUS), (0, 0), (1, STATUS), (1, 0), (6, STATUS), (0x8000, 0))


def select_bit_scan(run=None) -> str | None:
    """The BSF/BSR rule this host's CPU follows ("zf" or "result"), or None when it matches
    neither (or cannot be asked).  ``run`` is hostcpu.run (tests pass their own)."""
    if run is None:
        if not hostcpu.AVAILABLE:
            return None
        run = hostcpu.run
    for name, (f_bsf, f_bsr) in BIT_SCAN_RULES.items():
        try:
            if all(run(code, 0x1234, x, 0, 0, flags=fl)[4] & STATUS
                   == fn(x, 0x1234, fl)[1] & STATUS
                   for code, fn in ((bytes.fromhex("660fbcc1"), f_bsf),
                                    (bytes.fromhex("660fbdc1"), f_bsr))
                   for x, fl in _PROBES):
                return name
        except OSError:
            return None
    return None


BIT_SCAN_RULE = select_bit_scan()
bsf, bsr = BIT_SCAN_RULES.get(BIT_SCAN_RULE, (_bit_scan_unknown, _bit_scan_unknown))
