"""Differential fuzzing: random guest programs run uncoalesced and under every coalescing mode.

The oracle is the uncoalesced run under KVM (``--coalesce off``): every other mode must give the
same serial bytes, ending and exit status, IO log (every operation in order: space, address,
direction, size, value) and final registers.

Programs are generated as machine code directly (no assembler: thousands of programs a minute).
Every program starts with a prologue that points all 256 interrupt vectors at one handler, which
ends the run through the debug-exit port, so a fault or a stray ``INT n`` ends deterministically
instead of running through zeroed memory.  Two kinds of body follow:

* **random bytes**: anything at all; a run that touches a device whose answers depend on time or
  on the host (PIT, CMOS, port 0x61, the PICs, the fast-reset port) is reported as not compared;
* **well-formed mixes**: ALU and memory instructions on random registers, port IO to
  deterministic devices (COM1 at 0x3F8-0x3FF including its scratch register, unclaimed ports,
  the POST port, the debug console), byte and word MMIO to the memory-mapped UART at 0xB0000 and
  the unbacked hole around it, string IO (REP OUTS/INS, both directions, byte and word, segment
  overrides), string MMIO (MOVS/STOS/LODS), counted loops (nested), CALL/POP, the trap flag,
  PUSHA/POPA, a few random bytes, HLT, and self-modifying code (an immediate incremented each
  pass, and an IN toggled into a NOP and back).

Programs run with ``--no-firmware`` (so the PIT is never programmed and the PICs never
initialised: nothing time-driven happens) and are self-contained, so a saved program replays
through the command line: ``python -m pykvmm --no-firmware --coalesce off --io-log a.log P.bin``.
"""

from __future__ import annotations

import os
import random
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pykvmm.coalesce import engine as E
from pykvmm.machine.machine import Machine, MachineConfig

LOAD = 0x7C00
HANDLER_STATUS = 0xEE  # the exit status of the common interrupt handler
END_STATUS = 0x5A  # a well-formed program's normal exit status
DATA_LO, DATA_HI = 0x0600, 0x7000  # data area for memory operands and string buffers
MMIO_SEG = 0xB000  # ES for MMIO: the memory-mapped UART at 0xB0000 (8 registers)

# Ports whose answers depend on time or the host, or whose writes start time-driven behaviour
# (interrupts): a run that touches one is not compared.  0x92 bit 0 is the fast reset line.
NONDETERMINISTIC_PORTS = frozenset([0x20, 0x21, 0xA0, 0xA1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71,
                                    0x92])
COM1 = list(range(0x3F8, 0x400))
UNCLAIMED = [0x2F0, 0x2F8, 0x3E0, 0x510, 0x0E0, 0x0E8]
IMM8_PORTS = [0x80, 0xE0, 0xE8, 0x10]  # ports reachable with IN/OUT imm8 (POST + unclaimed)
OTHER_PORTS = [0x402]  # the debug console

REGS16 = [0, 1, 2, 3, 6, 7]  # ax cx dx bx si di (never sp; bp is the loop counter)
AX, CX, DX, BX, SP, BP, SI, DI = range(8)


def modes() -> list[str]:
    """Every coalescing mode to compare with ``off``: the engine's policies, plus KVM's own ring
    when this tree has it."""
    out = [p for p in E.POLICIES if p != E.OFF]
    try:
        from pykvmm.machine.coalesced_ring import CoalescedRing  # noqa: F401
        out.append("kvm-ring")
    except ImportError:
        pass
    return out


# -- the generator ----------------------------------------------------------------------------------


class _Asm:
    """Sequential emitter: every fragment knows its own load address (for self-modification)."""

    def __init__(self) -> None:
        self.code = bytearray()

    @property
    def here(self) -> int:
        return LOAD + len(self.code)

    def emit(self, *parts) -> None:
        for p in parts:
            if isinstance(p, int):
                self.code.append(p & 0xFF)
            else:
                self.code += bytes(p)

    def w(self, v: int) -> bytes:
        return struct.pack("<H", v & 0xFFFF)

    def mov_r16(self, r: int, v: int) -> None:
        self.emit(0xB8 + r, self.w(v))


