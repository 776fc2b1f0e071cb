"""Instruction decoding: prefixes, opcode, ModRM/SIB, displacement and immediates.

pykvmm decodes every instruction twice, independently: with capstone (CS_MODE_16, no detail,
which costs about 1 µs rather than 6) for the length, the validity and a mnemonic, and with the
table-driven parser below for everything the emulator acts on.  When the two disagree on the
length the instruction is refused ("unsupported"), so a gap in either decoder can only cost
coverage, never exactness.

The parser works from raw bytes on purpose; it sidesteps capstone's known 16-bit pitfalls
(each has a regression test in tests/unit/x86/test_decoder.py):
  - branch targets are reported unwrapped (e9 75 fe at 0x100 -> 0xffffff78): we compute them;
  - 98/99 show as cwde/cdq without 0x66 (capstone issue 1226): we dispatch on opcode + size;
  - LDS/LES memory operands report size 2: sizes come from the opcode table;
  - the default SS segment for BP-based addressing is not reported: we apply the SDM rule;
  - immediates come back sign-extended: we read them from the bytes;
  - F2 on MOVS shows as "repne": we treat F2 and F3 alike except for CMPS/SCAS.
"""

from __future__ import annotations

import capstone

from . import stops
from .state import CS, DS, ES, FS, GS, SS

MAX_LEN = 15  # the architectural instruction length limit (SDM vol. 2, 2.3.11)

SEG_PREFIX = {0x26: ES, 0x2E: CS, 0x36: SS, 0x3E: DS, 0x64: FS, 0x65: GS}

_cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)

# One-byte opcodes that take a ModRM byte.
_MODRM1 = set()
for _base in range(0x00, 0x40, 8):
    _MODRM1.update(range(_base, _base + 4))
_MODRM1.update({0x62, 0x63, 0x69, 0x6B, *range(0x80, 0x90), 0xC0, 0xC1, 0xC4, 0xC5, 0xC6, 0xC7,
                *range(0xD0, 0xD4), *range(0xD8, 0xE0), 0xF6, 0xF7, 0xFE, 0xFF})
# Immediate sizes: "b" = 1 byte, "z" = 2 or 4 by operand size, "w" = 2, "a" = moffs (address
# size), "p" = far pointer (z + 2), "e" = ENTER (3 bytes).
_IMM1: dict[int, str] = {}
for _base in range(0x00, 0x40, 8):
    _IMM1[_base + 4] = "b"
    _IMM1[_base + 5] = "z"
_IMM1.update({0x68: "z", 0x69: "z", 0x6A: "b", 0x6B: "b", 0x80: "b", 0x81: "z", 0x82: "b",
              0x83: "b", 0xA8: "b", 0xA9: "z", 0xC0: "b", 0xC1: "b", 0xC2: "w", 0xC6: "b",
              0xC7: "z", 0xC8: "e", 0xCA: "w", 0xCD: "b", 0xD4: "b", 0xD5: "b", 0xE8: "z",
              0xE9: "z", 0xEA: "p", 0x9A: "p", 0xEB: "b"})
for _op in range(0x70, 0x80):
    _IMM1[_op] = "b"
for _op in range(0xE0, 0xE8):
    _IMM1[_op] = "b"
for _op in range(0xB0, 0xB8):
    _IMM1[_op] = "b"
for _op in range(0xB8, 0xC0):
    _IMM1[_op] = "z"
for _op in range(0xA0, 0xA4):
    _IMM1[_op] = "a"
# Two-byte (0F xx) opcodes the emulator covers, with their ModRM/immediate needs.
_MODRM2 = {*range(0x40, 0x50), *range(0x90, 0xA0), 0xA3, 0xA4, 0xA5, 0xAB, 0xAC, 0xAD, 0xAF,
           0xB3, 0xB6, 0xB7, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE, 0xBF}
_IMM2 = {0xA4: "b", 0xAC: "b", 0xBA: "b", **{op: "z" for op in range(0x80, 0x90)}}
_PLAIN2 = {0xA0, 0xA1, 0xA8, 0xA9}

