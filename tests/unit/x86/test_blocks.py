"""Compiled basic blocks must behave exactly like one instruction at a time.

Single instructions are what the silicon vectors and the host-CPU oracle check; blocks are an
optimisation (dead-flag elimination, fused JZ/JNZ, one validation per block).  Random programs
run both ways must end in identical state, memory, stop reason and instruction count.
"""

from __future__ import annotations

import marshal
import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pykvmm.machine.bus import MmioBus, PortBus
from pykvmm.x86 import stops
from pykvmm.x86.codecache import CodeCache
from pykvmm.x86.emulator import RECORD_PREFIX, Emulator
from pykvmm.x86.state import CpuState

from conftest import FlatMemory

CODE = 0x1000
DATA_SEG = 0x200  # DS = ES = 0x200: data at 0x2000.., BX/SI/DI point inside


def random_insn(rng: random.Random) -> bytes:
    pre = b"\x66" if rng.random() < 0.15 else b""
    kind = rng.randrange(14)
    reg, rm = rng.randrange(8), rng.randrange(8)
    if kind == 0:  # ALU reg, reg (avoid SP as a destination half the time)
        return pre + bytes([rng.choice([0, 1, 2, 3]) + 8 * rng.randrange(8), 0xC0 | reg << 3 | rm])
    if kind == 1:  # ALU with [bx+disp8] (DS data)
        return pre + bytes([rng.choice([0, 1, 2, 3]) + 8 * rng.randrange(8), 0x47 | reg << 3,
                            rng.randrange(0, 64)])
    if kind == 2:  # group 1 with imm8
        return pre + bytes([0x83, 0xC0 | reg << 3 | rng.choice([0, 1, 2, 3, 6, 7]), rng.randrange(256)])
    if kind == 3:  # shifts and rotates by 1, CL, imm
        op = rng.choice([0xD0, 0xD1, 0xD2, 0xD3, 0xC0, 0xC1])
        b = bytes([op, 0xC0 | reg << 3 | rng.randrange(4)])
        return pre + (b + bytes([rng.randrange(40)]) if op in (0xC0, 0xC1) else b)
    if kind == 4:  # INC/DEC reg (not SP)
        return pre + bytes([rng.choice([0x40, 0x48]) + rng.choice([0, 1, 2, 3, 5, 6, 7])])
    if kind == 5:  # Jcc short, small forward or backward hop
        return bytes([0x70 + rng.randrange(16), rng.choice([0, 1, 2, 3, 0xFE, 0xFC])])
    if kind == 6:  # mov reg, imm16
        return bytes([0xB8 + rng.choice([0, 1, 2, 3, 5]), rng.randrange(256), rng.randrange(256)])
    if kind == 7:  # mov [bx+disp8], reg / mov reg, [bx+disp8]
        return pre + bytes([rng.choice([0x88, 0x89, 0x8A, 0x8B]), 0x47 | reg << 3, rng.randrange(64)])
    if kind == 8:  # push/pop a register (not SP)
        r = rng.choice([0, 1, 2, 3, 5, 6, 7])
        return bytes([rng.choice([0x50, 0x58]) + r])
    if kind == 9:  # TEST, NOT/NEG, MUL/IMUL
        return pre + bytes([0xF7, 0xC0 | rng.choice([0, 2, 3, 4, 5]) << 3 | rm]) + (
            bytes([rng.randrange(256), rng.randrange(256)]) + (b"\0\0" if pre else b"")
            if False else b"")
    if kind == 10:  # 0F forms: IMUL, BSF/BSR, BT, CMOV, SETcc, MOVZX
        op2 = rng.choice([0xAF, 0xBC, 0xBD, 0xA3, 0x44, 0x4C, 0x94, 0x9F, 0xB6, 0xBE])
        return pre + bytes([0x0F, op2, 0xC0 | reg << 3 | rm])
    if kind == 11:  # flag instructions and conversions
        return bytes([rng.choice([0xF5, 0xF8, 0xF9, 0xFC, 0xFD, 0x98, 0x99, 0x9E, 0x9F, 0x90])])
    if kind == 12:  # LOOP back over a few bytes, rarely
        return bytes([0xE2, rng.choice([0xFE, 0xFB, 0x02])])
    if kind == 13 and rng.random() < 0.5:  # port IO through DX (= 0x80 + small) or imm8
        return bytes([rng.choice([0xEC, 0xED, 0xEE, 0xEF, 0xE4, 0xE6])]) + (
            bytes([0x81]) if False else b"")
    if rng.random() < 0.5:
        return bytes([rng.choice([0xE4, 0xE5, 0xE6, 0xE7]), 0x80 + rng.randrange(4)])
    return bytes([0xA4 if rng.random() < 0.5 else 0xAA])  # MOVSB / STOSB