def prologue(a: _Asm) -> None:
    """Point all 256 IVT entries at a handler that exits with HANDLER_STATUS."""
    a.emit(0x31, 0xC0)          # xor ax, ax
    a.emit(0x8E, 0xC0)          # mov es, ax
    a.emit(0x31, 0xFF)          # xor di, di
    a.emit(0xFC)                # cld
    a.mov_r16(CX, 256)          # mov cx, 256
    loop_at = len(a.code)
    handler_field = len(a.code) + 1
    a.mov_r16(AX, 0)            # mov ax, handler (patched below)
    a.emit(0xAB)                # stosw
    a.emit(0x31, 0xC0)          # xor ax, ax
    a.emit(0xAB)                # stosw
    a.emit(0xE2, (loop_at - (len(a.code) + 2)) & 0xFF)  # loop
    a.emit(0xEB, 5)             # jmp over the handler
    handler = a.here
    a.emit(0xB0, HANDLER_STATUS, 0xE6, 0xF4, 0xF4)  # mov al, EE; out 0xF4, al; hlt
    a.code[handler_field:handler_field + 2] = a.w(handler)


def epilogue(a: _Asm, r: random.Random) -> None:
    if r.random() < 0.8:
        a.emit(0xB0, END_STATUS, 0xE6, 0xF4)  # mov al, 5A; out 0xF4, al
    a.emit(0xFA, 0xF4)  # cli; hlt: ends with status 0


def _alu(a: _Asm, r: random.Random) -> None:
    d, s = r.choice(REGS16), r.choice(REGS16)
    k = r.randrange(16)
    if k == 0:
        a.mov_r16(d, r.getrandbits(16))
    elif k == 1:  # add/or/adc/sbb/and/sub/xor/cmp r16, r16 (optionally 32-bit)
        if r.random() < 0.25:
            a.emit(0x66)
        a.emit(r.choice([0x01, 0x09, 0x11, 0x19, 0x21, 0x29, 0x31, 0x39]), 0xC0 | s << 3 | d)
    elif k == 2:  # the same on bytes (al..bh)
        a.emit(r.choice([0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38]),
               0xC0 | r.randrange(8) << 3 | r.choice([0, 1, 2, 3]))
    elif k == 3:
        a.emit(r.choice([0x40, 0x48]) + d)  # inc/dec
    elif k == 4:  # shifts and rotates by 1, by CL or by imm8
        form = r.choice([0xD1, 0xD3, 0xC1, 0xD0, 0xD2])
        a.emit(form, 0xC0 | r.choice([0, 1, 2, 3, 4, 5, 7]) << 3 | d)
        if form == 0xC1:
            a.emit(r.randrange(32))
    elif k == 5:
        a.emit(0xF7, 0xC0 | r.choice([2, 3]) << 3 | d)  # not/neg
    elif k == 6:
        a.emit(r.choice([0xF8, 0xF9, 0xF5, 0x9F, 0x98, 0x99, 0x90]))  # clc stc cmc lahf cbw cwd nop
    elif k == 7:  # mul/imul r16 (dx:ax)
        a.emit(0xF7, 0xC0 | r.choice([4, 5]) << 3 | r.choice(REGS16))
    elif k == 8:  # push/pop through the stack
        a.emit(0x50 + s, 0x58 + d)
    elif k == 9:  # add r16, imm16 / cmp / and / or / xor with imm8 sign-extended
        if r.random() < 0.5:
            a.emit(0x81, 0xC0 | r.randrange(8) << 3 | d, a.w(r.getrandbits(16)))
        else:
            a.emit(0x83, 0xC0 | r.randrange(8) << 3 | d, r.getrandbits(8))
    elif k == 10:  # memory store/load/read-modify-write at a data address
        addr = r.randrange(DATA_LO, DATA_HI)
        a.emit(r.choice([0x89, 0x8B, 0x01, 0x03, 0x31, 0x29]), 0x06 | s << 3, a.w(addr))
    elif k == 11:  # xchg, movzx, imul r, r, imm8
        c = r.randrange(3)
        if c == 0:
            a.emit(0x87, 0xC0 | s << 3 | d)
        elif c == 1:
            a.emit(0x0F, 0xB6, 0xC0 | d << 3 | r.choice([0, 1, 2, 3]))
        else:
            a.emit(0x6B, 0xC0 | d << 3 | s, r.getrandbits(8))
    elif k == 12:  # setcc / cmovcc / bt
        c = r.randrange(3)
        if c == 0:
            a.emit(0x0F, 0x90 + r.randrange(16), 0xC0 | r.choice([0, 1, 2, 3]))
        elif c == 1:
            a.emit(0x0F, 0x40 + r.randrange(16), 0xC0 | d << 3 | s)
        else:
            a.emit(0x0F, 0xA3, 0xC0 | s << 3 | d)
    elif k == 13:  # call next; pop reg (a return address in a register)
        a.emit(0xE8, 0, 0, 0x58 + d)
    elif k == 14:  # a forward conditional jump over one instruction
        a.emit(0x70 + r.randrange(16), 1, 0x40 + d)
    else:  # lea with a base and displacement
        a.emit(0x8D, 0x80 | d << 3 | r.choice([4, 5, 7]), a.w(r.getrandbits(16)))


