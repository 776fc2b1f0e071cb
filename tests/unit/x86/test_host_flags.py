"""The host CPU as the oracle for results and every arithmetic flag, defined or not.

KVM on this host runs real-mode code in its instruction emulator, which computes flags on the
host CPU (see pykvmm/x86/alu.py), so each register-form instruction here is executed both by
the emulator (in real mode) and natively on the host (in 64-bit mode through hostcpu.py, with
the operand-size prefix flipped so the width is the same), from the same registers and flags.
Results in AX/CX/DX/BX and CF PF AF ZF SF OF must be identical.  On a different host (an Intel
CPU computes several undefined flags differently) this test fails and names the instruction.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykvmm.x86 import alu, hostcpu
from pykvmm.machine.bus import MmioBus, PortBus
from pykvmm.x86 import stops
from pykvmm.x86.emulator import Emulator
from pykvmm.x86.state import CpuState

from conftest import FlatMemory

pytestmark = pytest.mark.skipif(not hostcpu.AVAILABLE, reason="needs an x86-64 host")

ARITH = 0x8D5
CODE = 0x1000
W32 = 0xFFFFFFFF

# (name, operand bytes without any 0x66, width).  Registers: AX/AL (0), CX/CL (1), DX (2),
# BX (3); byte forms use AL, CL, AH (4) and BH (7).
FORMS: list[tuple[str, str, int]] = []
for i, nm in enumerate(("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")):
    FORMS.append((f"{nm} al,cl", f"{i * 8:02x}c8", 8))
    FORMS.append((f"{nm} ah,bh", f"{i * 8:02x}fc", 8))
    for w in (16, 32):
        FORMS.append((f"{nm} ax,cx/{w}", f"{i * 8 + 1:02x}c8", w))
        FORMS.append((f"{nm} ax,imm8/{w}", f"83{0xC0 | i << 3:02x}85", w))
for w, pre in ((8, "f6"), (16, "f7"), (32, "f7")):
    wn = f"/{w}"
    FORMS += [("test" + wn, ("84" if w == 8 else "85") + "c8", w), ("not" + wn, pre + "d0", w),
              ("neg" + wn, pre + "d8", w), ("mul" + wn, pre + "e1", w), ("imul" + wn, pre + "e9", w),
              ("inc" + wn, ("fe" if w == 8 else "ff") + "c0", w),
              ("dec" + wn, ("fe" if w == 8 else "ff") + "c8", w)]
    for r, nm in enumerate(("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar")):
        FORMS.append((f"{nm} cl{wn}", ("d2" if w == 8 else "d3") + f"{0xC0 | r << 3:02x}", w))
        FORMS.append((f"{nm} 1{wn}", ("d0" if w == 8 else "d1") + f"{0xC0 | r << 3:02x}", w))
        FORMS.append((f"{nm} imm{wn}", ("c0" if w == 8 else "c1") + f"{0xC0 | r << 3:02x}13", w))
for w in (16, 32):
    wn = f"/{w}"
    FORMS += [("imul r,rm" + wn, "0fafc1", w), ("imul r,rm,imm8" + wn, "6bc1f3", w),
              ("imul r,rm,imm" + wn, "69c1" + ("3412" if w == 16 else "78563412"), w),
              ("shld cl" + wn, "0fa5c8", w), ("shrd cl" + wn, "0fadc8", w),
              ("shld imm" + wn, "0fa4c811", w), ("shrd imm" + wn, "0facc80b", w),
              ("bt" + wn, "0fa3c8", w), ("bts" + wn, "0fabc8", w), ("btr" + wn, "0fb3c8", w),
              ("btc" + wn, "0fbbc8", w), ("bt imm" + wn, "0fbae00d", w),
              ("bsf" + wn, "0fbcc1", w), ("bsr" + wn, "0fbdc1", w),
              ("movsx" + wn, "0fbec1", w), ("movzx" + wn, "0fb6c5", w),
              ("cmovz" + wn, "0f44c1", w), ("xchg" + wn, "87c8", w)]
FORMS += [("setl", "0f9cc0", 8), ("setbe", "0f96c4", 8), ("cbw", "98", 16), ("cwde", "98", 32),
          ("cwd", "99", 16), ("cdq", "99", 32), ("sahf", "9e", 8), ("lahf", "9f", 8),
          ("cmc", "f5", 8)]
DIVS = [(f"{nm}/{w}", ("f6" if w == 8 else "f7") + modrm, w)
        for w in (8, 16, 32) for nm, modrm in (("div", "f1"), ("idiv", "f9"))]


def _encodings(hexops: str, w: int) -> tuple[bytes, bytes]:
    ops = bytes.fromhex(hexops)
    if w == 16:
        return ops, b"\x66" + ops
    if w == 32:
        return b"\x66" + ops, ops
    return ops, ops


def _emulate(code: bytes, regs: list[int], flags: int):
    mem = FlatMemory()
    mem.load(CODE, code + b"\xf4")
    emu = Emulator(mem, PortBus(), MmioBus())
    cpu = CpuState(eax=regs[0], ecx=regs[1], edx=regs[2], ebx=regs[3], ip=CODE, flags=flags)
    stop = emu.run(cpu, max_insns=10)
    return stop, cpu


def _compare(name: str, hexops: str, w: int, regs: list[int], flags: int) -> None:
    real, host = _encodings(hexops, w)
    flags &= ARITH
    stop, cpu = _emulate(real, regs, flags | 2)
    assert stop.reason == stops.HALT and stop.insns == 1, (name, stop)
    out = hostcpu.run(host, *regs, flags=flags)
    got = [cpu.eax, cpu.ecx, cpu.edx, cpu.ebx, cpu.s[9] & ARITH]
    want = [v & W32 for v in out[:4]] + [out[4] & ARITH]
    assert got == want, (f"{name} ({real.hex()}) regs={[hex(r) for r in regs]} flags={flags:#x}: "
                         f"emulator {[hex(v) for v in got]} host {[hex(v) for v in want]}")


u32 = st.integers(0, W32)
# Values near the edges (0, sign bits, all ones) find flag bugs that uniform values miss.
edgy = st.one_of(u32, st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
                                       0x7FFFFFFF, 0x80000000, W32, 0x100, 0x10000]))
counts = st.one_of(st.integers(0, 40), u32)


@pytest.mark.parametrize("name,hexops,w", FORMS, ids=[f[0] for f in FORMS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=edgy, c=counts, d=edgy, b=edgy, flags=st.integers(0, 0xFFF))
def test_matches_host(name, hexops, w, a, c, d, b, flags):
    _compare(name, hexops, w, [a, c, d, b], flags)


@pytest.mark.parametrize("name,hexops,w", DIVS, ids=[f[0] for f in DIVS])
@settings(max_examples=80, deadline=None)
@given(a=edgy, c=edgy, d=edgy, flags=st.integers(0, 0xFFF))
def test_divide_matches_host_or_faults(name, hexops, w, a, c, d, flags):
    """DIV/IDIV: when the emulator refuses (#DE) the host is never asked (it would SIGFPE);
    the refusal itself is checked against the SDM definition of #DE."""
    real, host = _encodings(hexops, w)
    regs = [a, c, d, 0]
    stop, _ = _emulate(real, regs, (flags & ARITH) | 2)
    m = (1 << w) - 1
    divisor = c & m
    if w == 8:
        n = a & 0xFFFF
    else:
        n = ((d & m) << w) | (a & m)
    if divisor == 0:
        de = True
    elif name.startswith("idiv"):
        def sx(v, bits):
            return v - (1 << bits) if v >> (bits - 1) else v
        q = abs(sx(n, 2 * w)) // abs(sx(divisor, w))
        q = -q if (sx(n, 2 * w) < 0) != (sx(divisor, w) < 0) else q
        de = not -(1 << (w - 1)) <= q < (1 << (w - 1))
    else:
        de = n // divisor > m
    if de:
        assert stop.reason == stops.FAULT and stop.insns == 0
        return
    _compare(name, hexops, w, regs, flags)


def _fake_host(rule):
    """A host CPU following one of alu's rules, as hostcpu.run answers (16-bit BSF/BSR)."""
    fns = alu.BIT_SCAN_RULES[rule] if rule else None

    def run(code, rax, rcx, rdx, rbx, flags=0):
        if fns is None:  # neither rule: every flag set
            return rax, rcx, rdx, rbx, alu.STATUS | 2
        r, f = fns[0 if code[2] == 0xBC else 1](rcx & 0xFFFF, rax & 0xFFFF, flags)
        return r, rcx, rdx, rbx, f | 2
    return run


def test_bit_scan_rule_is_told_apart_and_unknown_refuses():
    assert alu.select_bit_scan(_fake_host("zf")) == "zf"
    assert alu.select_bit_scan(_fake_host("result")) == "result"
    assert alu.select_bit_scan(_fake_host(None)) is None
    with pytest.raises(stops.Refuse):
        alu._bit_scan_unknown(0, 0, 0)
    # The two rules differ where the probes look (so the probe can never pick the wrong one).
    assert alu._bsf_zf(1, 0, 0)[1] != alu._bsf_result(1, 0, 0)[1]
