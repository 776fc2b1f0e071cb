"""The coalescing engine's stress guests (issue 5, "Equivalence") under `--coalesce off`.

Each guest prints what it computes; each test recomputes that text here, from the arithmetic the
guest's header comment specifies, and compares it byte for byte with what the guest printed
(never with text copied from a run), and checks exit status 0.  The cross-policy equivalence
test (test_coalesce_equivalence.py) then holds every policy to these uncoalesced runs.
"""

from __future__ import annotations

import pytest

from .helpers import GUESTS, pykvmm

pytestmark = pytest.mark.kvm

STRESS_GUESTS = ("smc", "rep_string", "op32", "calls", "flags", "fig8", "pit_program",
                 "pic_sequence", "cmos_pairs")

M8, M16, M32 = 0xFF, 0xFFFF, 0xFFFF_FFFF


def run_guest(tmp_path, name: str) -> bytes:
    out = tmp_path / f"{name}.txt"
    r = pykvmm(str(GUESTS / f"{name}.bin"), "--coalesce", "off", "--serial", f"file:{out}",
               timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return out.read_bytes()


def rol(v: int, n: int, bits: int) -> int:
    n %= bits
    mask = (1 << bits) - 1
    return ((v << n) | (v >> (bits - n))) & mask


def ror(v: int, n: int, bits: int) -> int:
    return rol(v, bits - n % bits, bits)


def hex_lines(values, per_line: int, digits: int, sep: str) -> str:
    values = list(values)
    return "".join(sep.join(f"{v:0{digits}X}" for v in values[i:i + per_line]) + "\n"
                   for i in range(0, len(values), per_line))


@pytest.mark.parametrize("name", STRESS_GUESTS)
def test_stress_guest_is_a_boot_sector(name):
    image = (GUESTS / f"{name}.bin").read_bytes()
    assert len(image) == 512 and image[510:] == b"\x55\xaa"


def test_smc_rewritten_instruction_between_in_and_out(tmp_path):
    acc, results = 0x5A, []
    for p in range(200):
        imm = (3 + 7 * p) & M8
        acc = ((acc + imm), (acc ^ imm), (acc - imm))[p % 3] & M8   # ADD, XOR, SUB
        results.append(acc)
    expected = hex_lines(results, 20, 2, "") + f"smc: 200 passes, scratch {results[-1]:02X}\n"
    assert run_guest(tmp_path, "smc") == expected.encode()


def test_rep_string_outsb_insb_both_directions(tmp_path):
    buf = bytearray(64)
    # (scratch value, direction, count, start): CLD fills upwards from start, STD downwards.
    for value, step, count, start in ((b"a", 1, 64, 0), (b"B", -1, 20, 63), (b"c", 1, 5, 10),
                                      (b"D", -1, 17, 30), (b"e", 1, 0, 0)):
        for k in range(count):
            buf[start + step * k] = value[0]
    checksum = sum((i + 1) * b for i, b in enumerate(buf)) & M16
    expected = (b"rep_string: forward REP OUTSB\n"
                b"rep_string: backward REP OUTSB\n"
                b"rep_string: insb " + bytes(buf) + b"\n"
                b"rep_string: reversed " + bytes(buf[::-1]) + b"\n"
                + f"rep_string: checksum {checksum:04X}\n".encode())
    assert run_guest(tmp_path, "rep_string") == expected


def test_op32_real_mode_32_bit_arithmetic(tmp_path):
    x, acc, lines = 0x12345678, 0, []
    for i in range(12):
        x ^= (x << 13) & M32
        x ^= x >> 17
        x ^= (x << 5) & M32
        q = (x * 0x01000193 + 0x0F1E2D3C + i * 0x10204081) & M32
        q = ror(q, i, 32)
        q = ((q << 7) & M32) | (x >> 25)                       # SHLD q, x, 7
        product = x * 0x9E3779B9
        acc = ((acc + (product >> 32)) & M32) ^ (product & M32)
        acc = (acc + q % 1000003) & M32
        lines.append(f"{x:08X} {q:08X} {acc:08X}\n")
    assert run_guest(tmp_path, "op32") == ("".join(lines) + "op32: ok\n").encode()


def test_calls_near_far_and_ret_imm16(tmp_path):
    ax, bx, words = 0, 0x1357, []

    def mix():
        nonlocal ax, bx
        bx = rol((bx + ax) & M16, 3, 16)
        ax = (ax & 0xFF00) | ((ax & M8) ^ (bx >> 8))

    for _ in range(64):
        ax = (ax & 0xFF00) | (bx & M8)
        mix()                                                  # CALL SI
        ax = ((ax - bx) & M16) ^ 0xA5C3                        # PUSH BX; PUSH AX; RET 4
        scratch = ax & M8
        mix()                                                  # twice: near call,
        bx = (bx + 1) & M16
        mix()                                                  # then far call
        ax = (ax & 0xFF00) | scratch                           # IN AL from the scratch register
        words.append(ax)
    expected = hex_lines(words, 16, 4, " ") + f"calls: bx={bx:04X} sp=7C00\n"
    assert run_guest(tmp_path, "calls") == expected.encode()


# FLAGS bits
CF, PF, AF, ZF, SF, OF = 0x001, 0x004, 0x010, 0x040, 0x080, 0x800
ALL6 = OF | SF | ZF | AF | PF | CF


def szp(value: int, bits: int) -> int:
    flags = PF if bin(value & M8).count("1") % 2 == 0 else 0   # PF looks at the low byte only
    if value == 0:
        flags |= ZF
    if value >> (bits - 1) & 1:
        flags |= SF
    return flags


def adc(a: int, b: int, carry: int, bits: int) -> tuple[int, int]:
    mask = (1 << bits) - 1
    total = a + b + carry
    res = total & mask
    flags = szp(res, bits) | (CF if total > mask else 0) | (AF if (a ^ b ^ res) & 0x10 else 0)
    if ((a ^ res) & (b ^ res)) >> (bits - 1) & 1:
        flags |= OF
    return res, flags


def sbb(a: int, b: int, borrow: int, bits: int) -> tuple[int, int]:
    mask = (1 << bits) - 1
    diff = a - b - borrow
    res = diff & mask
    flags = szp(res, bits) | (CF if diff < 0 else 0) | (AF if (a ^ b ^ res) & 0x10 else 0)
    if ((a ^ b) & (a ^ res)) >> (bits - 1) & 1:
        flags |= OF
    return res, flags


def set_szp(flags: int, value: int, bits: int) -> int:
    return (flags & ~(SF | ZF | PF)) | szp(value, bits)


def flags_records(a: int, b: int, count: int, carry: int) -> list[tuple[int, int, int]]:
    """(result, FLAGS, mask) after each of the fourteen steps in flags.asm's header."""
    recs = []
    ax, bx = a, b
    ax, f = adc(ax, bx, carry, 16)                             # 1 ADC AX, BX
    recs.append((ax, f, ALL6))
    bx, f = sbb(bx, ax, f & CF, 16)                            # 2 SBB BX, AX
    recs.append((bx, f, ALL6))
    al, f = adc(ax & M8, bx >> 8, f & CF, 8)                   # 3 ADC AL, BH; SBB AH, BL
    ah, f = sbb(ax >> 8, bx & M8, f & CF, 8)
    ax = ah << 8 | al
    recs.append((ax, f, ALL6))
    c = f & CF                                                 # 4 RCL AX, CL: 17-bit rotate
    for _ in range((count & 31) % 17):
        c, ax = ax >> 15, ((ax << 1) | c) & M16
    f = (f & ~CF) | c
    recs.append((ax, f, SF | ZF | AF | PF | CF))
    bl, c = bx & M8, f & CF                                    # 5 RCR BL, CL: 9-bit rotate
    for _ in range((count & 31) % 9):
        c, bl = bl & 1, (bl >> 1) | (c << 7)
    bx, f = (bx & 0xFF00) | bl, (f & ~CF) | c
    recs.append((bx, f, SF | ZF | AF | PF | CF))
    n = count & 31                                             # 6 SHL BX, CL
    if n:
        bx = (bx << n) & M16
        f = set_szp(f, bx, 16)
    recs.append((bx, f, SF | ZF | PF))
    c = ax & 1                                                 # 7 STC; RCR AX, 1
    ax = (ax >> 1) | 0x8000
    f = (f & ~(CF | OF)) | c | (OF if (ax >> 15) ^ (ax >> 14 & 1) else 0)
    recs.append((ax, f, OF | SF | ZF | PF | CF))
    c = ax & 1                                                 # 8 SAR AX, 1
    ax = (ax >> 1) | (ax & 0x8000)
    f = set_szp(f & ~(CF | OF), ax, 16) | c
    recs.append((ax, f, OF | SF | ZF | PF | CF))
    c = bx >> 2 & 1                                            # 9 SHR BX, 3
    bx >>= 3
    f = set_szp(f & ~CF, bx, 16) | c
    recs.append((bx, f, SF | ZF | PF | CF))
    if n:                                                      # 10 SAR BH, CL
        bh = bx >> 8
        bh = ((bh - 0x100 if bh & 0x80 else bh) >> n) & M8
        bx = bh << 8 | (bx & M8)
        f = set_szp(f, bh, 8)
    recs.append((bx, f, SF | ZF | PF))
    ax, f = sbb(ax, bx, 0, 16)                                 # 11 SUB AX, BX
    recs.append((ax, f, ALL6))
    ax = ((f & (SF | ZF | AF | PF | CF)) | 0x02) << 8 | (ax & M8)  # 12 LAHF
    recs.append((ax, f, ALL6))
    ax = (1 if f & OF else 0) << 8 | (1 if f & CF else 0)      # 13 SETB AL; SETO AH
    recs.append((ax, f, ALL6))
    if not f & ZF and bool(f & SF) == bool(f & OF):            # 14 CMOVG BX, AX
        bx = ax
    recs.append((bx, f, ALL6))
    return recs


FLAGS_VECTORS = ((0x1234, 0xFEDC, 0, 0), (0xFFFF, 0x0001, 1, 1), (0x8000, 0x8000, 4, 0),
                 (0x7FFF, 0x0001, 9, 1), (0x00FF, 0xFF00, 16, 1), (0xA5A5, 0x5A5A, 17, 0),
                 (0x0000, 0x0000, 31, 1), (0xC350, 0x1F3A, 33, 0), (0x8001, 0x7FFE, 255, 1))


def test_flags_chains_shifts_rotates_and_lahf(tmp_path):
    lines = [" ".join(f"{value:04X}:{flags & mask:04X}" for value, flags, mask in flags_records(*v))
             for v in FLAGS_VECTORS]
    expected = "\n".join(lines) + "\nflags: 9 vectors\n"
    assert run_guest(tmp_path, "flags") == expected.encode()


def test_fig8_stream_summary(tmp_path):
    bx, si, di, bp = 0, 0x1234, 0, 0
    for _ in range(1000):
        bx = (bx + 1) & M16
        al = bx & M8
        si = (si + bx) & M16
        di = (di + (al ^ 0x5A)) & M16
        si = rol(si, 1, 16) ^ di
        bp = (bp + al - si) & M16
    expected = f"fig8: 1000 passes bx={bx:04X} si={si:04X} di={di:04X} bp={bp:04X} scr={bx & M8:02X}\n"
    assert run_guest(tmp_path, "fig8") == expected.encode()


def test_pit_program_read_back_status(tmp_path):
    control_words = (0x30, 0x32, 0x34, 0x36, 0x38, 0x3A, 0x35, 0x37)
    # Status D5-D0 echo the control word's RW, mode and BCD bits; OUT and NULL COUNT are masked.
    expected = "pit_program: " + "".join(f"{cw & 0x3F:02X} " for cw in control_words) + "\n"
    assert run_guest(tmp_path, "pit_program") == expected.encode()


def test_pic_sequence_masks_read_back(tmp_path):
    masks = ((0xA5, 0x5A), (0xFB, 0xFF), (0x00, 0x81), (0xFF, 0xFF))
    expected = "pic_sequence: " + "".join(f"{m:02X} {s:02X} " for m, s in masks) + "\n"
    assert run_guest(tmp_path, "pic_sequence") == expected.encode()


def test_cmos_pairs_general_purpose_ram(tmp_path):
    ram = {0x40 + i: (11 + 37 * i) & M8 for i in range(64)}
    for index in range(0x7F, 0x3F, -1):
        ram[index] = rol(ram[index], 3, 8) ^ index
    total = fletcher = 0
    for index in range(0x40, 0x80):
        total = (total + ram[index]) & M16
        fletcher = (fletcher + total) & M16
    expected = "".join(f"cmos_pairs: {first:02X}"
                       + "".join(f" {ram[i]:02X}" for i in range(first, first + 32)) + "\n"
                       for first in (0x40, 0x60))
    expected += f"cmos_pairs: sum {total:04X} fletcher {fletcher:04X}\n"
    assert run_guest(tmp_path, "cmos_pairs") == expected.encode()