def build(seed: int) -> bytes:
    rng = random.Random(seed)
    code = b"".join(random_insn(rng) for _ in range(rng.randrange(3, 40)))
    return code + b"\xf4"


class Sequence:
    """A deterministic port device (its answers depend on the access history)."""

    def __init__(self) -> None:
        self.v = 7

    def read(self, offset: int) -> int:
        self.v = (self.v * 29 + offset + 3) & 0xFF
        return self.v

    def write(self, offset: int, value: int) -> None:
        self.v ^= value


def make(code: bytes):
    mem = FlatMemory()
    mem.load(CODE, code)
    mem.load(0x2000, bytes(range(256)) * 4)
    pio = PortBus()
    pio.register(0x80, 4, Sequence())
    return mem, pio, Emulator(mem, pio, MmioBus())


def run_to_end(code: bytes, regs: list[int], flags: int, step: bool):
    mem, pio, emu = make(code)
    cpu = CpuState(eax=regs[0], ecx=regs[1] & 0xFF, edx=regs[2], ebx=regs[3] & 0x3F,
                   esp=0x8000, ebp=regs[4], esi=regs[5] & 0xFF, edi=regs[6] & 0xFF,
                   ip=CODE, flags=(flags & 0xCD5) | 2, ds=DATA_SEG, es=DATA_SEG, ss=0x100)
    total = 0
    reason = ""
    for _ in range(3000):
        stop = emu.run(cpu, max_insns=1 if step else min(200, 2000 - total))
        total += stop.insns
        reason = stop.reason
        if reason not in (stops.BUDGET, stops.SMC) or total >= 2000:
            break
    return reason, total, cpu, bytes(mem.ram[0:0x20000])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), regs=st.lists(st.integers(0, 0xFFFFFFFF), min_size=7, max_size=7),
       flags=st.integers(0, 0xFFF))
def test_blocks_match_single_steps(seed, regs, flags):
    code = build(seed)
    a = run_to_end(code, regs, flags, step=False)
    b = run_to_end(code, regs, flags, step=True)
    assert a[2] == b[2], (code.hex(), a[2], b[2])
    assert a[1] == b[1] and a[0] == b[0], (code.hex(), a[:2], b[:2])
    assert a[3] == b[3], code.hex()


def _both_ways(code: bytes, budget: int, window=None, **regs):
    """Run ``code`` with blocks and one instruction per dispatch; return both trails."""
    out = []
    for use_blocks in (True, False):
        mem, pio, emu = make(code)
        emu.use_blocks = use_blocks
        cpu = CpuState(ip=CODE, ds=DATA_SEG, es=DATA_SEG, ss=0x100, esp=0x8000, **regs)
        trail = []
        for _ in range(50):
            stop = emu.run(cpu, max_insns=budget, io_window=window)
            trail.append((stop.reason, stop.insns, stop.ios))
            if stop.reason not in (stops.BUDGET, stops.SMC, stops.EXTENT):
                break
        out.append((trail, list(cpu.s), dict(pio.io_ops), bytes(mem.ram[0:0x20000])))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), regs=st.lists(st.integers(0, 0xFFFFFFFF), min_size=7, max_size=7),
       window=st.one_of(st.none(), st.integers(1, 20)), budget=st.integers(1, 300))