STRING_OPS = {0x6C, 0x6D, 0x6E, 0x6F, 0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF}
PIO_OPS = {0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F}

# 16-bit ModRM effective addresses (SDM vol. 2, table 2-1): registers summed per rm, and the
# default segment: SS whenever BP is part of the address, DS otherwise.
_EA16 = ((3, 6), (3, 7), (5, 6), (5, 7), (6,), (7,), (5,), (3,))
_EA16_SEG = (DS, DS, SS, SS, DS, DS, SS, DS)


class MemOperand:
    """A decoded memory operand: offset = (sum of regs (+ index << scale) + disp) wrapped to the
    address size; the segment is the override or the SDM default."""

    __slots__ = ("seg", "regs", "index", "scale", "disp", "asz")

    def __init__(self, seg: int, regs: tuple[int, ...], index: int, scale: int, disp: int, asz: int):
        self.seg, self.regs, self.index, self.scale, self.disp, self.asz = seg, regs, index, scale, disp, asz

    def offset(self, s: list[int]) -> int:
        """The offset with the register state ``s`` (a CpuState.s list)."""
        o = self.disp
        wide = self.asz == 32
        for r in self.regs:
            o += s[r] | (s[22 + r] << 16 if wide else 0)
        if self.index >= 0:
            o += (s[self.index] | (s[22 + self.index] << 16 if wide else 0)) << self.scale
        return o & (0xFFFF if self.asz == 16 else 0xFFFFFFFF)


class Insn:
    """One decoded instruction at a CS-relative ``ip``.

    ``supported`` is False when the emulator will not execute it; ``reason`` then says why
    (a stops constant) and ``detail`` names it.  ``is_pio`` marks IN/OUT/INS/OUTS by opcode.
    ``fn`` is the compiled body (set by the emulator's cache)."""

    __slots__ = ("bytes", "length", "ip", "mnemonic", "op", "prefixes", "osz", "asz", "seg", "rep",
                 "lock", "mod", "reg", "rm", "mem", "imm", "imm2", "is_pio", "is_string",
                 "supported", "reason", "detail", "fn", "source", "gen")

    def __init__(self) -> None:
        self.supported = True
        self.reason = ""
        self.detail = ""
        self.fn = None
        self.source = ""
        self.gen = None
        self.mem: MemOperand | None = None
        self.seg = -1
        self.rep = 0
        self.lock = False
        self.mod = self.reg = self.rm = -1
        self.imm = self.imm2 = 0
        self.is_pio = False
        self.is_string = False
        self.mnemonic = "?"

    def refuse(self, reason: str, detail: str = "") -> "Insn":
        self.supported = False
        self.reason = reason
        self.detail = detail or self.mnemonic
        return self

    def __repr__(self) -> str:
        state = "ok" if self.supported else f"{self.reason}: {self.detail}"
        return f"<Insn {self.ip:04x} {self.bytes.hex()} {self.mnemonic} ({state})>"

    # -- what the scanning unit needs -------------------------------------------------------------

    def accesses(self, s: list[int]) -> list[tuple[int, int]]:
        """(linear address, size) of each memory access this instruction would make with the
        register state ``s`` (a CpuState.s list); a guess for the scanning unit only: it decides
        where a block ends, never what an access does."""
        out: list[tuple[int, int]] = []
        size = self.operand_bytes()
        if self.mem is not None and self.op not in (0x8D,):
            m = self.mem
            out.append((s[16 + m.seg] + m.offset(s), size))
        if self.is_string:
            hi = 16 if self.asz == 32 else 32  # shifts the high halves away for 16-bit addressing
            n = 1 if self.op & 1 == 0 else size
            if self.op in (0xA4, 0xA5, 0xA6, 0xA7, 0xAC, 0xAD, 0x6E, 0x6F):
                seg = self.seg if self.seg >= 0 else DS
                out.append((s[16 + seg] + (s[6] | (s[28] << hi & 0xFFFF0000)), n))
            if self.op in (0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAE, 0xAF, 0x6C, 0x6D):
                out.append((s[16 + ES] + (s[7] | (s[29] << hi & 0xFFFF0000)), n))
        return out

    def operand_bytes(self) -> int:
        op = self.op
        if op < 0x100 and op & 1 == 0 and op not in (0xC4, 0x8C, 0x8E, 0x8D) and (
                op < 0x40 or 0x80 <= op <= 0x8A or 0xA0 <= op <= 0xAE or op in (
                    0xC0, 0xC6, 0xD0, 0xD2, 0xF6, 0xFE, 0xE4, 0xE6, 0xEC, 0xEE, 0x6C, 0x6E)):
            return 1
        if op in (0x0FB6, 0x0FBE) or 0x0F90 <= op <= 0x0F9F:
            return 1
        if op in (0xC4, 0xC5):  # LES/LDS read the offset and the selector
            return self.osz // 8 + 2
        if op in (0x8C, 0x8E, 0x0FB7, 0x0FBF):
            return 2
        return self.osz // 8


