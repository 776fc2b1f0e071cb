"""Run one ALU instruction on the host CPU: the oracle for flags the SDM leaves undefined.

KVM on the development host (a software backend) executes real-mode code in its in-kernel
instruction emulator, which computes the arithmetic flags by running the same instruction on the
host CPU (arch/x86/kvm/emulate.c, the "fastop" helpers); on hardware KVM the guest runs on that
CPU itself.  Either way the host CPU decides every undefined flag, and CPUs differ: BSF/BSR
leave all flags but ZF alone on the AMD EPYC the emulator was first measured on, and
clear CF OF SF AF and set PF from the result on this Zen 4 EPYC (family 25, model 17).  So
alu.py asks this module which rule the host follows (and the tests use it as their oracle).

It maps a page PROT_EXEC, places a tiny 64-bit thunk in it and calls it through ctypes:

    state[0..3] -> rax rcx rdx rbx,  state[4] -> rflags (pushed and popped),
    <the instruction under test>,
    rax rcx rdx rbx -> state[0..3],  rflags -> state[5]

The instruction runs in 64-bit mode; with an 0x66 prefix (16-bit) or byte registers (AL, CL, AH,
...) the arithmetic and the flags are the same as in real mode.  Never pass an instruction that
can fault (DIV by zero, overflow): the process would get SIGFPE.  Where executable anonymous
memory is refused (a hardened host), ``run`` raises OSError and callers treat the rule as
unknown.
"""

from __future__ import annotations

import ctypes
import mmap
import platform

AVAILABLE = platform.machine() in ("x86_64", "AMD64")

_PROLOGUE = bytes.fromhex(
    "53"            # push rbx
    "4989f8"        # mov r8, rdi
    "498b00"        # mov rax, [r8]
    "498b4808"      # mov rcx, [r8+8]
    "498b5010"      # mov rdx, [r8+16]
    "498b5818"      # mov rbx, [r8+24]
    "41ff7020"      # push qword [r8+32]
    "9d"            # popfq
)
_EPILOGUE = bytes.fromhex(
    "9c"            # pushfq
    "418f4028"      # pop qword [r8+40]
    "498900"        # mov [r8], rax
    "49894808"      # mov [r8+8], rcx
    "49895010"      # mov [r8+16], rdx
    "49895818"      # mov [r8+24], rbx
    "5b"            # pop rbx
    "c3"            # ret
)

_pages: dict[bytes, tuple[mmap.mmap, ctypes._CFuncPtr]] = {}
_FUNC = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_uint64))
_ARITH = 0x8D5  # CF PF AF ZF SF OF: the only bits the thunk lets the caller set


def run(insn: bytes, rax: int = 0, rcx: int = 0, rdx: int = 0, rbx: int = 0,
        flags: int = 0) -> tuple[int, int, int, int, int]:
    """Execute ``insn`` with the given registers; return (rax, rcx, rdx, rbx, rflags)."""
    entry = _pages.get(insn)
    if entry is None:
        code = _PROLOGUE + insn + _EPILOGUE
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        entry = (page, _FUNC(addr))
        _pages[insn] = entry
    state = (ctypes.c_uint64 * 6)(rax, rcx, rdx, rbx, (flags & _ARITH) | 2, 0)
    entry[1](state)
    return state[0], state[1], state[2], state[3], state[5]