@example(seed=172, regs=[0, 0, 0, 0, 0, 1, 0], window=None, budget=41)  # blocks stop early: "smc"
def test_blocks_keep_budget_and_io_window_exact(seed, regs, window, budget):
    """The same run with blocks and with one instruction per dispatch: same stop, same counts,
    same state, same device history."""
    code = build(seed)
    regs = dict(eax=regs[0], ecx=regs[1] & 0xFF, edx=0x80 + (regs[2] & 3), ebx=regs[3] & 0x3F,
                ebp=regs[4], esi=regs[5] & 0xFF, edi=regs[6] & 0xFF)
    a, b = _both_ways(code, budget, window, **regs)
    if a[0] != b[0]:
        # The one allowed difference: a write into code that a block has already fetched (but
        # not yet run) stops the run right after the write ("smc"), where single steps, not
        # having fetched it, go on.  Then every stop must still be exact: no run past its
        # budget, and the state at each stop that of single steps after as many instructions.
        assert any(r[0] == stops.SMC for r in a[0]), code.hex()
        assert all(n <= budget and (why != stops.BUDGET or n == budget) for why, n, _ in a[0])
        _check_stops_against_single_steps(code, budget, window, regs)
        return
    assert a[1:] == b[1:], code.hex()


def _state(cpu, mem, pio):
    return list(cpu.s), bytes(mem.ram[0:0x20000]), dict(pio.io_ops)


def _check_stops_against_single_steps(code: bytes, budget: int, window, regs: dict) -> None:
    mem, pio, emu = make(code)
    cpu = CpuState(ip=CODE, ds=DATA_SEG, es=DATA_SEG, ss=0x100, esp=0x8000, **regs)
    at, n = {}, 0
    for _ in range(50):
        stop = emu.run(cpu, max_insns=budget, io_window=window)
        n += stop.insns
        at[n] = _state(cpu, mem, pio)
        if stop.reason not in (stops.BUDGET, stops.SMC, stops.EXTENT):
            break
    mem, pio, emu = make(code)
    emu.use_blocks = False
    cpu = CpuState(ip=CODE, ds=DATA_SEG, es=DATA_SEG, ss=0x100, esp=0x8000, **regs)
    n = 0
    while n < max(at):
        if n in at:
            assert at.pop(n) == _state(cpu, mem, pio), (code.hex(), n)
        stop = emu.run(cpu, max_insns=1)
        if stop.insns == 0 and stop.reason != stops.SMC:
            break
        n += stop.insns
    if n in at:
        assert at.pop(n) == _state(cpu, mem, pio), (code.hex(), n)
    assert not at, (code.hex(), sorted(at))  # every stop was reached by single steps too


def test_refusal_inside_a_block_counts_completed_instructions(flat):
    mem, pio, mmio, emu = flat
    # inc ax; inc ax; mov ax, [0xffff] (word at the segment limit: #GP); inc ax
    mem.load(CODE, bytes.fromhex("4040a1ffff40f4"))
    cpu = CpuState(ip=CODE)
    stop = emu.run(cpu, max_insns=100)
    assert (stop.reason, stop.insns, cpu.ip, cpu.ax) == (stops.FAULT, 2, CODE + 2, 2)


# l: in al, 0x80; stosb; add al, 3; cmp al, 0x40; jb skip; xor al, al; skip: loop l; hlt
LOOP_WITH_IO = bytes.fromhex("e480" "aa" "0403" "3c40" "7202" "30c0" "e2f3" "f4")


def test_loop_blocks_match_single_steps_at_every_budget():
    """A loop compiled as one block iterates inside one call: stops, counts, device history,
    memory and registers equal single steps for every budget and IO window."""
    for budget in (1, 2, 6, 7, 13, 50, 4096):
        for window in (None, 6, 7, 20):
            a, b = _both_ways(LOOP_WITH_IO, budget, window, ecx=300, edi=0)
            assert a == b, (budget, window)
            if window is None and budget >= 50:
                assert a[0][-1][0] == stops.HALT and a[1][1] == 0  # CX counted down to 0