def _disasm(code: bytes, ip: int) -> tuple[int, str] | None:
    for _addr, size, mnem, ops in _cs.disasm_lite(code, ip, 1):
        return size, f"{mnem} {ops}".strip()
    return None


def decode_bytes(code: bytes, ip: int) -> Insn:
    """Decode the instruction at the start of ``code`` (up to 15 bytes fetched at CS:ip)."""
    ins = Insn()
    ins.ip = ip
    cap = _disasm(code, ip)
    if cap is not None:
        ins.mnemonic = cap[1]
    try:
        n = _parse(ins, code)
    except IndexError:
        n = -1  # ran off the fetched bytes: a truncated instruction
    if n < 0:
        ins.bytes = code[: cap[0]] if cap else code[:1]
        ins.length = len(ins.bytes)
        if cap is None:
            return ins.refuse(stops.FAULT, f"undefined encoding {code[:4].hex()}")
        if not ins.reason:
            ins.refuse(stops.UNSUPPORTED)
        return ins
    ins.bytes = code[:n]
    ins.length = n
    if cap is None:
        # capstone rejects what we parsed: an undefined encoding for the real CPU too (#UD), or a
        # form capstone does not know; either way not ours to guess.
        if ins.supported:
            ins.refuse(stops.FAULT, f"undefined encoding {code[:n].hex()}")
    elif cap[0] != n:
        ins.refuse(stops.UNSUPPORTED, f"length disagreement ({n} vs capstone {cap[0]}): {cap[1]}")
    return ins