def _port(r: random.Random) -> int:
    return r.choice(COM1 * 2 + UNCLAIMED + OTHER_PORTS + IMM8_PORTS)


def _io(a: _Asm, r: random.Random) -> None:
    k = r.randrange(6)
    port = _port(r)
    if k <= 1 and port < 0x100:
        if k == 0:  # out imm8, al/ax
            a.emit(0xB0, r.getrandbits(8))
            a.emit(r.choice([0xE6, 0xE7]), port)
        else:
            a.emit(r.choice([0xE4, 0xE5]), port)
        return
    a.mov_r16(DX, port)
    if k in (0, 2):
        a.emit(0xB0, r.getrandbits(8))  # mov al, imm8
    elif k == 3:
        a.mov_r16(AX, r.getrandbits(16))
    if r.random() < 0.1:
        a.emit(0x66)  # 32-bit IN/OUT
    a.emit(r.choice([0xEC, 0xED, 0xEE, 0xEF]))


def _mmio(a: _Asm, r: random.Random) -> None:
    a.mov_r16(BX, MMIO_SEG)
    a.emit(0x8E, 0xC3)  # mov es, bx
    off = r.choice(list(range(8)) * 3 + [8, 9, 0x10, 0x7FF])
    k = r.randrange(4)
    if k == 0:
        a.emit(0x26, 0xC6, 0x06, a.w(off), r.getrandbits(8))  # mov byte [es:off], imm8
    elif k == 1:
        a.emit(0x26, 0xA0, a.w(off))  # mov al, [es:off]
    elif k == 2:
        a.emit(0x26, 0x8B, 0x06 | r.choice([0, 1, 2]) << 3, a.w(off))  # mov r16, [es:off] (word)
    else:
        a.emit(0x26, 0x89, 0x06 | r.choice([0, 1, 2]) << 3, a.w(off))  # mov [es:off], r16
    a.emit(0x31, 0xDB, 0x8E, 0xC3)  # xor bx, bx; mov es, bx


def _string_io(a: _Asm, r: random.Random) -> None:
    a.emit(0x31, 0xC0, 0x8E, 0xC0)  # xor ax, ax; mov es, ax
    a.mov_r16(DX, r.choice(COM1 + UNCLAIMED[:2] + OTHER_PORTS))
    a.mov_r16(SI, r.randrange(DATA_LO + 0x100, DATA_HI - 0x100))
    a.mov_r16(DI, r.randrange(DATA_LO + 0x100, DATA_HI - 0x100))
    a.mov_r16(CX, r.randrange(0, 20))
    a.emit(r.choice([0xFC, 0xFD]))  # cld / std
    op = r.choice([0x6C, 0x6D, 0x6E, 0x6F])  # insb insw outsb outsw
    if r.random() < 0.85:
        a.emit(0xF3)  # rep
    a.emit(op)
    a.emit(0xFC)