def test_a_loop_that_writes_its_own_code_stops_after_the_write():
    # l: mov byte [cs:bx+l], 0x90 walks BX over the loop's bytes; inc bx; loop l; hlt
    # (the write lands in the loop itself on the first pass: "smc" right after it)
    code = bytes.fromhex("2ec687" + (CODE).to_bytes(2, "little").hex() + "90" "43" "e2f6" "f4")
    a, b = _both_ways(code, 100, ecx=5, ebx=0)
    assert a == b
    assert a[0][0][:2] == (stops.SMC, 1)


def test_a_refusal_in_a_later_iteration_counts_every_completed_instruction():
    # l: inc ax; mov dx, [bx] (BX runs up to the segment limit: the word at 0xFFFF is #GP);
    # add bx, 0x4000; loop l; hlt
    code = bytes.fromhex("40" "8b17" "81c30040" "e2f7" "f4")
    a, b = _both_ways(code, 1000, ecx=10, ebx=0x3FFF)
    assert a == b
    assert a[0][-1][0] == stops.FAULT and a[1][0] == 4  # three iterations and the INC completed


# The line-pattern loop of guests/uart_spin.asm: a forward JB over one instruction inside a
# LOOP (p: add al, '!'; stosb; sub al, 0x20; cmp al, 94; jb n; xor al, al; n: loop p; hlt)
PATTERN_LOOP = bytes.fromhex("0421" "aa" "2c20" "3c5e" "7202" "30c0" "e2f3" "f4")


def test_forward_jumps_inside_a_loop_block_match_single_steps():
    for budget in (1, 5, 6, 7, 30, 4096):
        for al in (0, 40, 93):
            a, b = _both_ways(PATTERN_LOOP, budget, None, ecx=200, eax=al, edi=0)
            assert a == b, (budget, al)
    assert a[0][-1][0] == stops.HALT


def test_a_refusal_after_a_skip_counts_only_executed_instructions():
    # l: cmp al, 0; jz s; inc ax; s: mov dx, [bx] (#GP at BX=0xFFFF); add bx, 0x4000; loop l
    code = bytes.fromhex("3c00" "7401" "40" "8b17" "81c30040" "e2f2" "f4")
    for al in (0, 1):
        a, b = _both_ways(code, 1000, None, ecx=10, ebx=0x3FFF, eax=al)
        assert a == b, al
        assert a[0][-1][0] == stops.FAULT


# -- every way out of a block leaves exact flags ------------------------------------------------
# A block drops status-flag computations that later instructions overwrite; on the paths that
# leave the block early (a side exit, a refusal, a stop a device asked for during IO) it must
# recompute them.  Random programs here add such exits: OUT/IN to a device that asks for a stop
# on every other access, a word read at the segment limit (#GP, refused) and DIV BL (#DE when BL
# is 0 or the quotient does not fit, refused).  The state at every stop must be that of single
# steps after as many instructions.

STOPPER = 0x84


class Stopper:
    """A port device that asks the emulator to stop on every other access."""

    def __init__(self) -> None:
        self.n = 0
        self.emu = None

    def _access(self) -> None:
        self.n += 1
        if self.n % 2:
            self.emu.request_stop()

    def read(self, offset: int) -> int:
        self._access()
        return self.n * 37 & 0xFF

    def write(self, offset: int, value: int) -> None:
        self._access()


def exits_insn(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.08:
        return bytes([0xE6, STOPPER])          # out 0x84, al
    if r < 0.12:
        return bytes([0xE4, STOPPER])          # in al, 0x84
    if r < 0.135:
        return bytes.fromhex("8b06ffff")       # mov ax, [0xffff]: #GP, refused
    if r < 0.16:
        return bytes([0xF6, 0xF3])             # div bl: #DE (refused) or flags
    return random_insn(rng)


def _exits_trail(code: bytes, regs: dict, use_blocks: bool) -> dict[int, tuple]:
    """State at every stop (blocks) or after every instruction (single steps), by count."""
    mem, pio, emu = make(code)
    dev = Stopper()
    dev.emu = emu
    pio.register(STOPPER, 1, dev)
    emu.use_blocks = use_blocks
    cpu = CpuState(ip=CODE, ds=DATA_SEG, es=DATA_SEG, ss=0x100, esp=0x8000, **regs)
    at, n = {0: _state(cpu, mem, pio)}, 0
    while n < 400:
        stop = emu.run(cpu, max_insns=min(150, 400 - n) if use_blocks else 1)
        n += stop.insns
        at[n] = (stop.reason if stop.reason != stops.BUDGET else "",) + _state(cpu, mem, pio)
        if stop.reason not in (stops.BUDGET, stops.REQUESTED, stops.SMC):
            break
    return at


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), regs=st.lists(st.integers(0, 0xFFFFFFFF), min_size=7, max_size=7),
       flags=st.integers(0, 0xFFF))
