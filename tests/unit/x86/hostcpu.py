"""Run one ALU instruction on the host CPU, for flag oracles.

KVM on this host (a software backend) executes real-mode code in its in-kernel instruction
emulator, which computes the arithmetic flags by running the same instruction on the host CPU
(arch/x86/kvm/emulate.c, the "fastop" helpers).  So the host CPU is the oracle for every flag
the SDM leaves undefined.  This helper maps a page PROT_EXEC, places a tiny 64-bit thunk in it
and calls it through ctypes:

    state[0..3] -> rax rcx rdx rbx,  state[4] -> rflags (pushed and popped),
    <the instruction under test>,
    rax rcx rdx rbx -> state[0..3],  rflags -> state[5]

The instruction runs in 64-bit mode; with an 0x66 prefix (16-bit) or byte registers (AL, CL, AH,
...) the arithmetic and the flags are the same as in real mode.  Never pass an instruction that
can fault (DIV by zero, overflow): the process would get SIGFPE.
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