def _string_mmio(a: _Asm, r: random.Random) -> None:
    """String instructions against the memory-mapped UART: MOVS RAM->MMIO and MMIO->RAM, STOS
    to it, LODS from it (KVM exits once per element)."""
    k = r.randrange(4)
    a.mov_r16(CX, r.randrange(0, 10))
    a.emit(r.choice([0xFC, 0xFD]))
    if k == 0:  # RAM -> MMIO: ES = B000
        a.mov_r16(BX, MMIO_SEG)
        a.emit(0x8E, 0xC3)  # mov es, bx
        a.mov_r16(SI, r.randrange(DATA_LO, DATA_HI))
        a.mov_r16(DI, r.randrange(0, 12))
        a.emit(0xF3, r.choice([0xA4, 0xA5]))  # rep movsb/movsw
    elif k == 1:  # MMIO -> RAM: DS override through ES = B000 (es: movsb reads ES:SI)
        a.mov_r16(BX, MMIO_SEG)
        a.emit(0x8E, 0xC3)
        a.emit(0x31, 0xDB, 0x8E, 0xDB)  # xor bx, bx; mov ds, bx (already 0)
        a.mov_r16(SI, r.randrange(0, 12))
        a.mov_r16(DI, r.randrange(DATA_LO, DATA_HI))
        # destination is ES:DI, so swap: push es; pop ds reads ES's base for the source
        a.emit(0x06, 0x1F)  # push es; pop ds (DS = B000)
        a.emit(0x31, 0xDB, 0x8E, 0xC3)  # xor bx, bx; mov es, bx
        a.emit(0xF3, 0xA4)  # rep movsb: MMIO -> RAM
        a.emit(0x31, 0xDB, 0x8E, 0xDB)  # ds = 0 again
    elif k == 2:  # rep stosb to MMIO
        a.mov_r16(BX, MMIO_SEG)
        a.emit(0x8E, 0xC3)
        a.mov_r16(DI, r.randrange(0, 12))
        a.emit(0xB0, r.getrandbits(8), 0xF3, 0xAA)
    else:  # lodsb from MMIO with an ES override
        a.mov_r16(BX, MMIO_SEG)
        a.emit(0x8E, 0xC3)
        a.mov_r16(SI, r.randrange(0, 12))
        a.emit(0x26, 0xAC, 0x26, 0xAC)  # lodsb es:[si] twice
    a.emit(0xFC, 0x31, 0xDB, 0x8E, 0xC3)  # cld; xor bx, bx; mov es, bx


def _odd(a: _Asm, r: random.Random) -> None:
    """Rarer things: the trap flag (INT 1 to the exit handler), PUSHA/POPA, segment-override
    string IO, a few random bytes, HLT with interrupts off, STI (no interrupt source)."""
    k = r.randrange(8)
    if k == 6:  # 32-bit string IO: OUTSD/INSD, and ECX/ESI/EDI with the address-size prefix
        a.mov_r16(DX, r.choice(COM1 + UNCLAIMED[:2]))
        a.emit(0x66, 0xB9, struct.pack("<I", r.choice([0, 1, 3, 0x10002, 0xFFFFFFFF])))  # mov ecx
        a.emit(0x66, 0xBE, struct.pack("<I", r.choice([DATA_LO, DATA_HI, 0x10000 + DATA_LO])))
        a.emit(0x66, 0xBF, struct.pack("<I", r.choice([DATA_LO + 0x200, 0x20000])))
        a.emit(0x31, 0xC0, 0x8E, 0xC0)  # es = 0
        a.emit(*r.choice([(0x67, 0xF3, 0x6E), (0x67, 0xF3, 0x6C), (0x66, 0xF3, 0x6F),
                          (0x66, 0x67, 0xF3, 0x6D), (0x67, 0x6E)]))
        a.emit(0x66, 0x31, 0xF6, 0x66, 0x31, 0xFF)  # xor esi, esi; xor edi, edi
        return
    if k == 7:  # IO at the top of the port space: a word or dword at 0xFFFF wraps to port 0
        a.mov_r16(DX, r.choice([0xFFFF, 0xFFFE, 0x3FE, 0x3FF]))
        a.emit(r.choice([(0xEF,), (0xED,), (0x66, 0xEF), (0x66, 0xED)]))
        return
    if k == 0:
        a.emit(0x9C, 0x58, 0x80, 0xCC, 0x01, 0x50, 0x9D)  # pushf; pop ax; or ah, 1; push ax; popf
    elif k == 1:
        a.emit(0x60, 0x61)  # pusha; popa
    elif k == 2:
        a.mov_r16(DX, r.choice(COM1))
        a.mov_r16(SI, r.randrange(DATA_LO, DATA_HI))
        a.mov_r16(CX, r.randrange(0, 6))
        a.emit(r.choice([0x2E, 0x26, 0x36]), 0xF3, 0x6E)  # cs:/es:/ss: rep outsb
    elif k == 3:
        a.emit(bytes(r.getrandbits(8) for _ in range(r.randrange(1, 5))))
    elif k == 4:
        a.emit(0xFA, 0xF4)  # cli; hlt: the run ends here
    else:
        a.emit(0xFB)  # sti