def test_every_exit_from_a_block_leaves_exact_flags(seed, regs, flags):
    rng = random.Random(seed)
    code = b"".join(exits_insn(rng) for _ in range(rng.randrange(3, 60))) + b"\xf4"
    regs = dict(eax=regs[0], ecx=regs[1] & 0xFF, edx=regs[2], ebx=regs[3] & 0x3F, ebp=regs[4],
                esi=regs[5] & 0xFF, edi=regs[6] & 0xFF, flags=(flags & 0xCD5) | 2)
    blocks = _exits_trail(code, regs, True)
    steps = _exits_trail(code, regs, False)
    for n, state in blocks.items():
        assert n in steps, (code.hex(), n)
        assert state[1:] == steps[n][1:], (code.hex(), n, state[0])
    last = max(blocks)
    assert last == max(steps), (code.hex(), last, max(steps))
    assert blocks[last] == steps[last], code.hex()


def test_a_stop_during_out_after_a_dead_flag_write_leaves_exact_flags():
    # add al, 1 (its flags are dead in the block: SUB overwrites them); out 0x84, al (the device
    # asks for a stop: the block leaves right after it); sub al, 1; hlt
    code = bytes.fromhex("0401" "e684" "2c01" "f4")
    for al in (0x7F, 0xFF, 0x0F):
        blocks = _exits_trail(code, dict(eax=al), True)
        steps = _exits_trail(code, dict(eax=al), False)
        assert blocks[2] == steps[2], al
        assert blocks[2][0] == stops.REQUESTED


# Register values a block forwards from the store of a local (codegen._forward_stores): each
# case reads AL (or DX, or AX) after instructions that rebind the local it was stored from, write
# the register in another form, or do IO, so a stale forward changes the trail or the state.
FORWARDING = {
    # add al, 5; sub bl, 3 (rebinds r); stosb; mov ah, 7; stosw; out dx, al; hlt
    "alu then another alu": "0405" "80eb03" "aa" "b407" "ab" "ee" "f4",
    # in al, dx; test al, 1; lodsb; out dx, al; mov al, ah; out dx, al; hlt
    "io read then lodsb": "ec" "a801" "ac" "ee" "88e0" "ee" "f4",
    # mov dl, 0x81; in al, dx; mov dh, 0; out dx, al; inc dx; out dx, al; hlt
    "port low byte then high byte": "b281" "ec" "b600" "ee" "42" "ee" "f4",
    # l: add al, 3; xchg al, bl; stosb; xchg al, bl; stosb; loop l; hlt
    "exchange inside a loop": "0403" "86c3" "aa" "86c3" "aa" "e2f6" "f4",
    # codegen._hoist_high_bytes: DL set to constants only (DH kept), in a loop
    # l: mov dl, 0x81; in al, dx; mov dl, 0x82; out dx, al; loop l; hlt
    "low-byte constants": "b281" "ec" "b282" "ee" "e2f8" "f4",
    # the same with DH written in between: DX's high byte changes inside the block
    # mov dl, 0x81; in al, dx; mov dh, 1; mov dl, 0x82; out dx, al; mov dh, 0; mov dl, 0x81;
    # in al, dx; hlt
    "low-byte constants and a high-byte write": "b281" "ec" "b601" "b282" "ee" "b600" "b281" "ec" "f4",
}