def _parse(ins: Insn, code: bytes) -> int:
    """Fill ``ins`` from ``code``; return the length, or -1 when the opcode is outside the
    table (the caller then takes capstone's length and refuses)."""
    i = 0
    osz = asz = 16
    prefixes = []
    while True:
        b = code[i]
        if b in SEG_PREFIX:
            ins.seg = SEG_PREFIX[b]
        elif b == 0x66:
            osz = 32
        elif b == 0x67:
            asz = 32
        elif b == 0xF2 or b == 0xF3:
            ins.rep = b
        elif b == 0xF0:
            ins.lock = True
        else:
            break
        prefixes.append(b)
        i += 1
        if i >= MAX_LEN:
            return -1
    ins.prefixes = bytes(prefixes)
    ins.osz, ins.asz = osz, asz
    op = code[i]
    i += 1
    if op == 0x0F:
        op2 = code[i]
        i += 1
        op = 0x0F00 | op2
        has_modrm = op2 in _MODRM2
        imm = _IMM2.get(op2, "")
        if not has_modrm and op2 not in _PLAIN2 and not imm:
            ins.op = op
            ins.refuse(stops.UNSUPPORTED if op2 not in (0x00, 0x01, 0x06, 0x08, 0x09, 0x20, 0x21,
                                                       0x22, 0x23, 0x30, 0x31, 0x32, 0x33)
                       else stops.PRIVILEGED)
            return -1
    else:
        has_modrm = op in _MODRM1
        imm = _IMM1.get(op, "")
        if op == 0xF6 or op == 0xF7:
            pass  # the immediate depends on the reg field, below
    ins.op = op
    if has_modrm:
        m = code[i]
        i += 1
        mod, reg, rm = m >> 6, (m >> 3) & 7, m & 7
        ins.mod, ins.reg, ins.rm = mod, reg, rm
        if mod != 3:
            if asz == 16:
                if mod == 0 and rm == 6:
                    disp = code[i] | code[i + 1] << 8
                    i += 2
                    regs: tuple[int, ...] = ()
                    dseg = DS
                else:
                    regs = _EA16[rm]
                    dseg = _EA16_SEG[rm]
                    if mod == 1:
                        disp = code[i] - 256 if code[i] & 0x80 else code[i]
                        i += 1
                    elif mod == 2:
                        disp = code[i] | code[i + 1] << 8
                        i += 2
                    else:
                        disp = 0
                ins.mem = MemOperand(ins.seg if ins.seg >= 0 else dseg, regs, -1, 0, disp, 16)
            else:
                index, scale = -1, 0
                if rm == 4:
                    sib = code[i]
                    i += 1
                    scale, index, base = sib >> 6, (sib >> 3) & 7, sib & 7
                    if index == 4:
                        index = -1  # no index (SDM table 2-3)
                    if base == 5 and mod == 0:
                        regs = ()
                        disp_len = 4
                    else:
                        regs = (base,)
                        disp_len = (0, 1, 4)[mod]
                elif rm == 5 and mod == 0:
                    regs = ()
                    disp_len = 4
                else:
                    regs = (rm,)
                    disp_len = (0, 1, 4)[mod]
                if disp_len == 1:
                    disp = code[i] - 256 if code[i] & 0x80 else code[i]
                elif disp_len == 4:
                    disp = int.from_bytes(code[i:i + 4], "little")
                    if len(code) < i + 4:
                        raise IndexError
                else:
                    disp = 0
                i += disp_len
                # ESP or EBP as the base selects SS (SDM vol. 1, 3.7.5); an index never does.
                dseg = SS if regs and regs[0] in (4, 5) else DS
                ins.mem = MemOperand(ins.seg if ins.seg >= 0 else dseg, regs, index, scale, disp, 32)
        if op in (0xF6, 0xF7) and reg in (0, 1):
            imm = "b" if op == 0xF6 else "z"
    elif op not in _IMM1 and op not in _NOIMM1 and op < 0x100:
        return -1
    if imm:
        if imm == "b":
            ins.imm = code[i]
            i += 1
        elif imm == "w":
            ins.imm = code[i] | code[i + 1] << 8
            i += 2
        elif imm == "z" or imm == "a":
            k = (osz if imm == "z" else asz) // 8
            if len(code) < i + k:
                raise IndexError
            ins.imm = int.from_bytes(code[i:i + k], "little")
            i += k
        elif imm == "p":
            k = osz // 8
            if len(code) < i + k + 2:
                raise IndexError
            ins.imm = int.from_bytes(code[i:i + k], "little")
            ins.imm2 = code[i + k] | code[i + k + 1] << 8
            i += k + 2
        elif imm == "e":
            ins.imm = code[i] | code[i + 1] << 8
            ins.imm2 = code[i + 2]
            i += 3
    if i > MAX_LEN:
        return -1
    ins.is_pio = op in PIO_OPS
    ins.is_string = op in STRING_OPS
    return i


# One-byte opcodes without ModRM or immediate (everything else falls back to capstone's length).
_NOIMM1 = {*range(0x06, 0x08), 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F,
           *range(0x40, 0x62), *range(0x6C, 0x70), *range(0x90, 0xA0), *range(0xA4, 0xA8),
           *range(0xAA, 0xB0), 0xC3, 0xC9, 0xCB, 0xCC, 0xCE, 0xCF, 0xD6, 0xD7, *range(0xEC, 0xF0),
           0xF1, 0xF4, 0xF5, *range(0xF8, 0xFE)}