def _smc(a: _Asm, r: random.Random) -> None:
    """Self-modifying code: rewrite an instruction a little further on."""
    if r.random() < 0.5:
        # Increment the immediate of a later "mov al, imm8", then send AL to a port.
        at = a.here + 4 + 3  # after this inc (4 bytes) and the mov dx (3)
        a.emit(0xFE, 0x06, a.w(at + 1))  # inc byte [at+1]
        a.mov_r16(DX, r.choice(COM1 + UNCLAIMED[:2]))
        assert a.here == at
        a.emit(0xB0, r.getrandbits(8), 0xEE)  # mov al, imm8; out dx, al
    else:
        # Toggle an IN into a NOP and back (xor with 0xEC ^ 0x90) before it runs.
        a.mov_r16(DX, r.choice(COM1))
        at = a.here + 5
        a.emit(0x80, 0x36, a.w(at), 0xEC ^ 0x90)  # xor byte [at], 0x7C
        assert a.here == at
        a.emit(0xEC, 0xEE)  # in al, dx (or nop); out dx, al


def _items(a: _Asm, r: random.Random, n: int, depth: int) -> None:
    for _ in range(n):
        k = r.random()
        if k < 0.35:
            _alu(a, r)
        elif k < 0.65:
            _io(a, r)
        elif k < 0.73:
            _mmio(a, r)
        elif k < 0.78:
            _string_io(a, r)
        elif k < 0.81:
            _string_mmio(a, r)
        elif k < 0.87:
            _smc(a, r)
        elif k < 0.94 and depth < 2:
            _loop(a, r, depth)
        elif k < 0.98:
            _odd(a, r)
        else:
            _alu(a, r)


def _loop(a: _Asm, r: random.Random, depth: int) -> None:
    a.emit(0x55)  # push bp
    a.mov_r16(BP, r.randrange(1, 12))
    top = a.here
    _items(a, r, r.randrange(1, 8), depth + 1)
    a.emit(0x4D)  # dec bp
    a.emit(0x0F, 0x85, a.w(top - (a.here + 4)))  # jnz near top
    a.emit(0x5D)  # pop bp


def well_formed(r: random.Random) -> bytes:
    a = _Asm()
    prologue(a)
    for reg in REGS16:
        a.mov_r16(reg, r.getrandbits(16))
    _items(a, r, r.randrange(1, 24), 0)
    epilogue(a, r)
    return bytes(a.code)


def random_bytes(r: random.Random) -> bytes:
    a = _Asm()
    prologue(a)
    a.emit(bytes(r.getrandbits(8) for _ in range(r.randrange(1, 48))))
    a.emit(0xB0, END_STATUS, 0xE6, 0xF4, 0xFA, 0xF4)
    return bytes(a.code)


def program(r: random.Random) -> bytes:
    return random_bytes(r) if r.random() < 0.3 else well_formed(r)


# -- running and comparing -------------------------------------------------------------------------


@dataclass
class Outcome:
    mode: str
    end: str
    status: int
    serial: bytes
    serial2: bytes
    debugcon: bytes
    io_log: list = field(repr=False)
    regs: dict = field(repr=False)
    detail: str = ""
    wall: float = 0.0

    def key(self) -> tuple:
        return (self.end, self.status, self.serial, self.serial2, self.debugcon, self.io_log, self.regs)