def test_forwarded_register_values_match_single_steps():
    for name, code in FORWARDING.items():
        for budget in (1, 3, 4, 50):
            a, b = _both_ways(bytes.fromhex(code), budget, None, ecx=5, eax=0x1234, ebx=0x21,
                              edx=0x80, esi=0x10, edi=0x40)
            assert a == b, (name, budget)


# -- blocks from records (a later process) ------------------------------------------------------

def _with_cache(code: bytes, cache):
    mem, pio, emu = make(code)
    emu.code_cache = cache
    looked = []
    real = emu.lookup
    emu.lookup = lambda cs, ip: (looked.append(ip), real(cs, ip))[1]
    return mem, pio, emu, looked


def _state_after(emu, mem, budget=4096):
    cpu = CpuState(ip=CODE, ds=DATA_SEG, es=DATA_SEG, ss=0x100, esp=0x8000, ecx=300, edi=0)
    stop = emu.run(cpu, max_insns=budget)
    return stop.reason, stop.insns, stop.ios, cpu.s[:], bytes(mem.ram[0:0x20000])


def test_a_recorded_block_runs_in_a_new_process_without_decoding(tmp_path):
    """A second process (another CodeCache on the same directory, empty in memory) takes the
    loop's block from its record: the same end state as decoding it, and no instruction but
    the HLT after it (a block cannot start there) is decoded."""
    first = _with_cache(LOOP_WITH_IO, CodeCache(str(tmp_path)))
    want = _state_after(first[2], first[0])
    assert want[0] == stops.HALT and len(first[3]) >= 8
    later = _with_cache(LOOP_WITH_IO, CodeCache(str(tmp_path)))
    assert _state_after(later[2], later[0]) == want
    assert set(later[3]) == {CODE + len(LOOP_WITH_IO) - 1} and later[2].code_cache.record_hits >= 1
    # A budget that cuts the loop short gives the same figures from records as from decoding.
    for budget in (5, 6, 7, 50):
        a = _with_cache(LOOP_WITH_IO, CodeCache(str(tmp_path)))
        b = _with_cache(LOOP_WITH_IO, CodeCache(disk=False))
        assert _state_after(a[2], a[0], budget) == _state_after(b[2], b[0], budget), budget


def test_a_record_is_not_taken_for_other_bytes_past_its_prefix(tmp_path):
    """The record's key holds only the first RECORD_PREFIX bytes: a block whose later bytes
    differ is decoded afresh, with the new bytes' result, and the record then holds both."""
    straight = bytes.fromhex("0401") * 12 + b"\xf4"  # add al, 1 (x12); hlt
    other = bytearray(straight)
    other[21] = 5  # the 11th ADD adds 5: past the 16-byte prefix
    assert RECORD_PREFIX <= 20
    first = _with_cache(straight, CodeCache(str(tmp_path)))
    want = _state_after(first[2], first[0])
    a = _with_cache(bytes(other), CodeCache(str(tmp_path)))
    got = _state_after(a[2], a[0])
    b = _with_cache(bytes(other), CodeCache(disk=False))
    assert got == _state_after(b[2], b[0]) and got[3][0] == want[3][0] + 4  # AL: 4 more
    assert CODE + 20 in a[3]  # the changed ADD was decoded
    for code, state in ((straight, want), (bytes(other), got)):
        again = _with_cache(code, CodeCache(str(tmp_path)))
        assert _state_after(again[2], again[0]) == state and set(again[3]) == {CODE + 24}


def test_a_broken_record_file_is_ignored(tmp_path):
    first = _with_cache(LOOP_WITH_IO, CodeCache(str(tmp_path)))
    want = _state_after(first[2], first[0])
    recs = list(tmp_path.rglob("*.rec"))
    assert recs
    for junk in (b"\x00garbage", marshal.dumps((1, (b"",), ("a",) * 6, (b"x", 0, 1, 0, (), "f")))):
        for p in recs:
            p.write_bytes(junk)  # unreadable, or readable but not a record this version wrote
        later = _with_cache(LOOP_WITH_IO, CodeCache(str(tmp_path)))
        assert _state_after(later[2], later[0]) == want and len(later[3]) >= 8