def run_once(code: bytes, mode: str, timeout: float = 2.0, extent: int = 10, **engine_kw) -> Outcome:
    """One in-process run of ``code`` (no firmware) under ``mode``."""
    outs = []
    for _ in range(3):
        fd, path = tempfile.mkstemp(prefix="pykvmm-fuzz-")
        os.close(fd)
        outs.append(path)
    log: list = []
    try:
        config = MachineConfig(serial=f"file:{outs[0]}", serial2=f"file:{outs[1]}",
                               debugcon=f"file:{outs[2]}", serial_input=False)
        with Machine(config) as m:
            m.load_guest(code)
            m.pio.log = m.mmio.log = lambda *op: log.append(op)
            if mode == "kvm-ring":
                from pykvmm.machine.coalesced_ring import CoalescedRing
                m.ring = CoalescedRing(m)
            elif mode != E.OFF:
                m.engine = E.CoalescingEngine(m, mode, extent=extent, **engine_kw)
            res = m.run(timeout=timeout)
            regs = m.final_regs()
        data = [Path(p).read_bytes() for p in outs]
    finally:
        for p in outs:
            os.unlink(p)
    return Outcome(mode, res.end, res.exit_status, data[0], data[1], data[2], log, regs, res.detail,
                   res.wall_s)


def touches_nondeterministic(o: Outcome) -> bool:
    return any(space == "pio" and port in NONDETERMINISTIC_PORTS for space, port, *_ in o.io_log)


@dataclass
class Verdict:
    kind: str  # "same", "timeout", "nondeterministic", "divergence", "hang"
    detail: str = ""


def describe(base: Outcome, other: Outcome) -> str:
    parts = []
    for name in ("end", "status", "serial", "serial2", "debugcon"):
        x, y = getattr(base, name), getattr(other, name)
        if x != y:
            parts.append(f"{name}: off {x!r:.80} vs {other.mode} {y!r:.80}")
    if base.io_log != other.io_log:
        i = next((i for i, (p, q) in enumerate(zip(base.io_log, other.io_log)) if p != q),
                 min(len(base.io_log), len(other.io_log)))
        parts.append(f"io log differs at op {i}: off {base.io_log[i:i + 2]} vs {other.mode} "
                     f"{other.io_log[i:i + 2]} (lengths {len(base.io_log)}, {len(other.io_log)})")
    if base.regs != other.regs:
        diff = {k: (f"{v:#x}", f"{other.regs.get(k, 0):#x}") for k, v in base.regs.items()
                if other.regs.get(k) != v}
        parts.append(f"registers (off, {other.mode}): {diff}")
    if other.detail and other.detail != base.detail:
        parts.append(f"{other.mode} detail: {other.detail[:200]}")
    return "; ".join(parts)


def differential(code: bytes, timeout: float = 2.0, extent: int = 10,
                 mode_list: list[str] | None = None, **engine_kw) -> Verdict:
    """Run ``code`` under off and every mode; compare everything observable.  ``engine_kw``
    (hash_mode, literal, table_size) goes to every engine."""
    base = run_once(code, E.OFF, timeout)
    if base.end == "timeout":
        return Verdict("timeout", "off timed out")
    if touches_nondeterministic(base):
        return Verdict("nondeterministic", "touches a time- or host-dependent port")
    for mode in mode_list or modes():
        other = run_once(code, mode, timeout, extent, **({} if mode == "kvm-ring" else engine_kw))
        if other.end == "timeout":
            if base.wall < timeout / 10:
                # off needed a tenth of the time: this mode hangs (or is far too slow)
                return Verdict("hang", f"extent {extent}: {mode} timed out after {timeout:g} s "
                                       f"where off ended ({base.end}) in {base.wall:.3f} s")
            return Verdict("timeout", f"{mode} timed out where off ended ({base.end})")
        if other.key() != base.key():
            opts = "".join(f", {k} {v}" for k, v in engine_kw.items())
            return Verdict("divergence", f"extent {extent}{opts}: " + describe(base, other))
    return Verdict("same")
